"""The moment-matched SDE of any optimizer (`form="moments"`, docs/math.md §10): its drift and
diffusion against every closed form sdelens has, the quadrature's convergence, Monte Carlo
moments, the optimizer end to end, the weak order, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.special
import scipy.stats

import sdelens as sl
from sdelens._sde._moments import OFFSETS, TAIL_SPLITS

H = jnp.array([1.0, 2.0, 4.0])
S = jnp.array([0.5, 1.0, 2.0])
GAUSS = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S))
T3 = sl.Quadratic(h=H, noise=sl.StudentTNoise(df=3.0, scale=S))
T15 = sl.Quadratic(h=H, noise=sl.StudentTNoise(df=1.5, scale=S))
T_INF = jnp.asarray(jnp.inf)


def _states(n, key=0):
    """`n` random points (the gradients `H x` then span every SignSGD phase)."""
    return jax.random.normal(jax.random.key(key), (n, 3)) * 1.5


def _moments(sde, y, t=T_INF):
    """Drift and `G Gᵀ` (dense) of `sde` at `y`."""
    g = sde.diffusion(t, y, None).as_matrix()
    return np.concatenate([np.ravel(a) for a in sde.drift(t, y, None)]), np.asarray(g @ g.T)


def test_sgd_moments_are_exact():
    """SGD's update is linear in `Z`: drift `-∇f` exactly at every step (each step's rule is
    symmetric); `G Gᵀ = η Σ` exactly under the fine rule (`t = ∞`) and within the rule's
    step-to-step swing (±15%) at a finite time, unbiased over the steps (docs/math.md §10.2)."""
    opt = sl.SGD(lr=0.05)
    sde = sl.sde_for(opt, GAUSS, form="moments")
    assert sde.rule == "quadrature" and sde.nodes == 16
    swings = []
    for x in _states(5):
        y = sde.initial_state(x)
        drift, cov = _moments(sde, y, t=jnp.asarray(0.37))
        np.testing.assert_allclose(drift, -H * x, rtol=1e-5, atol=1e-5)
        swings.append(np.diag(cov) / (0.05 * S**2))
        drift, cov = _moments(sde, y)
        np.testing.assert_allclose(drift, -H * x, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(cov, np.diag(0.05 * S**2), rtol=1e-5, atol=1e-9)
    assert np.all(np.abs(np.asarray(swings) - 1) < 0.15), swings
    y = sde.initial_state(jnp.zeros(3))
    over_steps = [np.diag(_moments(sde, y, t=jnp.asarray(0.05 * k))[1]) for k in range(256)]
    np.testing.assert_allclose(np.mean(over_steps, axis=0) / (0.05 * S**2), 1.0, atol=0.01)


@pytest.mark.parametrize("prob", [GAUSS, T3, T15], ids=["gauss", "t3", "t1.5"])
def test_signsgd_moments_match_the_erf_and_t_cdf_forms(prob):
    """SignSGD: the moment-matched drift is `-E sign g` (erf / Student-t CDF) and `G Gᵀ`
    is `η (1 - (E sign g)²)` per coordinate. At `t = ∞` the fine rule's cells have probability
    at most `1/1024`, so its error for a step function is at most `2/1024` per coordinate."""
    opt = sl.SignSGD(lr=0.02)
    sde = sl.sde_for(opt, prob, form="moments")
    exact = sl.sde_for(opt, prob)
    for x in _states(8):
        y = sde.initial_state(x)
        drift, cov = _moments(sde, y)
        ref_drift, ref_cov = _moments(exact, exact.initial_state(x))
        np.testing.assert_allclose(drift, ref_drift, atol=2.0 / 1024)
        np.testing.assert_allclose(cov, ref_cov, atol=0.02 * 4.0 / 1024)


def test_quadrature_error_falls_with_the_node_count_at_the_expected_rates():
    """One step's `K`-node rule (a random position in each cell) has an `O(1/K)` error, for a
    sign (a discontinuous integrand, against erf) as for a smooth update; the fine rule the
    steps average to (every position: a midpoint rule of `64 (K + 8)` nodes) is already at
    float32 rounding for RMSprop's smooth update at `K = 4`, against a 128-cell fine rule."""
    xs = jnp.stack([jnp.linspace(-2.0, 2.0, 41)] * 3, axis=1)
    t, ks = jnp.asarray(0.3), np.array([8, 32, 128])

    def max_error(opt, k, at, ref):
        sde = sl.sde_for(opt, GAUSS, form="moments", nodes=int(k))
        got = jax.vmap(lambda x: sde.drift(at, sde.rest_state(x), None).x)(xs)
        return float(jnp.max(jnp.abs(got - ref)))

    sign = sl.SignSGD(lr=0.01)
    erf = -jax.scipy.special.erf(H * xs / (jnp.sqrt(2.0) * S))
    sign_errors = np.array([max_error(sign, k, t, erf) for k in ks])
    rms = sl.RMSprop(lr=0.01, beta=0.9)
    fine = sl.sde_for(rms, GAUSS, form="moments", nodes=128)
    ref = jax.vmap(lambda x: fine.drift(T_INF, fine.rest_state(x), None).x)(xs)
    step_errors = np.array([max_error(rms, k, t, ref) for k in ks])
    fine_errors = np.array([max_error(rms, k, T_INF, ref) for k in (4, 8, 16)])
    slope = lambda k, e: np.polyfit(np.log(k), np.log(e), 1)[0]  # noqa: E731
    assert -1.3 < slope(ks, sign_errors) < -0.7, sign_errors
    assert np.all(sign_errors < 2.0 / ks), sign_errors
    assert -1.4 < slope(ks, step_errors) < -0.7, step_errors
    assert np.all(fine_errors < 1e-5), fine_errors  # measured 4.6e-6 .. 8e-7: float32 rounding


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_adam_and_rmsprop_moments_match_their_sdes(weight_decay):
    """Adam(W), RMSprop(W) at random states (late times, `ι = 1`): the `m` and `v` blocks are
    linear in `g` and match the hand-derived SDE exactly (`v` tracks `∇f² + diag Σ`); the `x`
    drift and the `m`-block noise agree to `O(1-β₂)`: the hand-derived form puts `E g²` inside
    the root where the moments average over `g` (docs/math.md §10.2)."""
    for opt in [
        sl.Adam(lr=0.01, beta1=0.9, beta2=0.99, weight_decay=weight_decay),
        sl.RMSprop(lr=0.01, beta=0.99, weight_decay=weight_decay),
    ]:
        sde = sl.sde_for(opt, GAUSS, form="moments")
        exact = sl.sde_for(opt, GAUSS)
        for x in _states(4, key=1):
            ref_y = exact.rest_state(x)
            ref_y = ref_y._replace(**{f: getattr(ref_y, f) * 1.3 for f in ref_y._fields[1:]})
            y = sde.initial_state(x)._replace(
                **dict(zip(sde.initial_state(x)._fields[1:], tuple(ref_y)[1:], strict=True))
            )
            got, ref = sde.drift(T_INF, y, None), exact.drift(T_INF, ref_y, None)
            for a, b in zip(tuple(got)[1:], tuple(ref)[1:], strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(got.x, ref.x, rtol=0.02, atol=1e-4)
            g_got = np.asarray(sde.diffusion(T_INF, y, None).as_matrix())
            g_ref = np.asarray(exact.diffusion(T_INF, ref_y, None).as_matrix())
            if len(ref_y) == 3:  # m block noise: η ρ₁² Σ, exact
                m = slice(3, 6)
                np.testing.assert_allclose(
                    np.diag(g_got @ g_got.T)[m], np.diag(g_ref @ g_ref.T)[m], rtol=1e-3
                )
            np.testing.assert_allclose(
                np.diag(g_got @ g_got.T)[:3], np.diag(g_ref @ g_ref.T)[:3], rtol=0.25
            )
            # ν is non-negative: no diffusion, as in the hand-derived form.
            assert sde.nonnegative[-1] and np.all(g_got[-3:] == 0) and np.all(g_ref[-3:] == 0)


@pytest.mark.parametrize("prob", [GAUSS, T3], ids=["gauss", "t3"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_lion_moments_match_its_sde(prob, weight_decay):
    """Lion(W) at random states `(x, m)`: the moment-matched drift and `G Gᵀ` against the
    hand-derived SDE's closed forms (`μ = E sign(u + Z)` by erf / t-CDF, `κ = E[sign(u + Z) Z]`;
    docs/math.md §11.1). The `x` rows are a sign's moments, within `2/1024` like SignSGD's; the
    `m` rows are linear in `g`, exact."""
    opt = sl.Lion(lr=0.02, beta1=0.8, beta2=0.95, weight_decay=weight_decay)
    sde = sl.sde_for(opt, prob, form="moments")
    exact = sl.sde_for(opt, prob)
    ms = jax.random.normal(jax.random.key(5), (6, 3)) * 2.0
    for x, m in zip(_states(6, key=4), ms, strict=True):
        y = sde.initial_state(x)
        y = type(y)(x, m)
        ref_y = type(exact.initial_state(x))(x, m)
        drift, cov = _moments(sde, y)
        ref_drift, ref_cov = _moments(exact, ref_y)
        np.testing.assert_allclose(drift[:3], ref_drift[:3], atol=2.0 / 1024)
        np.testing.assert_allclose(drift[3:], ref_drift[3:], rtol=1e-4, atol=1e-5)
        # G Gᵀ: x block ~ η(1 - μ²) (a sign's), m block η ρ₂² s² and the cross term -η ρ₂ κ
        np.testing.assert_allclose(cov[:3, :3], ref_cov[:3, :3], atol=0.02 * 4.0 / 1024)
        np.testing.assert_allclose(cov[3:, 3:], ref_cov[3:, 3:], rtol=1e-3, atol=1e-7)
        # κ = E[sign(u + Z) Z] by a rule of cells of mass <= 1/1024: the error is at most twice
        # a cell's mass times |Z| at the jump (<= 4 s here), times η ρ₂ = 0.05. Under t₃ the
        # outermost sub-cell is scaled to give the law's variance (docs/math.md §10.3), which
        # adds its extreme tail to κ: measured up to 0.013 s (Monte Carlo, 4·10⁶ draws, sides
        # with the closed form), so the bound there is 0.02 s.
        bound = 0.05 * (0.02 * S if prob is T3 else 2.0 / 1024 * 4.0)
        cross, ref_cross = np.diag(cov[:3, 3:]), np.diag(ref_cov[:3, 3:])
        assert np.all(np.abs(cross - ref_cross) <= bound), (cross, ref_cross)
        assert np.all(cov[:3, 3:][~np.eye(3, dtype=bool)] == 0)


def test_monte_carlo_moments_for_correlated_noise():
    """Correlated Gaussian noise: Monte Carlo with K antithetic draws. SGD's drift is exact
    (the pairs cancel), `G Gᵀ` is the sample covariance `η Σ̂` of K draws, within its
    sampling error of `Σ`; the Brownian motion has K coordinates."""
    root = jnp.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.5, 1.5]])
    prob = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=root))
    opt = sl.SGD(lr=0.05)
    sde = sl.sde_for(opt, prob, form="moments", nodes=2000)
    assert sde.rule == "monte_carlo"
    x = jnp.array([0.5, -1.0, 2.0])
    y = sde.initial_state(x)
    assert sde.brownian_shape(x) == (2000,)
    drift, cov = _moments(sde, y, t=jnp.asarray(0.0))
    np.testing.assert_allclose(drift, -H * x, atol=1e-5)
    sigma = np.asarray(root @ root.T)
    se = np.sqrt((sigma**2 + np.outer(np.diag(sigma), np.diag(sigma))) / 2000)
    assert np.all(np.abs(cov / 0.05 - sigma) < 4 * se + 1e-6), (cov / 0.05, sigma)
    # A non-coordinate-wise update under diagonal noise also goes to Monte Carlo.
    assert sl.sde_for(sl.SAM(lr=0.05, rho=0.1), GAUSS, form="moments").rule == "monte_carlo"


