"""`sdelens.studies._spectrum`: the Hessian spectrum at a point (top eigenvalues, trace, SLQ
density, the share of the mass near zero)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl


@pytest.fixture(scope="module", autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def test_hessian_spectrum_of_a_quadratic():
    h = jnp.concatenate([jnp.array([5.0, 3.0]), jnp.full(38, 1e-4)])
    prob = sl.Quadratic(h=h, noise=sl.GaussianNoise(0.1))
    spec = sl.hessian_spectrum(prob, jnp.ones(40), jax.random.key(0), k=2, n_iter=40)
    np.testing.assert_allclose(spec.top, [5.0, 3.0], rtol=1e-6)
    assert abs(spec.trace - float(h.sum())) < 1e-6  # Rademacher probes are exact for diagonal H
    np.testing.assert_allclose(spec.near_zero_fraction, 38 / 40, atol=0.15)
    assert spec.trace_se < 1e-6  # exact probes: no spread
    density = spec.density
    assert density.grid.shape == density.density.shape == (400,)
    np.testing.assert_allclose(np.sum(density.weights, axis=1), 1.0, rtol=1e-5)
    m = spec.metrics()
    assert m == {
        "top_eigenvalues": spec.top.tolist(),
        "trace": spec.trace,
        "trace_se": spec.trace_se,
        "near_zero_fraction": spec.near_zero_fraction,
    }
    # a loss function gives the same numbers as the problem (its loss)
    again = sl.hessian_spectrum(prob.loss, jnp.ones(40), jax.random.key(0), k=2, n_iter=40)
    np.testing.assert_allclose(again.top, spec.top, rtol=1e-6)
    assert again.trace == pytest.approx(spec.trace, rel=1e-6)
    with pytest.raises(ValueError, match="key=None is invalid"):
        sl.hessian_spectrum(prob, jnp.ones(40), None)
