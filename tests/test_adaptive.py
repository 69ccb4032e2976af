"""RMSprop(W) and Adam(W): optax updates, SDEs in both forms, stationary laws, scaling rules,
weak order."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sdelens as sl

H = jnp.array([1.0, 2.0, 4.0])
S = jnp.array([0.5, 1.0, 2.0])
X0 = jnp.array([1.5, -1.0, 0.5])
PROB = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S))
OPTS = {
    "rmsprop": sl.RMSprop(lr=1e-2, beta=0.99),
    "rmspropw": sl.RMSprop(lr=1e-2, beta=0.99, weight_decay=0.5),
    "adam": sl.Adam(lr=1e-2, beta1=0.9, beta2=0.99),
    "adamw": sl.Adam(lr=1e-2, beta1=0.9, beta2=0.99, weight_decay=1.0),
}


def test_to_optax_is_the_documented_update():
    """Hand-written RMSpropW and AdamW (ε outside the root, bias correction) over 3 steps."""
    grads = [jnp.array([0.3, -1.2]), jnp.array([-0.5, 0.7]), jnp.array([1.1, 0.2])]
    x = jnp.array([0.4, -0.8])
    lr, b, b1, b2, eps, wd = 0.1, 0.9, 0.8, 0.95, 1e-3, 0.3
    for opt in (
        sl.RMSprop(lr=lr, beta=b, eps=eps, weight_decay=wd),
        sl.Adam(lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd),
    ):
        tx, xs, state = opt.to_optax(), x, None
        state = tx.init(x)
        ref, m, v = np.asarray(x, dtype=float), 0.0, 0.0
        for k, g in enumerate(grads, start=1):
            updates, state = tx.update(g, state, xs)
            xs = optax.apply_updates(xs, updates)
            g = np.asarray(g, dtype=float)
            if isinstance(opt, sl.RMSprop):
                v = b * v + (1 - b) * g**2
                ref = ref - lr * (g / (np.sqrt(v) + eps) + wd * ref)
            else:
                m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
                mhat, vhat = m / (1 - b1**k), v / (1 - b2**k)
                ref = ref - lr * (mhat / (np.sqrt(vhat) + eps) + wd * ref)
        np.testing.assert_allclose(xs, ref, rtol=1e-5)
        np.testing.assert_allclose(opt.moments(state)[-1], v, rtol=1e-5)


@pytest.mark.parametrize("name", list(OPTS))
def test_one_step_moments_of_the_full_state(name):
    """From a state (x, m, v) at rest, one optimizer step's increment of x and m has mean
    η b(y) and covariance η G Gᵀ; v moves by η b_v (its noise is beyond the SDE's order)."""
    opt, n = OPTS[name], 200_000
    sde = sl.sde_for(opt, PROB)
    x = jnp.array([0.3, -0.4, 0.2])
    y = sde.rest_state(x)  # v at E g², m at ∇f: the SDE's regime
    # Run one discrete step from that optimizer state, by hand, on many noise draws.
    keys = jax.random.split(jax.random.key(0), n)
    g = jax.vmap(lambda k: PROB.stochastic_grad(x, k))(keys)
    d = x.shape[0]
    t = jnp.asarray(1e6 * opt.lr)  # long after the start: Adam's bias corrections are 1
    if isinstance(opt, sl.RMSprop):
        v = y[d:] * opt.beta + (1 - opt.beta) * g**2
        dx = -opt.lr * (g / (jnp.sqrt(v) + opt.eps) + opt.weight_decay * x)
        dy = jnp.concatenate([dx, v - y[d:]], axis=1)
    else:
        m = y[d : 2 * d] * opt.beta1 + (1 - opt.beta1) * g
        v = y[2 * d :] * opt.beta2 + (1 - opt.beta2) * g**2
        dx = -opt.lr * (m / (jnp.sqrt(v) + opt.eps) + opt.weight_decay * x)
        dy = jnp.concatenate([dx, m - y[d : 2 * d], v - y[2 * d :]], axis=1)
    dy = np.asarray(dy, dtype=float)
    drift = np.asarray(sde.drift(t, y, None), dtype=float)
    gmat = np.asarray(sde.diffusion(t, y, None).as_matrix(), dtype=float)
    cov = opt.lr * gmat @ gmat.T
    emp_mean, emp_cov = dy.mean(0), np.cov(dy, rowvar=False)
    se_mean = np.sqrt(np.diag(emp_cov) / n)
    # Mean: SE plus the SDE's O(η²) per-step error (E[g/√v] vs ∇f/√E v is second order).
    bias = opt.lr**2 * (1 + np.abs(drift))
    assert np.all(np.abs(emp_mean - opt.lr * drift) <= 5 * se_mean + bias)
    # Covariance of the (x, m) block; v's own O(η²) noise is not in the SDE. Adam's x noise is
    # only the (1-β₁) share of g, and v_{k+1} moving with the same g damps it by a relative
    # O((1-β₂)/(1-β₁)) (here ~5%): 10% relative slack on top of 5 SE.
    k = d if isinstance(opt, sl.RMSprop) else 2 * d
    var = np.diag(cov)[:k]
    se_cov = np.sqrt((np.outer(var, var) + cov[:k, :k] ** 2) / n)
    slack = 0.1 * np.abs(cov[:k, :k])
    assert np.all(np.abs(emp_cov[:k, :k] - cov[:k, :k]) <= 5 * se_cov + slack)


@pytest.mark.parametrize("name", list(OPTS))
def test_sde_tracks_optimizer_and_state(name):
    opt = OPTS[name]
    both = sl.optimizer_vs_sde(opt, PROB, X0, n_steps=1000, n_paths=2000, seed=1, save_every=20)
    c = both.comparison
    # 4 SE + the O(η) weak error; RMSprop's start from v₀ = 0 costs more (an O(√η) transient).
    weak = (3 if name.startswith("rmsprop") else 1) * opt.lr * float(H.max())
    assert np.all(np.abs(c.diff) <= 4 * c.se_diff + weak * np.abs(c.mean_loss_a))
    assert both.ref.state.shape == both.run.state.shape
    v_opt, v_sde = both.ref.state[:, -1, -3:].mean(0), both.run.state[:, -1, -3:].mean(0)
    np.testing.assert_allclose(v_sde, v_opt, rtol=0.03)  # both near E g² = ∇f² + s²
    np.testing.assert_allclose(v_opt, S**2, rtol=0.05)


@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_malladi_form_misses_the_gradient_dominated_transient(name):
    """Same optimizer run, two SDE forms: far from the minimum ∇f² ≫ Σ, which only the
    Compagnoni form keeps in dV, so it tracks the optimizer and the Malladi form does not."""
    opt = OPTS[name]
    key_a, key_b = jax.random.split(jax.random.key(3))
    ref = sl.run_optimizer(opt, PROB, 3 * X0, 1000, 1000, key_a, 20)
    errors = {}
    for form in ("default", "malladi"):
        run = sl.simulate(opt, PROB, 3 * X0, 1000, 1000, key_b, 20, form=form)
        errors[form] = sl.compare(ref, run).max_rel_mean_loss_error
    assert errors["default"] < 0.2 and errors["malladi"] > 0.8, errors
    assert run.config["form"] == "malladi"


def test_no_nan_at_the_start():
    for opt in OPTS.values():
        for form in ("default", "malladi"):
            sde = sl.sde_for(opt, PROB, form=form)
            y0 = sde.initial_state(X0)
            assert np.all(np.isfinite(sde.drift(jnp.asarray(0.0), y0, None)))
            assert np.all(np.isfinite(sde.diffusion(jnp.asarray(0.0), y0, None).as_matrix()))


@pytest.mark.parametrize("name", list(OPTS))
def test_closed_form_agrees_with_lyapunov_as_lr_shrinks(name):
    """The closed forms are the η → 0 limit (ρ fixed) of the linearised SDE's Lyapunov law."""
    opt = OPTS[name]
    for lr, rtol in ((1e-2, 0.03), (1e-4, 3e-4)):
        small = sl.with_lr(opt, lr)
        closed, lyap = sl.stationary(small, PROB), sl.linearised_stationary(small, PROB)
        np.testing.assert_allclose(lyap.expected_loss, closed.expected_loss, rtol=rtol)
        np.testing.assert_allclose(np.diag(lyap.cov), np.diag(closed.cov), rtol=rtol)
    assert lyap.state_cov.shape == (3 * sl.sde_for(opt, PROB).n_blocks,) * 2


def test_adamw_factor_and_rmspropw_bound():
    lr, theta = 1e-3, 1.0
    rms = sl.stationary(sl.RMSprop(lr=lr, beta=0.999, weight_decay=theta, eps=0.0), PROB)
    adam = sl.stationary(sl.Adam(lr=lr, beta1=0.99, beta2=0.999, weight_decay=theta, eps=0.0), PROB)
    rho1 = 0.01 / lr
    np.testing.assert_allclose(adam.expected_loss, rms.expected_loss * rho1 / (rho1 + theta))
    np.testing.assert_allclose(
        rms.expected_loss, lr / 4 * float(jnp.sum(H * S / (H + theta * S))), rtol=1e-6
    )
    loud = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=1e4 * S))
    bound = lr * float(H.sum()) / (4 * theta)
    big = sl.stationary(sl.RMSprop(lr=lr, beta=0.999, weight_decay=theta, eps=0.0), loud)
    assert 0.99 * bound < big.expected_loss < bound


