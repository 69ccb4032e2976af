"""Flatness tools against exact answers: the dense Hessian of a small network, closed forms of
the local entropy and the smoothed loss on quadratics, and the two-well landscape. Float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_network

from sdelens import flatness


@pytest.fixture(scope="module")
def network():
    loss, x = tiny_network()
    dense = flatness.dense_hessian(loss, x)
    return loss, x, dense, np.linalg.eigvalsh(np.asarray(dense, np.float64))


def quadratic(h):
    return lambda x: 0.5 * jnp.sum(h * x**2)


def test_hvp_equals_dense_hessian_times_v(network):
    loss, x, dense, _ = network
    v = jax.random.normal(jax.random.key(2), x.shape)
    np.testing.assert_allclose(flatness.hvp(loss, x, v), dense @ v, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dense, dense.T, atol=1e-6)


def test_top_eigenvalues_match_eigh(network):
    loss, x, dense, exact = network
    top, vectors = flatness.top_eigenvalues(loss, x, 5, jax.random.key(3))
    np.testing.assert_allclose(top, exact[::-1][:5], rtol=1e-3)
    residual = dense @ vectors - vectors * top
    assert np.max(np.linalg.norm(residual, axis=0)) < 1e-3 * exact.max()
    assert exact.min() < 0 < exact.max()  # a random point: the Hessian is indefinite


def test_lanczos_basis_is_orthonormal_and_jits(network):
    loss, x, dense, exact = network
    jitted = jax.jit(flatness.lanczos, static_argnums=(0, 2))
    alphas, betas, basis = jitted(loss, x, 41, jax.random.key(4))
    np.testing.assert_allclose(basis @ basis.T, np.eye(41), atol=1e-5)
    # n_iter = d: Qᵀ H Q = T exactly, so every eigenvalue is a Ritz value
    tri = jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)
    np.testing.assert_allclose(basis @ dense @ basis.T, tri, atol=1e-5 * exact.max())
    ritz = np.linalg.eigvalsh(np.asarray(tri, np.float64))
    np.testing.assert_allclose(ritz, exact, atol=1e-4 * exact.max())


def test_lanczos_breakdown_restarts_without_nan():
    # three distinct eigenvalues: the Krylov space of any start vector is exhausted after 3 steps
    h = jnp.array([3.0, 3.0, 3.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5])
    alphas, betas, basis = flatness.lanczos(quadratic(h), jnp.ones(10), 10, jax.random.key(0))
    assert np.all(np.isfinite(alphas)) and np.all(np.isfinite(betas))
    assert np.sum(np.abs(betas) < 1e-6) >= 2  # each exhausted block ends with β = 0
    np.testing.assert_allclose(basis @ basis.T, np.eye(10), atol=1e-5)
    tri = jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)
    np.testing.assert_allclose(jnp.linalg.eigvalsh(tri), jnp.sort(h), atol=1e-5)
    # a zero Hessian breaks down at every step
    alphas, betas, basis = flatness.lanczos(jnp.sum, jnp.ones(4), 4, jax.random.key(1))
    np.testing.assert_array_equal(alphas, 0.0)
    np.testing.assert_array_equal(betas, 0.0)
    np.testing.assert_allclose(basis @ basis.T, np.eye(4), atol=1e-6)


def test_hutchinson_trace_and_its_standard_error(network):
    loss, x, dense, exact = network
    n_probes = 400
    trace, se = flatness.hutchinson_trace(loss, x, jax.random.key(5), n_probes=n_probes)
    assert abs(trace - exact.sum()) < 4 * se
    # Rademacher probes: Var zᵀHz = 2 Σ_{i≠j} Hᵢⱼ²
    dense = np.asarray(dense, np.float64)
    off_diagonal = np.sum(dense**2) - np.sum(np.diag(dense) ** 2)
    np.testing.assert_allclose(se, np.sqrt(2 * off_diagonal / n_probes), rtol=0.2)
    diagonal, _ = flatness.hutchinson_trace(
        quadratic(jnp.arange(1.0, 6.0)), jnp.ones(5), jax.random.key(0), 2
    )
    np.testing.assert_allclose(diagonal, 15.0, rtol=1e-6)  # exact for a diagonal Hessian


def test_spectral_density_integrates_to_one_with_mean_trace_over_d(network):
    loss, x, _, exact = network
    n_probes = 8
    sd = flatness.spectral_density(loss, x, jax.random.key(6), n_probes=n_probes, n_iter=40)
    np.testing.assert_allclose(sd.weights.sum(axis=1), 1.0, rtol=1e-5)
    spacing = float(sd.grid[1] - sd.grid[0])
    assert abs(float(jnp.sum(sd.density)) * spacing - 1.0) < 0.02
    # each probe's quadrature mean is vᵀHv for its unit probe v: E = tr H / d
    per_probe = np.asarray(jnp.sum(sd.ritz_values * sd.weights, axis=1))
    assert abs(per_probe.mean() - exact.mean()) < 4 * per_probe.std(ddof=1) / np.sqrt(n_probes)
    # the Ritz values lie inside the spectrum and its extremes are found
    assert exact.min() - 1e-4 <= sd.ritz_values.min() and sd.ritz_values.max() <= exact.max() + 1e-4
    np.testing.assert_allclose(sd.ritz_values.max(), exact.max(), rtol=1e-3)
    # a wide kernel on a coarse grid of given size, and Gaussian probes
    smooth = flatness.spectral_density(
        loss,
        x,
        jax.random.key(7),
        n_iter=40,
        grid=300,
        sigma=0.05 * np.ptp(exact),
        probe="gaussian",
    )
    assert smooth.density.shape == (300,)
    spacing = float(smooth.grid[1] - smooth.grid[0])
    assert abs(float(jnp.sum(smooth.density)) * spacing - 1.0) < 0.02


@pytest.mark.parametrize("h", [jnp.array([2.0]), jnp.array([0.5, 3.0])], ids=["1d", "2d"])
def test_local_entropy_of_a_quadratic(h):
    """f = ½ xᵀ diag(h) x: -T F has curvature hγ/(h+γ) (MATH.md §7) and, normalised, the value
    (T/2) Σ log(1 + h/γ) at the minimum (the log-det penalty)."""
    gamma, temperature = 1.5, 0.2
    loss = quadratic(h)
    curvature = h * gamma / (h + gamma)
    x1, x2 = jnp.full(h.shape, 0.3), jnp.full(h.shape, -0.7)
    want = 0.5 * jnp.sum(curvature * (x2**2 - x1**2))
    at_minimum = 0.5 * temperature * jnp.sum(jnp.log1p(h / gamma))
    for method in ("laplace", "integral"):
        u = lambda x, m=method: flatness.local_entropy_loss(loss, x, gamma, temperature, m)  # noqa: E731
        np.testing.assert_allclose(u(x2) - u(x1), want, rtol=1e-4, err_msg=method)
        np.testing.assert_allclose(u(jnp.zeros_like(h)), at_minimum, rtol=1e-4, err_msg=method)
    # T = 0: the Moreau envelope, no log-det penalty
    moreau = flatness.local_entropy_laplace(loss, x2, gamma, 0.0)
    np.testing.assert_allclose(moreau, 0.5 * jnp.sum(curvature * x2**2), rtol=1e-5)


@pytest.mark.parametrize("h", [jnp.array([2.0]), jnp.array([0.5, 3.0])], ids=["1d", "2d"])
def test_langevin_gradient_and_gibbs_variance_on_a_quadratic(h):
    """⟨x'⟩ = γx/(h+γ), so -T∇F = γ(x - ⟨x'⟩) = hγ/(h+γ) x; the SGLD chain on the coupled
    quadratic (curvature k = h + γ) is AR(1) with stationary variance (T/k)/(1 - ηk/2)."""
    gamma, temperature, eta, n_steps, burn_in, n_chains = 1.5, 0.2, 2e-3, 4000, 500, 64
    x = jnp.full(h.shape, -0.7)
    est = flatness.local_entropy_langevin(
        quadratic(h), x, gamma, temperature, jax.random.key(0), n_steps, eta, n_chains, burn_in
    )
    k = h + gamma
    want = h * gamma / k * x
    # the chain's mean is exact at stationarity; what is left of the start after burn-in,
    # averaged over the kept steps, is the bias
    burn_in_bias = gamma * jnp.abs(x - gamma * x / k) * (1 - eta * k) ** burn_in
    burn_in_bias = burn_in_bias / (eta * k * (n_steps - burn_in))
    assert np.all(np.abs(est.grad - want) < 4 * gamma * est.std_error + burn_in_bias)
    np.testing.assert_allclose(est.grad, gamma * (x - est.mean), rtol=1e-5)
    # pooled variance: relative standard error √(2τ/n), τ = 2/(ηk) the autocorrelation time
    gibbs = temperature / k
    rel_se = np.sqrt(2 * (2 / (eta * k)) / ((n_steps - burn_in) * n_chains))
    assert np.all(np.abs(est.variance / (gibbs / (1 - eta * k / 2)) - 1) < 4 * rel_se)
    assert np.all(np.abs(est.variance / gibbs - 1) < 4 * rel_se + eta * k)
    # T = 0: gradient descent to the proximal point, the Moreau envelope's gradient
    cold = flatness.local_entropy_langevin(
        quadratic(h), x, gamma, 0.0, jax.random.key(0), n_steps, 0.05, n_chains, burn_in
    )
    np.testing.assert_allclose(cold.grad, want, rtol=1e-4)  # float32 sums over 3500 steps
    assert np.all(cold.std_error < 1e-6)  # identical deterministic chains


def test_smoothed_loss_and_grad_of_a_quadratic():
    h, width = jnp.array([2.0, 0.5]), 0.3
    loss = quadratic(h)
    x = jnp.array([0.4, -1.0])
    want = 0.5 * jnp.sum(h * (x**2 + width**2))
    value, se = flatness.smoothed_loss(loss, x, width, jax.random.key(0), n_samples=4000)
    assert abs(value - want) < 4 * se and 0 < se < 0.01
    grad, grad_se = flatness.smoothed_grad(loss, x, width, jax.random.key(1), n_samples=100)
    np.testing.assert_allclose(grad, h * x, rtol=1e-5)  # antithetic pairs cancel exactly
    assert np.all(grad_se < 1e-5)
    np.testing.assert_allclose(flatness.smoothed_loss_integral(loss, x, width), want, rtol=1e-5)
    # the trace penalty at the minimum: (s²/2) tr H, i.e. (T/(2γ)) Σ lᵢ at s² = T/γ
    at_minimum = flatness.smoothed_loss_integral(loss, jnp.zeros(2), width)
    np.testing.assert_allclose(at_minimum, 0.5 * width**2 * jnp.sum(h), rtol=1e-5)


def test_local_entropy_prefers_narrow_minimum_when_cold_and_wide_when_hot():
    """Default landscape: narrow well depth 1, width 0.05 (curvature 400) at -1; wide well depth
    0.8, width 0.5 (curvature 3.2) at 1.5; γ = 1. The log-det penalty gap (T/2) log(401/4.2)
    reaches the depth gap 0.2 at T ≈ 0.09: T = 0.01 keeps the narrow minimum, T = 0.3 the wide.
    Smoothing at the same width (trace penalty) prefers the wide one already at T = 0.01."""
    loss, narrow, wide = flatness.landscape_1d()
    gamma = 1.0

    def gap(temperature, method):  # u(wide) - u(narrow): negative = wide preferred
        u = [
            flatness.local_entropy_loss(loss, p, gamma, temperature, method) for p in (wide, narrow)
        ]
        return float(u[0] - u[1])

    for method in ("integral", "laplace"):
        assert gap(0.01, method) > 0.1, method
        assert gap(0.3, method) < -0.1, method
    width = np.sqrt(0.01 / gamma)
    smooth = [flatness.smoothed_loss_integral(loss, p, width) for p in (wide, narrow)]
    assert smooth[0] < smooth[1]
    # in 2-D both curvatures count twice: the flip moves to T ≈ 0.044
    loss2, narrow2, wide2 = flatness.landscape_2d()
    u2 = [flatness.local_entropy_integral(loss2, p, gamma, 0.1, n=301) for p in (wide2, narrow2)]
    assert u2[0] < u2[1]
    assert flatness.two_minima(2)[0](narrow2) == loss2(narrow2)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda f, x: flatness.local_entropy_laplace(f, x, -1.0, 0.1), "gamma"),
        (lambda f, x: flatness.local_entropy_laplace(f, x, float("nan"), 0.1), "gamma"),
        (lambda f, x: flatness.local_entropy_laplace(f, x, 1.0, -0.1), "temperature"),
        (lambda f, x: flatness.local_entropy_integral(f, x[:1], 1.0, 0.0), "temperature"),
        (lambda f, x: flatness.local_entropy_integral(f, x, 1.0, 0.1), "d <= 2"),
        (lambda f, x: flatness.local_entropy_loss(f, x, 1.0, 0.1, "exact"), "method"),
        (lambda f, x: flatness.local_entropy_langevin(f, x, 1.0, 0.1, _KEY, 0), "n_steps"),
        (lambda f, x: flatness.local_entropy_langevin(f, x, 1.0, 0.1, _KEY, 10, 0.0), "step_size"),
        (
            lambda f, x: flatness.local_entropy_langevin(f, x, 1.0, 0.1, _KEY, n_chains=0),
            "n_chains",
        ),
        (
            lambda f, x: flatness.local_entropy_langevin(f, x, 1.0, 0.1, _KEY, 10, burn_in=10),
            "burn_in",
        ),
        (lambda f, x: flatness.smoothed_loss(f, x, 0.0, _KEY), "width"),
        (lambda f, x: flatness.smoothed_grad(f, x, 0.1, _KEY, n_samples=2), "n_samples"),
        (lambda f, x: flatness.hutchinson_trace(f, x, _KEY, n_probes=0), "n_probes"),
        (lambda f, x: flatness.spectral_density(f, x, _KEY, n_probes=0), "n_probes"),
        (lambda f, x: flatness.spectral_density(f, x, _KEY, sigma=-1.0), "sigma"),
        (lambda f, x: flatness.spectral_density(f, x, _KEY, probe="cauchy"), "probe"),
        (lambda f, x: flatness.lanczos(f, x, 0, _KEY), "n_iter=0"),
        (lambda f, x: flatness.lanczos(f, x, 4, _KEY), "n_iter=4"),
        (lambda f, x: flatness.top_eigenvalues(f, x, 4, _KEY), "k=4"),
        (lambda f, x: flatness.landscape_1d(narrow_width=0.0), "narrow_width"),
    ],
)
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call(lambda x: jnp.sum(x**2), jnp.ones(3))


_KEY = jax.random.key(0)