def test_inner_gradients_get_independent_noise():
    """Entropy-SGD's inner chain draws a stochastic gradient per inner step: under additive
    noise only the step's own key sees the step's draw `Z` (SAM's second gradient), any other
    key an independent one. One step's moments from 2000 Monte Carlo draws against 20 000
    optimizer steps from the same point (with `Z` reused in every inner step, the variance
    was 5x the optimizer's, about `L` times)."""
    prob = sl.Quadratic(
        h=jnp.array([1.0, 2.0]), noise=sl.GaussianNoise(scale=jnp.array([1.0, 2.0]))
    )
    opt = sl.EntropySGD(lr=0.1, gamma=1.0, inner_lr=0.05, inner_steps=5, temperature=0.0)
    x0 = jnp.array([1.0, -1.0])
    sde = sl.sde_for(opt, prob, form="moments", nodes=2000)
    deltas, w = sde.increments(jnp.asarray(0.0), sde.initial_state(x0))
    mean = jnp.sum(w[:, None] * deltas.x, axis=0)
    var = np.asarray(jnp.sum(w[:, None] * (deltas.x - mean) ** 2, axis=0))
    run = sl.run_optimizer(opt, prob, x0, n_steps=1, n_runs=20000, key=jax.random.key(3))
    dx = np.asarray(run.state.x)[:, -1, :] - np.asarray(x0)
    # relative SE of a variance from n draws: sqrt(2/n)
    rel_se = np.sqrt(2 / 2000 + 2 / 20000)
    np.testing.assert_allclose(var, dx.var(axis=0), rtol=4 * rel_se)
    se_mean = np.sqrt(dx.var(axis=0) / 20000 + var / 2000)
    assert np.all(np.abs(np.asarray(mean) - dx.mean(axis=0)) < 4 * se_mean)


