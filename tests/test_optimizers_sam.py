"""SAM and USAM: the update with one noise draw for both gradients, validation, the registry,
and USAM's exact stationary law on a quadratic (docs/math.md §11.3)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import optimizer_normals

import sdelens as sl

H = jnp.array([1.0, 2.0, 4.0])
S = jnp.array([0.5, 1.0, 2.0])
PROB = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S))
X = jnp.array([0.3, -0.4, 0.2])


@pytest.mark.parametrize("normalize", [False, True])
def test_second_gradient_reuses_the_first_draw(normalize):
    """`update` evaluates the second gradient under the first one's draw (`step_grad_fn`): on a
    quadratic with additive noise the step is exactly `-η (H (x + ρ d) + Z)` with the same `Z`
    as in `g`."""
    opt = sl.SAM(lr=0.1, rho=0.3, normalize=normalize)
    tx = opt.to_optax()
    key = jax.random.key(7)
    g = PROB.stochastic_grad(X, key)
    z = PROB.noise.sample(key, X.shape)
    np.testing.assert_allclose(g, H * X + z, rtol=1e-6)
    step, _ = tx.update(g, tx.init(X), X, step_grad_fn=lambda y: PROB.stochastic_grad(y, key))
    d = g / jnp.linalg.norm(g) if normalize else g
    np.testing.assert_allclose(step, -0.1 * (H * (X + 0.3 * d) + z), rtol=1e-5)
    # a fresh draw would differ: the test can tell the two apart
    other = PROB.noise.sample(jax.random.key(8), X.shape)
    assert float(jnp.max(jnp.abs(other - z))) > 0.1


def test_run_optimizer_steps_match_a_hand_written_loop():
    """`run_optimizer` evaluates both gradients of step `k` on the step's normals `ξ_k`: two
    steps by hand agree."""
    opt = sl.SAM(lr=0.1, rho=0.2)
    key = jax.random.key(3)
    run = sl.run_optimizer(opt, PROB, X, 2, 1, key, 1)
    x = X
    for xi in optimizer_normals(opt, key, 1, 0, 2, 3):
        g = PROB.stochastic_grad_from_normals(x, xi)
        x = x - 0.1 * PROB.stochastic_grad_from_normals(x + 0.2 * g / jnp.linalg.norm(g), xi)
    np.testing.assert_allclose(run.x[0, -1], x, rtol=1e-5, atol=1e-6)


def test_zero_gradient_means_no_perturbation():
    tx = sl.SAM(lr=0.5, rho=1.0).to_optax()
    x = jnp.array([1.0, 2.0])
    step, _ = tx.update(jnp.zeros(2), tx.init(x), x, step_grad_fn=lambda p: p)
    np.testing.assert_allclose(step, -0.5 * x)
    assert np.all(np.isfinite(step))


def test_update_without_step_grad_fn_fails():
    tx = sl.SAM(lr=0.1, rho=0.1).to_optax()
    with pytest.raises(ValueError, match="step_grad_fn="):
        tx.update(X, tx.init(X), X, grad_fn=PROB.stochastic_grad)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(X, tx.init(X), step_grad_fn=lambda p: p)
    assert isinstance(tx, optax.GradientTransformationExtraArgs)


@pytest.mark.parametrize("rho", [0.0, -0.1, float("inf"), float("nan"), "a", None])
def test_bad_rho(rho):
    with pytest.raises(ValueError, match="rho="):
        sl.SAM(lr=0.1, rho=rho)


def test_declarations_and_registry():
    sam, usam = sl.SAM(lr=0.1, rho=0.05), sl.SAM(lr=0.1, rho=0.05, normalize=False)
    assert (sam.name, usam.name) == ("sam", "usam")
    assert sam.grads_per_step == usam.grads_per_step == 2
    assert not sam.coordinatewise and sam.decay_names == () and sam.weight_decay == 0.0
    assert usam.default_scaling_rule() == "linear"
    with pytest.raises(ValueError, match="no batch-size scaling rule"):
        sam.default_scaling_rule()
    assert sam.with_lr(0.01).rho == 0.05  # ρ fixed along the small-η family
    by_name = sl.optimizer_by_name("usam", 0.1, rho=0.05, normalize=True, beta=0.9)
    assert by_name == usam
    assert sl.optimizer_by_name("sam", 0.1, rho=0.05) == sam
    assert sam.replace(rho=0.2).rho == 0.2
    with pytest.raises(ValueError, match="normalize="):
        sl.SAM(lr=0.1, rho=0.1, normalize="yes")


def test_usam_exact_stationary_law():
    """The discrete Lyapunov solution is USAM's own stationary covariance: the empirical law of
    the optimizer agrees within Monte Carlo error, and the linearised SDE is `O(η)` off."""
    opt = sl.SAM(lr=0.05, rho=0.2, normalize=False)
    exact = sl.stationary(opt, PROB)
    assert exact.method == "discrete lyapunov (exact for the optimizer)"
    hess, lift = np.diag(np.asarray(H)), np.eye(3) + 0.2 * np.diag(np.asarray(H))
    a = np.eye(3) - 0.05 * hess @ lift
    q = 0.05**2 * lift @ np.diag(np.asarray(S) ** 2) @ lift
    np.testing.assert_allclose(exact.cov, a @ exact.cov @ a.T + q, rtol=1e-6, atol=1e-12)
    run = sl.run_optimizer(opt, PROB, jnp.zeros(3), 600, 4000, jax.random.key(0), 10)
    emp = sl.empirical_stationary(run, burn_in=0.25)
    assert abs(emp.expected_loss - exact.expected_loss) < 4 * emp.expected_loss_se, (
        emp.expected_loss,
        exact.expected_loss,
        emp.expected_loss_se,
    )
    lin = sl.linearised_stationary(opt, PROB)
    gap = lin.expected_loss / exact.expected_loss - 1.0
    # measured: -0.160 at lr = 0.05, rho = 0.2 (the discrete law's O(η) excess over the SDE's)
    assert -0.2 < gap < -0.05, gap


def test_stationary_refusals():
    with pytest.raises(NotImplementedError, match="linearised_stationary"):
        sl.stationary(sl.SAM(lr=0.05, rho=0.1), PROB)
    with pytest.raises(ValueError, match="too large for a stationary law"):
        sl.stationary(sl.SAM(lr=0.3, rho=0.5, normalize=False), PROB)
    heavy = PROB.with_noise(sl.StudentTNoise(df=1.5, scale=S))
    with pytest.raises(ValueError, match="infinite"):
        sl.stationary(sl.SAM(lr=0.05, rho=0.1, normalize=False), heavy)
