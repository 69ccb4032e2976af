"""SGD and SignSGD: the optax updates, their stationary laws (docs/math.md §5) in closed form
and by the Lyapunov route, checked against the optimizer, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sdelens as sl

H = jnp.array([1.0, 2.0, 4.0])
BASE = jnp.array([0.5, 1.0, 2.0])
LR = 2e-3


@pytest.mark.parametrize("cls", [sl.SGD, sl.SignSGD])
@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf")])
def test_learning_rate(cls, lr):
    with pytest.raises(ValueError, match=r"lr=.*finite and > 0"):
        cls(lr=lr)


def test_to_optax_is_the_documented_update():
    x, g = jnp.array([0.4, -0.8, 0.0]), jnp.array([0.3, -1.2, 0.0])
    for opt, step in ((sl.SGD(lr=0.1), 0.1 * g), (sl.SignSGD(lr=0.1), 0.1 * jnp.sign(g))):
        tx = opt.to_optax()
        updates, state = tx.update(g, tx.init(x), x)
        np.testing.assert_allclose(optax.apply_updates(x, updates), x - step, rtol=1e-6)
        assert type(opt.initial_state(x)) is sl.ParamState and opt.initial_state(x).x is x
        assert opt.state(x, state).x is x and type(opt.state(x, state)) is sl.ParamState


def test_closed_forms_are_math_md_section_5():
    prob = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=BASE))
    sgd, sign = sl.stationary(sl.SGD(lr=LR), prob), sl.stationary(sl.SignSGD(lr=LR), prob)
    np.testing.assert_allclose(np.diag(sgd.cov), LR / 2 * BASE**2 / H, rtol=1e-6)
    np.testing.assert_allclose(sgd.expected_loss, LR / 4 * float(jnp.sum(BASE**2)), rtol=1e-6)
    factor = np.sqrt(np.pi / 2)
    np.testing.assert_allclose(np.diag(sign.cov), LR / 2 * factor * BASE / H, rtol=1e-6)
    np.testing.assert_allclose(
        sign.expected_loss, LR / 4 * factor * float(jnp.sum(BASE)), rtol=1e-6
    )
    np.testing.assert_allclose(sgd.mean, 0.0)
    t = sl.stationary(
        sl.SignSGD(lr=LR), sl.Quadratic(h=H, noise=sl.StudentTNoise(df=1.5, scale=BASE))
    )
    c_nu = sl.StudentTNoise(df=1.5, scale=1.0).phase3_slope()
    np.testing.assert_allclose(t.expected_loss, LR / 4 / c_nu * float(jnp.sum(BASE)), rtol=1e-6)


@pytest.mark.parametrize("opt", [sl.SGD(lr=LR), sl.SignSGD(lr=LR)])
def test_lyapunov_route_equals_closed_form(opt):
    diag = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=BASE))
    dense = sl.Quadratic(h=jnp.diag(H), noise=sl.GaussianNoise(scale=jnp.diag(BASE)))
    closed, lyap = sl.stationary(opt, diag), sl.stationary(opt, dense)
    assert closed.method == "closed form" and lyap.method == "lyapunov"
    np.testing.assert_allclose(lyap.cov, closed.cov, rtol=1e-6, atol=1e-12)
    # stationary() is the optimizer's own stationary_cov plus the quadratic's moments.
    cov, method = opt.stationary_cov(diag)
    np.testing.assert_array_equal(cov, closed.cov)
    assert method == closed.method


def test_sgd_on_a_rotated_quadratic_keeps_the_trace_identity():
    """For any SPD H: H C + C H = η Σ, hence E f = ½ tr(H C) = (η/4) tr Σ."""
    q, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (4, 4)))
    hess = q @ jnp.diag(jnp.array([0.5, 1.0, 3.0, 6.0])) @ q.T
    root = jnp.tril(jax.random.normal(jax.random.key(1), (4, 4))) * 0.3 + jnp.eye(4)
    prob = sl.Quadratic(h=0.5 * (hess + hess.T), noise=sl.GaussianNoise(scale=root))
    th = sl.stationary(sl.SGD(lr=LR), prob)
    sigma = np.asarray(root @ root.T)
    h = np.asarray(prob.hessian)
    np.testing.assert_allclose(h @ th.cov + th.cov @ h, LR * sigma, atol=1e-9)
    np.testing.assert_allclose(th.expected_loss, LR / 4 * np.trace(sigma), rtol=1e-6)


def test_sgd_stationary_cov_refuses_an_unstable_step():
    """The discrete SGD has a stationary law only for lr · h_max < 2 (h_max = 4: lr < 0.5)."""
    prob = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=BASE))
    sl.SGD(lr=0.49).stationary_cov(prob)
    for lr in (0.5, 0.6):
        with pytest.raises(ValueError, match=rf"lr={lr:g} is too large .* lr must be < 0.5"):
            sl.SGD(lr=lr).stationary_cov(prob)
    rotated = sl.Quadratic(h=jnp.array([[3.0, 1.0], [1.0, 3.0]]), noise=sl.GaussianNoise(1.0))
    sl.SGD(lr=0.45).stationary_cov(rotated)
    with pytest.raises(ValueError, match="lr=0.6 is too large"):  # λ_max = 4, not max hᵢᵢ = 3
        sl.SGD(lr=0.6).stationary_cov(rotated)
    heavy = sl.Quadratic(h=H, noise=sl.StudentTNoise(df=1.5, scale=BASE))
    with pytest.raises(ValueError, match="variance is infinite"):
        sl.SGD(lr=LR).stationary_cov(heavy)
    custom = sl.Problem(loss=lambda x: jnp.sum(x**2), noise=sl.GaussianNoise(scale=1.0))
    for opt in (sl.SGD(lr=LR), sl.SignSGD(lr=LR)):
        with pytest.raises(NotImplementedError, match="Quadratic problems only"):
            opt.stationary_cov(custom)


@pytest.mark.parametrize("df", [1.5, 4.0])
def test_signsgd_heavy_tail_floor_uses_c_nu(df):
    """Student-t noise, including infinite variance: the floor is (η/4)(1/c_ν) Σ sᵢ."""
    prob = sl.Quadratic(h=H, noise=sl.StudentTNoise(df=df, scale=BASE))
    run = sl.run_optimizer(
        sl.SignSGD(lr=LR),
        prob,
        jnp.zeros(3),
        n_steps=6000,
        n_runs=400,
        key=jax.random.key(7),
        save_every=50,
    )
    est, th = sl.empirical_stationary(run, burn_in=0.5), sl.stationary(sl.SignSGD(lr=LR), prob)
    assert (
        abs(est.expected_loss - th.expected_loss)
        <= 4 * est.expected_loss_se + LR * 4 * th.expected_loss
    )


def test_correlated_noise_covariance_matches_lyapunov():
    """SignSGD with correlated Gaussian noise: Cov(sign g) has (2/π) arcsin ρ off the diagonal,
    and the optimizer's stationary covariance matches the Lyapunov solution entry by entry."""
    root = jnp.linalg.cholesky(jnp.array([[1.0, 0.8], [0.8, 1.0]]))
    prob = sl.Quadratic(h=jnp.array([1.0, 1.0]), noise=sl.GaussianNoise(scale=root))
    th = sl.stationary(sl.SignSGD(lr=LR), prob)
    assert th.method == "lyapunov"
    run = sl.run_optimizer(
        sl.SignSGD(lr=LR),
        prob,
        jnp.zeros(2),
        n_steps=5000,
        n_runs=400,
        key=jax.random.key(8),
        save_every=50,
    )
    keep = run.ts >= 0.5 * run.ts[-1]
    x = run.x[:, keep]
    # One sample per path: its time-averaged outer product (independent across paths).
    per_path = np.einsum("psi,psj->pij", x, x) / x.shape[1]
    se = per_path.std(axis=0, ddof=1) / np.sqrt(per_path.shape[0])
    assert np.all(np.abs(per_path.mean(0) - th.cov) <= 4 * se + LR * th.cov.max())
    # The off-diagonal is really there (correlated noise, positively correlated iterates).
    assert th.cov[0, 1] > 0.3 * th.cov[0, 0]


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_is_optax_sgd_with_momentum(nesterov):
    """`m ← βm + g`, `x ← x - η m` (Nesterov: `x - η(g + βm)`), exactly `optax.sgd(lr, β,
    nesterov)`, on `MomentumState(x, m)`."""
    opt = sl.SGD(lr=0.1, momentum=0.8, nesterov=nesterov)
    tx, ref = opt.to_optax(), optax.sgd(0.1, momentum=0.8, nesterov=nesterov)
    x = jnp.array([0.4, -0.8, 1.0])
    state, ref_state, mine, m = tx.init(x), ref.init(x), x, jnp.zeros(3)
    assert type(opt.initial_state(x)) is sl.MomentumState
    np.testing.assert_array_equal(opt.initial_state(x).m, 0.0)
    for g in (jnp.array([0.3, -1.2, 0.0]), jnp.array([-0.5, 0.1, 2.0]), jnp.array([1.0, 1.0, 1.0])):
        updates, state = tx.update(g, state, x)
        ref_updates, ref_state = ref.update(g, ref_state, x)
        np.testing.assert_array_equal(updates, ref_updates)
        m = 0.8 * m + g
        mine = mine - 0.1 * ((g + 0.8 * m) if nesterov else m)
        x = optax.apply_updates(x, updates)
        np.testing.assert_allclose(x, mine, rtol=1e-6)
        y = opt.state(x, state)
        assert type(y) is sl.MomentumState and y.x is x
        np.testing.assert_allclose(y.m, m, rtol=1e-6)