CASES = [
    ("signsgd", sl.SignSGD(lr=0.02), GAUSS, 1),
    ("signsgd-t1.5", sl.SignSGD(lr=0.02), T15, 1),
    ("adam", sl.Adam(lr=0.02, beta1=0.9, beta2=0.99), GAUSS, 4),
    ("adabelief", sl.Optax(lambda lr: optax.adabelief(lr, b1=0.9, b2=0.99), lr=0.02), GAUSS, 4),
    ("usam-mc", sl.SAM(lr=0.02, rho=0.1, normalize=False), GAUSS, 4),
]


@pytest.mark.parametrize("name,opt,prob,substeps", CASES, ids=[c[0] for c in CASES])
def test_moments_sde_tracks_the_optimizer(name, opt, prob, substeps):
    """End to end on the quadratic from `x0 = (1, -1, 0.5)`: the moment-matched SDE's mean loss
    stays within `4 SE + 4η·E f` of the optimizer's at every save (weak order 1)."""
    x0 = jnp.array([1.0, -1.0, 0.5])
    kw = {"n_steps": 200, "save_every": 20}
    ref = sl.run_optimizer(opt, prob, x0, n_runs=3000, key=jax.random.key(1), **kw)
    run = sl.simulate(
        opt, prob, x0, n_paths=3000, key=jax.random.key(2), form="moments", substeps=substeps, **kw
    )
    assert run.config["form"] == "moments" and run.config["nodes"] >= 16
    assert not run.diverged and not ref.diverged
    c = sl.compare(ref, run)
    mean = np.asarray(ref.loss).mean(axis=0)
    bound = 4 * np.asarray(c.se_diff) + 4 * opt.lr * mean
    assert np.all(np.abs(np.asarray(c.diff))[1:] < bound[1:]), (c.diff, bound)


