"""`sdelens.flatness` local entropy (`_entropy`) against exact answers: closed forms on
quadratics (Laplace, quadrature and Langevin estimates) and the two-well landscape's preference
flip, in float32 and float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import langevin_on_quadratic, precision_fixture, quadratic

from sdelens import flatness

precision = precision_fixture()


@pytest.mark.parametrize("h", [jnp.array([2.0]), jnp.array([0.5, 3.0])], ids=["1d", "2d"])
def test_local_entropy_of_a_quadratic(h, precision):
    """f = ½ xᵀ diag(h) x: -T F has curvature hγ/(h+γ) (docs/math.md §7) and, normalised, the
    value (T/2) Σ log(1 + h/γ) at the minimum (the log-det penalty)."""
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


@pytest.mark.parametrize("sampler", ["sgld", "sghmc"])
@pytest.mark.parametrize("h", [jnp.array([2.0]), jnp.array([0.5, 3.0])], ids=["1d", "2d"])
def test_langevin_gradient_and_gibbs_variance_on_a_quadratic(h, sampler, precision):
    """⟨x'⟩ = γx/(h+γ), so -T∇F = γ(x - ⟨x'⟩) = hγ/(h+γ) x; the chain on the coupled quadratic
    (curvature k = h + γ) is a linear Gaussian recurrence whose stationary variance is
    (T/k)/(1 - ηk/(2(2 - c))), c = 1 for SGLD (`helpers.langevin_on_quadratic`)."""
    gamma, temperature, eta, n_steps, burn_in, n_chains = 1.5, 0.2, 2e-3, 4000, 500, 64
    x = jnp.full(h.shape, -0.7)
    est = flatness.local_entropy_langevin(
        quadratic(h),
        x,
        gamma,
        temperature,
        jax.random.key(0),
        n_steps,
        eta,
        n_chains,
        burn_in,
        sampler=sampler,
    )
    k = np.asarray(h + gamma, np.float64)
    chain = [langevin_on_quadratic(kk, eta, temperature, sampler) for kk in k]
    exact_variance, tau, radius = (np.array(column) for column in zip(*chain, strict=True))
    want = h * gamma / k * x
    # the chain's mean is exact at stationarity; what is left of the start after burn-in,
    # averaged over the kept steps, is the bias (it shrinks by the radius per step: 1 - ηk for
    # SGLD)
    burn_in_bias = gamma * np.abs(x - gamma * x / k) * radius**burn_in
    burn_in_bias = burn_in_bias / ((1 - radius) * (n_steps - burn_in))
    assert np.all(np.abs(est.grad - want) < 4 * gamma * est.std_error + burn_in_bias)
    np.testing.assert_allclose(est.grad, gamma * (x - est.mean), rtol=1e-5)
    # pooled variance: relative standard error √(2τ/n), τ the autocorrelation time of x'²
    gibbs = temperature / k
    rel_se = np.sqrt(2 * tau / ((n_steps - burn_in) * n_chains))
    assert np.all(np.abs(est.variance / exact_variance - 1) < 4 * rel_se)
    assert np.all(np.abs(est.variance / gibbs - 1) < 4 * rel_se + eta * k)
    # T = 0: (heavy-ball) gradient descent to the proximal point, the Moreau envelope's gradient
    cold = flatness.local_entropy_langevin(
        quadratic(h),
        x,
        gamma,
        0.0,
        jax.random.key(0),
        n_steps,
        0.05,
        n_chains,
        burn_in,
        sampler=sampler,
    )
    np.testing.assert_allclose(cold.grad, want, rtol=1e-4)  # float32 sums over 3500 steps
    assert np.all(cold.std_error < 1e-6)  # identical deterministic chains


def test_local_entropy_prefers_narrow_minimum_when_cold_and_wide_when_hot(precision):
    """Default landscape: narrow well depth 1, width 0.05 (curvature 400) at -1; wide well depth
    0.8, width 0.5 (curvature 3.2) at 1.5; γ = 1. The log-det penalty gap (T/2) log(401/4.2)
    reaches the depth gap 0.2 at T ≈ 0.09: T ≤ 0.05 keeps the narrow minimum, T ≥ 0.15 the
    wide. Smoothing at the same width (trace penalty) prefers the wide one already at T = 0.01."""
    loss, narrow, wide = flatness.landscape(1)
    gamma = 1.0

    def gap(temperature, method):  # u(wide) - u(narrow): negative = wide preferred
        u = [
            flatness.local_entropy_loss(loss, p, gamma, temperature, method) for p in (wide, narrow)
        ]
        return float(u[0] - u[1])

    for method in ("integral", "laplace"):
        assert gap(0.01, method) > 0.1, method
        assert gap(0.3, method) < -0.1, method
    # the flip is bracketed by [0.05, 0.15]
    assert gap(0.002, "integral") > 0 and gap(0.05, "integral") > 0 and gap(0.15, "integral") < 0
    for temperature in (0.01, 0.15):
        width = np.sqrt(temperature / gamma)
        smooth = [flatness.smoothed_loss_integral(loss, p, width) for p in (wide, narrow)]
        assert smooth[0] < smooth[1], temperature
    # in 2-D both curvatures count twice: the flip moves to T ≈ 0.044
    loss2, narrow2, wide2 = flatness.landscape(2)
    u2 = [flatness.local_entropy_integral(loss2, p, gamma, 0.1, n=301) for p in (wide2, narrow2)]
    assert u2[0] < u2[1]


_KEY = jax.random.key(0)


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
        (
            lambda f, x: flatness.local_entropy_langevin(f, x, 1.0, 0.1, _KEY, sampler="hmc"),
            "sampler='hmc'",
        ),
        (
            lambda f, x: flatness.local_entropy_langevin(f, x, 1.0, 0.1, _KEY, friction=0.0),
            r"friction=0.0 is invalid: allowed range is \(0, 1\]",
        ),
        (
            lambda f, x: flatness.local_entropy_langevin(f, x, 1.0, 0.1, _KEY, friction=1.5),
            "friction=1.5",
        ),
    ],
)
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call(lambda x: jnp.sum(x**2), jnp.ones(3))