@pytest.mark.parametrize("name", ["rmspropw", "adamw", "adam"])
def test_optimizer_reaches_its_stationary_law(name):
    opt = sl.with_lr(OPTS[name], 2e-3)
    run = sl.run_optimizer(opt, PROB, jnp.zeros(3), 6000, 400, jax.random.key(9), 50)
    est, th = sl.empirical_stationary(run), sl.linearised_stationary(opt, PROB)
    assert (
        abs(est.expected_loss - th.expected_loss)
        <= 4 * est.expected_loss_se + 0.03 * th.expected_loss
    )


START = 0.2 * X0  # noise-dominated: scaling rules are statements about that regime


@pytest.mark.parametrize(
    "opt,rule",
    [
        (sl.SGD(lr=1e-2), "linear"),
        (sl.SignSGD(lr=1e-2), "sqrt"),
        (OPTS["adam"], "malladi"),
        (OPTS["adamw"], "compagnoni"),
        (OPTS["rmspropw"], "compagnoni"),
    ],
)
def test_scaling_rule_keeps_training_the_same(opt, rule):
    chk = sl.verify_scaling(opt, PROB, START, 4.0, rule, n_steps=4000, n_paths=1000, n_saves=500)
    assert chk.holds, chk.metrics()
    assert chk.scaled.lr == pytest.approx(opt.lr * (4.0 if rule == "linear" else 2.0))


