"""`sdelens.flatness` spectra (`_spectral`: stochastic Lanczos quadrature, Hutchinson's trace)
against `numpy.linalg.eigh` of the dense Hessian of a small network, in float32 and float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import precision_fixture, quadratic, tiny_network

from sdelens import flatness

precision = precision_fixture()


@pytest.fixture
def network(precision):
    loss, x = tiny_network()
    dense = flatness.dense_hessian(loss, x)
    return loss, x, dense, np.linalg.eigvalsh(np.asarray(dense, np.float64))


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
    # each probe's quadrature mean is vᵀHv for its unit probe v: E = tr H / d (`nodes` is the
    # alias of `ritz_values`)
    per_probe = np.asarray(jnp.sum(sd.nodes * sd.weights, axis=1))
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


_KEY = jax.random.key(0)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda f, x: flatness.hutchinson_trace(f, x, _KEY, n_probes=0), "n_probes"),
        (lambda f, x: flatness.spectral_density(f, x, _KEY, n_probes=0), "n_probes"),
        (lambda f, x: flatness.spectral_density(f, x, _KEY, sigma=-1.0), "sigma"),
        (lambda f, x: flatness.spectral_density(f, x, _KEY, probe="cauchy"), "probe"),
    ],
)
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call(lambda x: jnp.sum(x**2), jnp.ones(3))
