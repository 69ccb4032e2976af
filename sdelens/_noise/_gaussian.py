"""Gaussian gradient noise, with the SignSGD moments in closed form."""

from __future__ import annotations

import math
from typing import final

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import lineax as lx
import numpy as np
from jaxtyping import Array, Float

from .. import _check
from .._linalg import psd_sqrt
from ._base import AbstractAdditiveNoise, check_scale

__all__ = ["GaussianNoise"]

# Gauss-Legendre nodes on [0, 1] for the bivariate normal CDF integral below.
_GL_NODES, _GL_WEIGHTS = (np.asarray(a) for a in np.polynomial.legendre.leggauss(24))
_GL_NODES = 0.5 * (_GL_NODES + 1.0)
_GL_WEIGHTS = 0.5 * _GL_WEIGHTS


def bivariate_normal_cdf(h, k, rho):
    """`P[U < h, V < k]` for standard normals with correlation `rho`.

    Plackett's identity `∂Φ₂/∂ρ = φ₂` integrated from `ρ = 0`, with `r = sin θ`, which removes
    the endpoint singularity at `|ρ| → 1` (24-point Gauss–Legendre, error < 1e-7 for |ρ| < 0.99):
    `Φ₂(h, k; ρ) = Φ(h)Φ(k) + (1/2π) ∫₀^{arcsin ρ} exp(-(h² - 2hk sin θ + k²) / (2 cos² θ)) dθ`
    (docs/math.md, appendix A).
    """
    upper = jnp.arcsin(jnp.clip(rho, -1.0, 1.0))
    theta = upper[..., None] * _GL_NODES
    sin, cos2 = jnp.sin(theta), jnp.cos(theta) ** 2
    h_, k_ = h[..., None], k[..., None]
    integrand = jnp.exp(-(h_**2 - 2 * h_ * k_ * sin + k_**2) / (2 * jnp.maximum(cos2, 1e-30)))
    integral = upper * jnp.sum(_GL_WEIGHTS * integrand, axis=-1)
    return jsp.ndtr(h) * jsp.ndtr(k) + integral / (2 * jnp.pi)


@final
class GaussianNoise(AbstractAdditiveNoise):
    """Gaussian gradient noise `Z ~ N(0, Σ)`.

    `scale` is a scalar `s` (`Σ = s² I`), a vector of per-coordinate standard deviations
    (`Σ = diag(s²)`), or a square matrix `S` with `Σ = S Sᵀ` (any square root, e.g. Cholesky).

    SignSGD moments (Compagnoni et al. 2025, Cor. 3.3; docs/math.md §3): with `σᵢ = √Σᵢᵢ`,
    `E[sign gᵢ] = erf(∂ᵢf / (√2 σᵢ))`; `Var(sign gᵢ) = 1 - E[sign gᵢ]²`; for a matrix scale the
    off-diagonal `E[sign gᵢ sign gⱼ] = 1 - 2pᵢ - 2pⱼ + 4 Φ₂(-∂ᵢf/σᵢ, -∂ⱼf/σⱼ; ρᵢⱼ)`, with
    `pᵢ = P[gᵢ < 0]` and the bivariate normal CDF `Φ₂`.
    """

    scale: Float[Array, "..."] = eqx.field(converter=_check.array("scale"))

    def __check_init__(self):
        check_scale("scale", self.scale, allow_matrix=True)

    @property
    def dim(self) -> int | None:
        return None if self.scale.ndim == 0 else self.scale.shape[0]

    @property
    def has_finite_variance(self) -> bool:
        return True

    @property
    def label(self) -> str:
        return "GaussianNoise"

    @property
    def is_diagonal(self) -> bool:
        return self.scale.ndim < 2

    def std(self, d: int) -> Float[Array, " d"]:
        """Per-coordinate standard deviation `σᵢ = √Σᵢᵢ`."""
        if self.scale.ndim == 2:
            return jnp.sqrt(jnp.sum(self.scale**2, axis=1))
        return jnp.broadcast_to(self.scale, (d,))

    def covariance(self, d: int) -> Float[Array, "d d"]:
        """`Σ` as a dense matrix."""
        if self.scale.ndim == 2:
            return self.scale @ self.scale.T
        return jnp.diag(self.std(d) ** 2)

    def sample(self, key, shape):
        return self.from_normals(jax.random.normal(key, shape))

    def normals_shape(self, problem, x):
        return jnp.shape(x)

    def from_normals(self, xi):
        """`Z = S ξ` (matrix scale) or `s ⊙ ξ`."""
        if self.scale.ndim == 2:
            return self.scale @ xi
        return self.scale * xi

    def cov_sqrt(self, d):
        if self.scale.ndim == 2:
            return lx.MatrixLinearOperator(self.scale)
        return lx.DiagonalLinearOperator(self.std(d))

    def sign_mean(self, grad):
        return jsp.erf(grad / (jnp.sqrt(2.0) * self.std(grad.shape[0])))

    def sign_cov(self, grad):
        mean = self.sign_mean(grad)
        if self.is_diagonal:
            return jnp.diag(1.0 - mean**2)
        std = self.std(grad.shape[0])
        corr = self.covariance(grad.shape[0]) / jnp.outer(std, std)
        z = -grad / std
        p_neg = jsp.ndtr(z)
        p_both = bivariate_normal_cdf(
            z[:, None] * jnp.ones_like(corr), z[None, :] * jnp.ones_like(corr), corr
        )
        second = 1.0 - 2.0 * p_neg[:, None] - 2.0 * p_neg[None, :] + 4.0 * p_both
        cov = second - jnp.outer(mean, mean)
        return cov.at[jnp.diag_indices_from(cov)].set(1.0 - mean**2)

    def sign_cov_sqrt(self, grad):
        if self.is_diagonal:
            return lx.DiagonalLinearOperator(
                jnp.sqrt(jnp.clip(1.0 - self.sign_mean(grad) ** 2, 0.0))
            )
        return psd_sqrt(self.sign_cov(grad))

    def sign_noise_moment(self, grad):
        """`E[sign(grad + Z) Z] = 2 s φ(grad/s)` per coordinate (Stein's lemma:
        `E[h(Z) Z] = s² E h'(Z)` with `h' = 2δ(grad + ·)`; docs/math.md §11.1), diagonal `Σ`
        only."""
        if not self.is_diagonal:
            raise NotImplementedError(
                "E[sign(g) Z] per coordinate needs independent coordinates (a scalar or vector "
                "scale), not a matrix scale: use form='moments'."
            )
        std = self.std(grad.shape[0])
        z = grad / std
        return 2.0 * std * jnp.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)

    def phase3_slope(self) -> float:
        """`√(2/π)`: `E[sign g] ≈ √(2/π) ∇f/σ` near `∇f = 0`."""
        return math.sqrt(2.0 / math.pi)

    def sign_width(self, d):
        return self.std(d)

    def scaled(self, factor):
        return GaussianNoise(self.scale * factor)