@pytest.mark.parametrize("opt,rule", [(sl.SignSGD(lr=1e-2), "linear"), (OPTS["adamw"], "malladi")])
def test_wrong_scaling_rule_fails(opt, rule):
    chk = sl.verify_scaling(opt, PROB, START, 4.0, rule, n_steps=4000, n_paths=1000, n_saves=500)
    assert not chk.holds
    assert chk.stationary_rel_diff > 0.2


def test_scale_rules_hyperparameters():
    s = sl.scale(OPTS["adamw"], 4.0)  # default for AdamW: compagnoni
    assert (s.lr, s.weight_decay, s.eps) == pytest.approx((0.02, 2.0, 5e-9))
    assert (s.beta1, s.beta2) == pytest.approx((0.6, 0.96))
    assert sl.scale(OPTS["adam"], 4.0).weight_decay == 0.0
    with pytest.raises(ValueError, match="kappa"):
        sl.scale(OPTS["adam"], 0.0)
    with pytest.raises(ValueError, match="rule='cubic'"):
        sl.scale(OPTS["adam"], 2.0, rule="cubic")
    with pytest.raises(ValueError, match="beta1"):
        sl.scale(OPTS["adam"], 20.0)  # 1 - 20 (1 - 0.9) < 0
    with pytest.raises(ValueError, match="malladi"):
        sl.scale(sl.SGD(lr=0.1), 2.0, rule="malladi")


@pytest.mark.parametrize(
    "opt", [sl.SGD(lr=0.1), sl.SignSGD(lr=0.1), sl.Adam(lr=0.1, beta1=0.9, beta2=0.99)]
)
def test_weak_order_is_one(opt):
    w = sl.weak_order(
        opt, PROB, [0.0125, 0.025, 0.05, 0.1], 2.0, X0, n_paths=20000, n_saves=10, substeps=4
    )
    assert np.all(w.error > 3 * w.se)  # errors are measured, not Monte Carlo noise
    assert 0.7 <= w.slope <= 1.3, w.metrics()


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"beta": 1.0}, "beta=1.0"),
        ({"beta": -0.1}, "beta=-0.1"),
        ({"eps": -1.0}, "eps="),
        ({"weight_decay": -0.1}, "weight_decay="),
        ({"lr": 0.0}, "lr="),
    ],
)
def test_rmsprop_bad_input(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        sl.RMSprop(**{"lr": 0.1, **kwargs})


@pytest.mark.parametrize("kwargs,needle", [({"beta1": 1.0}, "beta1"), ({"beta2": 1.5}, "beta2")])
def test_adam_bad_input(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        sl.Adam(**{"lr": 0.1, **kwargs})


def test_unknown_form_and_infinite_variance():
    with pytest.raises(ValueError, match="form='ito'"):
        sl.sde_for(OPTS["adam"], PROB, form="ito")
    with pytest.raises(ValueError, match="form='malladi'"):
        sl.sde_for(sl.SGD(lr=0.1), PROB, form="malladi")
    heavy = sl.Quadratic(h=H, noise=sl.StudentTNoise(df=1.5, scale=S))
    with pytest.raises(ValueError, match="SignSGD"):
        sl.sde_for(OPTS["adam"], heavy)
