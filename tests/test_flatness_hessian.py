"""`sdelens.flatness` Hessian tools (`_hessian`: hvp, dense Hessian, Lanczos, top eigenvalues)
against `numpy.linalg.eigh` of the dense Hessian of a small network, in float32 and float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import precision_fixture, quadratic, tiny_network

from sdelens import flatness

precision = precision_fixture()

# where float64 can check more than float32 rounding allows
_TOLERANCE = {
    "float32": {"hvp_rtol": 1e-4, "hvp_atol": 1e-5, "top_rtol": 1e-3, "pair_atol": 1e-5},
    "float64": {"hvp_rtol": 1e-10, "hvp_atol": 1e-12, "top_rtol": 1e-6, "pair_atol": 1e-6},
}


@pytest.fixture
def network(precision):
    loss, x = tiny_network()
    dense = flatness.dense_hessian(loss, x)
    exact = np.linalg.eigvalsh(np.asarray(dense, np.float64))
    return loss, x, dense, exact, _TOLERANCE[precision]


def test_hvp_equals_dense_hessian_times_v(network):
    loss, x, dense, _, tol = network
    v = jax.random.normal(jax.random.key(2), x.shape)
    np.testing.assert_allclose(
        flatness.hvp(loss, x, v), dense @ v, rtol=tol["hvp_rtol"], atol=tol["hvp_atol"]
    )
    np.testing.assert_allclose(dense, dense.T, atol=1e-6)


def test_top_eigenvalues_match_eigh(network):
    loss, x, dense, exact, tol = network
    top, vectors = flatness.top_eigenvalues(loss, x, 5, jax.random.key(3))
    np.testing.assert_allclose(top, exact[::-1][:5], rtol=tol["top_rtol"])
    residual = dense @ vectors - vectors * top
    assert np.max(np.linalg.norm(residual, axis=0)) < 1e-3 * exact.max()
    np.testing.assert_allclose(dense @ vectors[:, 0], top[0] * vectors[:, 0], atol=tol["pair_atol"])
    assert exact.min() < 0 < exact.max()  # a random point: the Hessian is indefinite


def test_lanczos_basis_is_orthonormal_and_jits(network):
    loss, x, dense, exact, _ = network
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


_KEY = jax.random.key(0)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda f, x: flatness.lanczos(f, x, 0, _KEY), "n_iter=0"),
        (lambda f, x: flatness.lanczos(f, x, 4, _KEY), "n_iter=4"),
        (lambda f, x: flatness.top_eigenvalues(f, x, 4, _KEY), "k=4"),
    ],
)
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call(lambda x: jnp.sum(x**2), jnp.ones(3))
