"""`sdelens.flatness._variational`: Gaussian variational inference and Gaussian local entropy
(docs/math.md §7.8) against closed forms, the quadrature local entropy and Monte Carlo."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdelens import flatness

H = np.array([4.0, 0.5])
C = np.array([0.3, -0.2])
F_STAR = -1.0


@pytest.fixture(scope="module", autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def landscape_1d(x64):
    """One loss object for the module: its fits compile once."""
    return flatness.landscape(1)


def quadratic(x):
    return F_STAR + 0.5 * jnp.sum(H * (x - C) ** 2)


def penalty(s, t, gamma):
    """`T KL(N(m, s²) ‖ N(m, T/γ))` summed over axes, or its γ = 0 form."""
    s2 = np.asarray(s) ** 2
    if gamma == 0:
        return float(np.sum(-0.5 * t * (1 + np.log(s2 / t))))
    return float(np.sum(0.5 * (gamma * s2 - t - t * np.log(gamma * s2 / t))))


def well_expectation(m, s, a, c, w):
    """`E f` for `f(x) = -a exp(-|x - c|²/(2w²))` under `N(m, diag s²)`, in closed form."""
    m, s, c = (np.asarray(v, float) for v in (m, s, c))
    v = w**2 + s**2
    return -a * np.prod(w / np.sqrt(v) * np.exp(-((m - c) ** 2) / (2 * v)))


@pytest.mark.parametrize("gamma", [0.0, 1.0])
def test_fit_on_quadratic_is_the_closed_form(gamma):
    """On `f = f* + ½ Σ h (x - c)²`: `m = c`, `s² = T/(h + γ)`, value `f* + (T/2) Σ log(1 + h/γ)`
    (`γ > 0`, equal to the local-entropy loss: the Gibbs measure is Gaussian) or
    `f* + (T/2) Σ log h` (`γ = 0`)."""
    t = 0.1
    fit = flatness.fit_variational(quadratic, jnp.array([0.5, 0.5]), 0.3, t, gamma=gamma)
    np.testing.assert_allclose(fit.mean, C, atol=1e-8)
    np.testing.assert_allclose(fit.std**2, t / (H + gamma), rtol=1e-8)
    log_det = np.log(1 + H / gamma) if gamma else np.log(H)
    np.testing.assert_allclose(fit.value, F_STAR + 0.5 * t * np.sum(log_det), rtol=1e-10)
    assert fit.std_error == 0 and fit.grad_norm < 1e-8 * t
    assert fit.trajectory.shape == (1000,) and fit.trajectory[0] > fit.trajectory[-1]
    np.testing.assert_allclose(fit.trajectory[-1], fit.value, atol=1e-12)
    if gamma:
        u = flatness.local_entropy_integral(quadratic, C, gamma, t)
        np.testing.assert_allclose(fit.value, u, rtol=1e-10)


def test_objective_at_any_gaussian_on_quadratic():
    """`E_q f = f(m) + ½ Σ h s²` exactly (Gauss–Hermite), plus the KL term."""
    m, s, t = jnp.array([1.0, -0.4]), jnp.array([0.2, 0.7]), 0.05
    expected = float(quadratic(m) + 0.5 * jnp.sum(H * s**2))
    for gamma in (0.0, 0.5):
        value, error = flatness.variational_loss(quadratic, m, s, t, gamma=gamma, n_nodes=4)
        np.testing.assert_allclose(value, expected + penalty(s, t, gamma), rtol=1e-12)
        assert error == 0


def test_quadrature_on_gaussian_wells_is_the_closed_form():
    """The 2-D two-well landscape: `E_q f` of each Gaussian well is a product of 1-D Gaussian
    integrals; 48 nodes resolve a `q` narrower than about 10 well widths."""
    loss, narrow, wide = flatness.landscape(2)
    t, gamma = 0.1, 1.0
    for m, s in ((narrow, [0.03, 0.05]), (wide + 0.2, [0.3, 0.6]), (narrow - 0.04, [0.2, 0.1])):
        exact = well_expectation(m, s, 1.0, narrow, 0.05) + well_expectation(m, s, 0.8, wide, 0.5)
        value, _ = flatness.variational_loss(loss, m, jnp.array(s), t, gamma=gamma)
        np.testing.assert_allclose(value, exact + penalty(s, t, gamma), atol=2e-3)


def test_monte_carlo_agrees_with_quadrature_within_standard_errors():
    loss, narrow, _ = flatness.landscape(2)
    m, s = narrow + jnp.array([0.02, -0.01]), jnp.array([0.03, 0.04])
    exact, _ = flatness.variational_loss(loss, m, s, 0.05, gamma=1.0)
    z = []
    for seed in range(2):
        value, error = flatness.variational_loss(
            loss, m, s, 0.05, gamma=1.0, key=jax.random.key(seed), n_samples=2000
        )
        assert 0 < error < 0.01
        z.append(float((value - exact) / error))
    assert max(map(abs, z)) < 4.0, z


def test_monte_carlo_fit_in_three_dimensions():
    """`d = 3` needs a key. On a diagonal quadratic the fit on fixed antithetic draws `zₖ` sets
    `s² = T/(h · mean(z²) + γ)`: `T/(h + γ)` within the sampling error of `mean(z²)`
    (relative standard error `√(2/n)` for `n` pairs); the same key gives the same fit."""
    h, t, gamma = np.array([8.0, 2.0, 0.5]), 0.02, 0.3

    def loss(x):
        return 0.5 * jnp.sum(h * x**2)

    kwargs = {"gamma": gamma, "key": jax.random.key(3), "n_samples": 1024, "n_steps": 400}
    fit = flatness.fit_variational(loss, jnp.full(3, 0.1), 0.05, t, **kwargs)
    tolerance = 4 * np.sqrt(2 / 512) * h / (h + gamma)
    assert np.all(np.abs(fit.std**2 * (h + gamma) / t - 1) < tolerance), fit.std
    np.testing.assert_allclose(fit.mean, 0.0, atol=1e-6)
    assert fit.grad_norm < 1e-6 * t and fit.std_error > 0
    again = flatness.fit_variational(loss, jnp.full(3, 0.1), 0.05, t, **kwargs)
    np.testing.assert_array_equal(fit.std, again.std)


def test_gaussian_local_entropy_bounds_local_entropy_on_a_well(landscape_1d):
    """The Gibbs variational principle: `u_G(m) ≥ u(m)`, with a gap that is the KL divergence
    from the best Gaussian to the (non-Gaussian) Gibbs measure: positive but small."""
    loss, narrow, _ = landscape_1d
    for t in (0.02, 0.1):
        fit = flatness.fit_variational(loss, narrow, 0.002, t, gamma=1.0)
        u = flatness.local_entropy_integral(loss, fit.mean, 1.0, t, n=4001)
        assert 0 < float(fit.value - u) < 0.05 * t


def test_learned_variance_is_temperature_over_expected_curvature(landscape_1d):
    """Stein's lemma at the stationary point: `s² = T/(E_q[f''] + γ)` holds on a Gaussian well
    (where `T/(f''(m) + γ)` is off by 18%); `E_q[f'']` at the well's centre is
    `a w/(w² + s²)^{3/2}` in closed form."""
    loss, narrow, _ = landscape_1d
    t, gamma = 0.1, 1.0
    fit = flatness.fit_variational(loss, narrow, 0.002, t, gamma=gamma)
    expected, error = flatness.expected_hessian_diagonal(loss, fit.mean, fit.std)
    s2 = float(fit.std[0] ** 2)
    np.testing.assert_allclose(expected, 1.0 * 0.05 / (0.05**2 + s2) ** 1.5, rtol=1e-6)
    np.testing.assert_allclose(s2 * (expected + gamma) / t, 1.0, rtol=1e-3)
    assert s2 * (400.0 + gamma) / t > 1.15 and error == 0
    mc, mc_error = flatness.expected_hessian_diagonal(
        loss, fit.mean, fit.std, key=jax.random.key(0), n_samples=400
    )
    assert abs(float(mc[0] - expected[0])) < 4 * float(mc_error[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"std": -0.1}, "std=-0.1"),
        ({"std": jnp.ones(3)}, r"std has shape \(3,\)"),
        ({"temperature": 0.0}, "temperature=0.0"),
        ({"gamma": -1.0}, "gamma=-1.0"),
        ({"mean": jnp.ones(3)}, "key=None is invalid for d=3"),
        ({"mean": jnp.ones((2, 2))}, r"mean has shape \(2, 2\)"),
        ({"n_nodes": 1}, "n_nodes=1"),
        ({"key": jax.random.key(0), "n_samples": 2}, "n_samples=2"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = {"mean": jnp.zeros(2), "std": 0.1, "temperature": 0.1, **kwargs}
    mean, std, t = args.pop("mean"), args.pop("std"), args.pop("temperature")
    with pytest.raises(ValueError, match=match):
        flatness.variational_loss(quadratic, mean, std, t, **args)
    with pytest.raises(ValueError, match=match):
        flatness.fit_variational(quadratic, mean, std, t, **args)
    with pytest.raises(ValueError, match="n_steps=0"):
        flatness.fit_variational(quadratic, jnp.zeros(2), 0.1, 0.1, n_steps=0)
    with pytest.raises(ValueError, match="lr=0"):
        flatness.fit_variational(quadratic, jnp.zeros(2), 0.1, 0.1, lr=0)
