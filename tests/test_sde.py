"""SDEs against the discrete optimizers they model: one-step moments, mean loss over time,
solvers, divergence."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

H = jnp.array([1.0, 2.0, 4.0])
S = jnp.array([0.5, 1.0, 2.0])
X0 = jnp.array([1.5, -1.0, 0.5])
CORR_ROOT = jnp.linalg.cholesky(jnp.array([[1.0, 0.6, 0.2], [0.6, 1.0, -0.3], [0.2, -0.3, 1.0]]))

NOISES = {
    "gaussian": sl.GaussianNoise(scale=S),
    "gaussian-matrix": sl.GaussianNoise(scale=CORR_ROOT * S[:, None]),
    "student-t3": sl.StudentTNoise(df=3.0, scale=S),
    "student-t1.5": sl.StudentTNoise(df=1.5, scale=S),
}
CASES = [
    (opt, noise)
    for opt in ("sgd", "signsgd")
    for noise in NOISES
    if not (opt == "sgd" and noise == "student-t1.5")
]


def make_opt(name, lr):
    return {"sgd": sl.SGD, "signsgd": sl.SignSGD}[name](lr=lr)


@pytest.mark.parametrize("opt_name,noise_name", CASES)
def test_one_step_increment_moments_match_drift_and_diffusion(opt_name, noise_name):
    """Weak consistency: E[Δx] = η b(x) and Cov(Δx) = η G Gᵀ for one optimizer step."""
    lr, n = 0.05, 200_000
    opt, prob = make_opt(opt_name, lr), sl.Quadratic(h=H, noise=NOISES[noise_name])
    x = jnp.array([0.3, -0.4, 0.2])
    run = sl.run_optimizer(opt, prob, x, n_steps=1, n_runs=n, key=jax.random.key(3))
    dx = run.x[:, 1] - run.x[:, 0]
    sde = sl.sde_for(opt, prob)
    drift = np.asarray(sde.drift(0.0, x, None))
    g = np.asarray(sde.diffusion(0.0, x, None).as_matrix())
    cov_theory = lr * g @ g.T
    # Mean: 5 standard errors of the sample mean, per coordinate.
    se_mean = np.sqrt(np.diag(np.cov(dx, rowvar=False)) / n)
    assert np.all(np.abs(dx.mean(0) - lr * drift) <= 5 * se_mean + 1e-7)
    if noise_name == "student-t3":
        # Finite variance but infinite fourth moment: the sample covariance converges too slowly
        # for an SE-based test; the mean check above still holds.
        return
    # Covariance: SE of a sample covariance entry ≈ sqrt((Var a Var b + Cov(a,b)^2) / n).
    emp = np.cov(dx, rowvar=False)
    var = np.diag(cov_theory)
    se_cov = np.sqrt((np.outer(var, var) + cov_theory**2) / n)
    assert np.all(np.abs(emp - cov_theory) <= 5 * se_cov + 1e-9)


def weak_error_tolerance(c: sl.Comparison, lr: float) -> np.ndarray:
    """4 standard errors of the difference plus the O(η) weak error, η L E f with L = max h."""
    return 4 * c.se_diff + lr * float(H.max()) * np.abs(c.mean_loss_a)


@pytest.mark.parametrize("opt_name,noise_name", CASES)
def test_sde_tracks_optimizer_mean_loss(opt_name, noise_name):
    lr = 1e-2
    both = sl.optimizer_vs_sde(
        make_opt(opt_name, lr),
        sl.Quadratic(h=H, noise=NOISES[noise_name]),
        X0,
        n_steps=600,
        n_paths=2000,
        seed=1,
        save_every=20,
    )
    c = both.comparison
    assert not (c.diverged_a or c.diverged_b)
    assert np.array_equal(both.ref.steps, both.run.steps)
    assert np.all(np.abs(c.diff) <= weak_error_tolerance(c, lr))
    # The loss actually moved: the check compares curves, not two constants.
    assert c.mean_loss_a[-1] < 0.5 * c.mean_loss_a[0]


def test_wrong_sde_is_detected():
    """Negative control: the SGD SDE does not track SignSGD, and the tolerance says so."""
    lr = 1e-2
    prob = sl.Quadratic(h=H, noise=NOISES["gaussian"])
    key_a, key_b = jax.random.split(jax.random.key(2))
    ref = sl.run_optimizer(
        sl.SignSGD(lr=lr), prob, X0, n_steps=600, n_runs=2000, key=key_a, save_every=20
    )
    wrong = sl.simulate(
        sl.SGD(lr=lr), prob, X0, n_steps=600, n_paths=2000, key=key_b, save_every=20
    )
    c = sl.compare(ref, wrong)
    assert np.any(np.abs(c.diff) > weak_error_tolerance(c, lr))


@pytest.mark.parametrize("solver", [diffrax.ItoMilstein(), diffrax.Heun()])
def test_other_solvers_agree_with_euler(solver):
    """Milstein (Itô) and Heun (Stratonovich, with the drift correction) model the same law."""
    lr = 1e-2
    prob = sl.Quadratic(h=H, noise=NOISES["gaussian"])
    kwargs = dict(n_steps=600, n_paths=2000, save_every=20)
    euler = sl.simulate(sl.SignSGD(lr=lr), prob, X0, key=jax.random.key(5), **kwargs)
    other = sl.simulate(sl.SignSGD(lr=lr), prob, X0, key=jax.random.key(6), solver=solver, **kwargs)
    c = sl.compare(euler, other)
    assert other.config["solver"] == type(solver).__name__
    assert np.all(np.abs(c.diff) <= weak_error_tolerance(c, lr))


def test_stratonovich_correction_closed_forms():
    import lineax as lx

    y = jnp.array([0.7, -1.3])
    # Geometric noise G = diag(y): c = ½ G ∂G = ½ y.
    diag = sl.stratonovich_correction(lambda t, y, a: lx.DiagonalLinearOperator(y), 0.0, y, None)
    np.testing.assert_allclose(diag, 0.5 * y, rtol=1e-6)

    # G = [[y0, y1], [0, y0]] and cᵢ = ½ Σⱼₖ Gₖⱼ ∂ₖGᵢⱼ, by hand:
    # c0 = ½ (G00 ∂0G00 + G11 ∂1G01) = ½ (y0 + y0) = y0;  c1 = ½ G01 ∂0G11 = ½ y1.
    def dense(t, y, a):
        return lx.MatrixLinearOperator(jnp.array([[y[0], y[1]], [0.0, y[0]]]))

    got = sl.stratonovich_correction(dense, 0.0, y, None)
    np.testing.assert_allclose(got, [y[0], 0.5 * y[1]], rtol=1e-6)


def test_sgd_sde_refuses_infinite_variance_and_points_to_signsgd():
    prob = sl.Quadratic(h=H, noise=NOISES["student-t1.5"])
    with pytest.raises(ValueError, match="SignSGD"):
        sl.sde_for(sl.SGD(lr=1e-2), prob)
    assert isinstance(sl.sde_for(sl.SignSGD(lr=1e-2), prob), sl.SignSGDSDE)


def test_divergence_is_reported_with_first_bad_step():
    # lr·h = 0.6·4 > 2: SGD's iterates grow like 1.4^k; the loss overflows float32 near step
    # 130 (x itself near 250). A non-finite loss counts as divergence.
    prob = sl.Quadratic(h=H, noise=NOISES["gaussian"])
    run = sl.run_optimizer(
        sl.SGD(lr=0.6), prob, X0, n_steps=400, n_runs=16, key=jax.random.key(0), save_every=10
    )
    assert run.diverged and run.n_diverged == 16
    assert 100 <= run.first_bad_step <= 200 and run.first_bad_step % 10 == 0
    assert np.all(np.isfinite(run.loss[:, run.steps < run.first_bad_step]))
    assert not np.all(np.isfinite(run.loss[:, run.steps == run.first_bad_step]))
    ok = sl.run_optimizer(
        sl.SGD(lr=0.1), prob, X0, n_steps=400, n_runs=16, key=jax.random.key(0), save_every=10
    )
    assert not ok.diverged and ok.first_bad_step is None


def test_per_path_start_points_and_grid():
    prob = sl.Quadratic(h=H, noise=NOISES["gaussian"])
    x0 = jnp.stack([X0, -X0, 2 * X0, jnp.zeros(3)])
    run = sl.simulate(sl.SGD(lr=0.02), prob, x0, n_steps=50, key=jax.random.key(0), save_every=25)
    assert run.x.shape == (4, 3, 3) and run.n_paths == 4
    np.testing.assert_allclose(run.x[:, 0], x0)
    np.testing.assert_array_equal(run.steps, [0, 25, 50])
    np.testing.assert_allclose(run.ts, [0.0, 0.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(run.loss[:, 0], jax.vmap(prob.loss)(x0), rtol=1e-6)


def test_problem_with_custom_loss_runs_both_ways():
    """`Problem` with a non-quadratic loss f = Σ x⁴/4 + x²/2: optimizer and SDE agree."""
    prob = sl.Problem(
        loss=lambda x: jnp.sum(x**4 / 4 + x**2 / 2), noise=sl.GaussianNoise(scale=0.5)
    )
    both = sl.optimizer_vs_sde(
        sl.SignSGD(lr=1e-2), prob, jnp.ones(2), n_steps=400, n_paths=2000, save_every=20
    )
    c = both.comparison
    assert np.all(np.abs(c.diff) <= 4 * c.se_diff + 1e-2 * 4 * np.abs(c.mean_loss_a))
    assert both.theory is None