def test_momentum_declarations_and_rebuilding():
    """β is held fixed by `with_lr` (no decay names), the batch rule stays linear, the name
    stays "sgd"; zero momentum (with or without Nesterov) is plain SGD on `ParamState`."""
    opt = sl.SGD(lr=0.01, momentum=0.9, nesterov=True)
    assert opt.name == "sgd" and opt.decay_names == () and opt.coordinatewise
    assert opt.hyperparameters() == {"lr": 0.01, "momentum": 0.9, "nesterov": True}
    assert opt.with_lr(0.005) == sl.SGD(lr=0.005, momentum=0.9, nesterov=True)
    assert sl.scale(opt, 4.0) == sl.SGD(lr=0.04, momentum=0.9, nesterov=True)
    assert opt.default_scaling_rule() == "linear"
    assert opt.replace(momentum=0.5).momentum == 0.5
    assert sl.optimizer_by_name("sgd", 0.01, momentum=0.9, nesterov=True) == opt
    x = jnp.array([1.0, 2.0])
    for plain in (sl.SGD(lr=0.1), sl.SGD(lr=0.1, nesterov=True)):
        assert type(plain.initial_state(x)) is sl.ParamState
        tx = plain.to_optax()
        updates, state = tx.update(x, tx.init(x), x)
        np.testing.assert_array_equal(updates, -0.1 * x)
        assert type(plain.state(x, state)) is sl.ParamState
    with pytest.raises(ValueError, match=r"momentum=1.0 is invalid: allowed range is \[0.0, 1.0\)"):
        sl.SGD(lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="momentum='x' is invalid: a number is required"):
        sl.SGD(lr=0.1, momentum="x")