def test_second_moments_get_no_diffusion_so_no_path_takes_a_singular_step():
    """From `ν₀ = 0`, Gaussian increments on `ν` (or AdaBelief's `s`) send paths below 0 in the
    first substep, where `m/(√ν + ε)` is singular: with them, a rare Adam path reached a loss
    of 17 000 here while the optimizer's stayed at most 2 (its weak-order error was 400).
    Without them every path stays in the optimizer's range."""
    x0 = jnp.array([1.0, -1.0, 0.5])
    for opt in (
        sl.Adam(lr=0.04, beta1=0.8, beta2=0.98),
        sl.Optax(lambda lr: optax.adabelief(lr, b1=0.8, b2=0.98), lr=0.04),
    ):
        kw = {"n_steps": 50, "save_every": 5}
        ref = sl.run_optimizer(opt, GAUSS, x0, n_runs=4000, key=jax.random.key(1), **kw)
        run = sl.simulate(
            opt, GAUSS, x0, n_paths=4000, key=jax.random.key(2), form="moments", substeps=4, **kw
        )
        assert sl.sde_for(opt, GAUSS, form="moments").nonnegative == (False, True)
        top, ref_top = float(np.max(run.loss)), float(np.max(ref.loss))
        assert top < 2 * ref_top, (opt.name, top, ref_top)


