"""Stationary laws (MATH.md §5): closed forms, the Lyapunov route, and the optimizers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

H = jnp.array([1.0, 2.0, 4.0])
BASE = jnp.array([0.5, 1.0, 2.0])
LR = 2e-3


@pytest.fixture(scope="module")
def sweep():
    """Stationary loss of SGD and SignSGD, optimizer and SDE, as the noise scale grows."""
    return sl.noise_sweep(
        [sl.SGD(lr=LR), sl.SignSGD(lr=LR)],
        lambda s: sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=s * BASE)),
        [0.25, 0.5, 1.0, 2.0],
        jnp.zeros(3),
        n_steps=10_000,
        n_paths=400,
        save_every=50,
    )


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


def test_lyapunov_refuses_unstable_drift():
    with pytest.raises(ValueError, match="not stable"):
        sl.lyapunov(np.array([[0.1, 0.0], [0.0, -1.0]]), np.eye(2))


def test_optimizer_and_sde_reach_the_theoretical_floor(sweep):
    """Each estimate within 4 SE plus the O(η) bias, η·max(h)·E f, of the closed form."""
    for name, by_kind in sweep.loss.items():
        theory = by_kind["theory"]
        for kind in ("optimizer", "sde"):
            tol = 4 * sweep.se[name][kind] + LR * float(H.max()) * theory
            assert np.all(np.abs(by_kind[kind] - theory) <= tol), (name, kind)


def test_noise_level_slopes_are_two_for_sgd_and_one_for_signsgd(sweep):
    for kind in ("optimizer", "sde"):
        assert abs(sweep.slopes["sgd"][kind] - 2.0) < 0.05
        assert abs(sweep.slopes["signsgd"][kind] - 1.0) < 0.05
    assert sweep.slopes["sgd"]["theory"] == pytest.approx(2.0)
    assert sweep.slopes["signsgd"]["theory"] == pytest.approx(1.0)


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


def test_empirical_window_selects_saves():
    prob = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=BASE))
    run = sl.run_optimizer(
        sl.SGD(lr=0.01), prob, jnp.zeros(3), n_steps=100, n_runs=4, save_every=10
    )
    est = sl.empirical_stationary(run, burn_in=0.5, window=0.2)
    assert "4 paths x 3 saves" in est.method  # t/T in {0.5, 0.6, 0.7}
