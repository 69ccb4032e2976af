"""Dense linear algebra the theory needs: the Lyapunov equation and PSD square roots."""

from __future__ import annotations

import jax.numpy as jnp
import lineax as lx
import numpy as np
import scipy.linalg
from jaxtyping import Array, Float

__all__ = ["lyapunov", "discrete_lyapunov", "psd_sqrt"]


def lyapunov(drift_matrix, diffusion_cov) -> np.ndarray:
    """Stationary covariance of the linear SDE `dY = A Y dt + B dW` (docs/math.md §5).

    Solves `A C + C Aᵀ + B Bᵀ = 0` (Bartels–Stewart, `scipy.linalg.solve_continuous_lyapunov`)
    for `A = drift_matrix`, `B Bᵀ = diffusion_cov`. `A` must be stable (every eigenvalue with
    negative real part), else no stationary distribution exists.
    """
    a = np.asarray(drift_matrix, dtype=float)
    q = np.asarray(diffusion_cov, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or q.shape != a.shape:
        raise ValueError(
            f"drift_matrix {a.shape} and diffusion_cov {q.shape} must be square of one size."
        )
    worst = np.linalg.eigvals(a).real.max()
    if worst >= 0:
        raise ValueError(
            f"drift_matrix is not stable (largest eigenvalue real part {worst:.3g} >= 0): "
            "the SDE has no stationary distribution."
        )
    c = scipy.linalg.solve_continuous_lyapunov(a, -q)
    return 0.5 * (c + c.T)


def discrete_lyapunov(transition, noise_cov) -> np.ndarray:
    """Stationary covariance of the linear recursion `y ← A y + ξ`, `Cov ξ = Q`: the solution
    of `C = A C Aᵀ + Q` (`scipy.linalg.solve_discrete_lyapunov`). The exact stationary law of
    an optimizer that is linear on a quadratic (heavy-ball SGD, USAM). `A` must be stable
    (spectral radius < 1), else no stationary distribution exists.
    """
    a = np.asarray(transition, dtype=float)
    q = np.asarray(noise_cov, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or q.shape != a.shape:
        raise ValueError(
            f"transition {a.shape} and noise_cov {q.shape} must be square of one size."
        )
    radius = float(np.abs(np.linalg.eigvals(a)).max())
    if radius >= 1:
        raise ValueError(
            f"transition is not stable (spectral radius {radius:.4g} >= 1): the recursion has "
            "no stationary distribution."
        )
    c = scipy.linalg.solve_discrete_lyapunov(a, q)
    return 0.5 * (c + c.T)


def psd_sqrt(mat: Float[Array, "d d"]) -> lx.MatrixLinearOperator:
    """Symmetric PSD square root by eigendecomposition (eigenvalues clipped at 0)."""
    eigval, eigvec = jnp.linalg.eigh(mat)
    root = (eigvec * jnp.sqrt(jnp.clip(eigval, 0.0))) @ eigvec.T
    return lx.MatrixLinearOperator(root, lx.symmetric_tag)