def test_adam_moments_sde_is_weak_order_one_and_closer_than_the_hand_derived_form():
    """`weak_order` with `ρ = (1-β)/η` fixed: the moment-matched Adam SDE's slope is ≈ 1, and at
    every lr its error is smaller than the published form's (measured at 8000 paths: errors
    0.0086, 0.018, 0.037, slope 1.05; the published form 0.019, 0.033, 0.052, slope 0.74)."""
    opt = sl.Adam(lr=0.02, beta1=0.9, beta2=0.99)
    kw = {"lrs": [0.01, 0.02, 0.04], "horizon": 1.6, "x0": jnp.array([1.0, -1.0, 0.5])}
    kw |= {"n_paths": 5000, "n_saves": 4, "substeps": 4}
    moments = sl.weak_order(opt, GAUSS, form="moments", **kw)
    hand = sl.weak_order(opt, GAUSS, **kw)
    assert np.all(moments.error > 3 * moments.se), (moments.error, moments.se)
    assert 0.75 < moments.slope < 1.25, moments.metrics()
    assert np.all(moments.error < hand.error), (moments.error, hand.error)


def test_linearised_stationary_of_the_moments_sde_matches_the_optimizer():
    """The rest point of the moment-matched Adam SDE (Newton on its drift at `t = ∞`) and its
    linearised stationary loss, against a long optimizer run (SE from per-path means)."""
    opt = sl.Adam(lr=0.01, beta1=0.9, beta2=0.99)
    lin = sl.linearised_stationary(opt, GAUSS, form="moments")
    np.testing.assert_allclose(lin.mean, 0.0, atol=1e-4)
    assert lin.state_names[3:6] == ("mu0", "mu1", "mu2")
    ref = sl.run_optimizer(opt, GAUSS, jnp.zeros(3), 3000, 500, jax.random.key(5), save_every=100)
    emp = sl.empirical_stationary(ref, burn_in=0.3)
    assert abs(lin.expected_loss - emp.expected_loss) < 4 * emp.expected_loss_se + 0.1 * (
        emp.expected_loss
    ), (lin.expected_loss, emp.expected_loss, emp.expected_loss_se)


