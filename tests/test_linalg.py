"""`sdelens._linalg`: the Lyapunov equation of a linear SDE and PSD square roots."""

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import sdelens as sl
from sdelens._linalg import lyapunov, psd_sqrt


def test_lyapunov_solves_the_stationary_equation():
    rng = np.random.default_rng(0)
    a = -2.0 * np.eye(4) + 0.5 * rng.standard_normal((4, 4))  # stable, not symmetric
    assert np.linalg.eigvals(a).real.max() < 0
    b = rng.standard_normal((4, 4))
    c = lyapunov(a, b @ b.T)
    np.testing.assert_allclose(a @ c + c @ a.T + b @ b.T, 0.0, atol=1e-10)
    np.testing.assert_array_equal(c, c.T)
    assert np.linalg.eigvalsh(c).min() > 0
    # Ornstein-Uhlenbeck dY = -a Y dt + √q dW: Var Y_∞ = q / (2a).
    np.testing.assert_allclose(lyapunov([[-3.0]], [[1.5]]), [[0.25]], rtol=1e-12)
    assert sl.lyapunov is lyapunov


def test_lyapunov_refuses_unstable_drift():
    with pytest.raises(ValueError, match="not stable"):
        lyapunov(np.array([[0.1, 0.0], [0.0, -1.0]]), np.eye(2))
    with pytest.raises(ValueError, match="square of one size"):
        lyapunov(-np.eye(2), np.eye(3))


def test_psd_sqrt_is_the_symmetric_root():
    q, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (3, 3)))
    mat = q @ jnp.diag(jnp.array([4.0, 1.0, 0.25])) @ q.T
    root = psd_sqrt(mat)
    assert isinstance(root, lx.MatrixLinearOperator) and lx.is_symmetric(root)
    r = np.asarray(root.as_matrix())
    np.testing.assert_allclose(r, r.T, atol=1e-6)
    np.testing.assert_allclose(r @ r, mat, atol=1e-5)
    np.testing.assert_allclose(np.linalg.eigvalsh(r), [0.5, 1.0, 2.0], rtol=1e-5)
    # Rounding below zero is clipped: a rank-one matrix has a finite rank-one root.
    v = jnp.array([1.0, -2.0, 0.5])
    rank_one = np.asarray(psd_sqrt(jnp.outer(v, v)).as_matrix())
    assert np.all(np.isfinite(rank_one))
    np.testing.assert_allclose(rank_one @ rank_one, np.outer(v, v), atol=1e-5)