def test_the_offset_changes_with_the_step_and_averages_to_the_fine_rule():
    """The quadrature offset of step `k` is shared by substeps of that step and by every path,
    differs between steps, and over all `OFFSETS` offsets the rule is the fine midpoint rule."""
    opt = sl.SignSGD(lr=0.1)
    sde = sl.sde_for(opt, GAUSS, form="moments", nodes=4)
    y = sde.initial_state(jnp.array([0.1, 0.0, -0.05]))
    d = [sde.drift(jnp.asarray(t), y, None).x for t in (0.0, 0.05, 0.1, 0.2, 0.3)]
    np.testing.assert_array_equal(d[0], d[1])  # substeps of step 0
    assert not np.array_equal(d[2], d[3]) or not np.array_equal(d[3], d[4])
    many = np.mean([sde.drift(jnp.asarray(0.1 * k), y, None).x for k in range(2000)], axis=0)
    exact = -np.asarray(scipy.special.erf(H * y.x / (np.sqrt(2) * S)))
    assert np.all(np.abs(many - exact) < 3 * 0.5 / np.sqrt(2000)), (many, exact)
    # Lower half of K = 4 cells: the tail cell [0, 1/4) split into 1/64, 1/64, 1/32, 1/16, 1/8,
    # then the inner cell [1/4, 1/2).
    assert sde.table.shape == (2 + TAIL_SPLITS, OFFSETS)
    np.testing.assert_allclose(sde.weights, [1 / 64, 1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4])
    t_sde = sl.sde_for(opt, T15, form="moments", nodes=4)
    u = 0.25 + (np.arange(OFFSETS) + 0.5) / OFFSETS * 0.25  # the last cell, [1/4, 1/2)
    np.testing.assert_allclose(t_sde.table[-1], scipy.stats.t.ppf(u, 1.5), rtol=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="nodes=1 is invalid: an integer >= 2"):
        sl.sde_for(sl.SGD(lr=0.1), GAUSS, form="moments", nodes=1)
    with pytest.raises(ValueError, match="nodes=2.5 is invalid"):
        sl.simulate(sl.SGD(lr=0.1), GAUSS, jnp.zeros(3), 10, 2, jax.random.key(0),
                    form="moments", nodes=2.5)  # fmt: skip
    with pytest.raises(ValueError, match="nodes=8 is invalid with form='default'"):
        sl.sde_for(sl.SGD(lr=0.1), GAUSS, nodes=8)
    with pytest.raises(ValueError, match="rule='quadrature' is invalid for sam"):
        sl.MomentsSDE(sl.SAM(lr=0.1, rho=0.1), GAUSS, rule="quadrature")
    with pytest.raises(ValueError, match="rule='quadrature' is invalid for GaussianNoise"):
        correlated = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=jnp.eye(3)))
        sl.MomentsSDE(sl.SGD(lr=0.1), correlated, rule="quadrature")
    with pytest.raises(ValueError, match="nodes=7 is invalid for monte carlo"):
        sl.MomentsSDE(sl.SAM(lr=0.1, rho=0.1), GAUSS, nodes=7)
    with pytest.raises(ValueError, match="rule='simpson' is invalid"):
        sl.MomentsSDE(sl.SGD(lr=0.1), GAUSS, rule="simpson")


@pytest.mark.parametrize("rule", ["quadrature", "monte_carlo"])
def test_fused_euler_increment_is_drift_dt_plus_diffusion_dw(rule):
    """The Euler step's one-call increment (moments computed once) is `b dt + G dW`."""
    from sdelens._sde._euler import combine_increment, euler_increment

    prob = sl.Quadratic(h=jnp.array([1.0, 2.0, 4.0]), noise=sl.GaussianNoise(0.5))
    sde = sl.MomentsSDE(sl.Adam(0.01, beta2=0.99), prob, rule=rule)
    y = sde.initial_state(jnp.array([1.0, -0.5, 0.3]))
    dw = jax.random.normal(jax.random.key(0), sde.brownian_shape(y.x))
    t, dt = 0.03, 0.01
    fused = jax.jit(lambda y: euler_increment(sde, t, y, None, dt, dw))(y)
    split = jax.jit(
        lambda y: combine_increment(sde.drift(t, y, None), sde.diffusion(t, y, None), dt, dw)
    )(y)
    assert float(jnp.max(jnp.abs(split.x))) > 1e-4
    for a, b in zip(jax.tree.leaves(fused), jax.tree.leaves(split), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
