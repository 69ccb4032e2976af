"""Gradient-noise models.

A stochastic gradient is `g(x) = ∇f(x) + Z` with `Z` drawn from a noise model. A noise model does
two jobs: it samples `Z` (for the discrete optimizer) and it provides the expectations the SDEs need
(for SGD the covariance square root `Σ^{1/2}`, for SignSGD `E[sign g]` and `Cov(sign g)`).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import lineax as lx
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from . import _check

__all__ = [
    "AbstractNoise",
    "GaussianNoise",
    "StudentTNoise",
    "SampledNoise",
    "monte_carlo_sign_moments",
    "sign_phase",
]


class AbstractNoise(eqx.Module):
    """Additive gradient noise `Z` with `E Z = 0`, independent of the iterate.

    Concrete noise models implement sampling and the moments of `sign(∇f + Z)`; the covariance
    square root exists only for finite-variance noise.
    """

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, " d"]:
        """One draw of `Z` with the given shape."""

    @abc.abstractmethod
    def sign_mean(self, grad: Float[Array, " d"]) -> Float[Array, " d"]:
        """`E[sign(grad + Z)]`, componentwise (= `1 - 2 P[g < 0]`)."""

    @abc.abstractmethod
    def sign_cov(self, grad: Float[Array, " d"]) -> Float[Array, "d d"]:
        """`Cov(sign(grad + Z)) = E[s sᵀ] - E s E sᵀ` as a dense matrix."""

    @abc.abstractmethod
    def sign_cov_sqrt(self, grad: Float[Array, " d"]) -> lx.AbstractLinearOperator:
        """A square root of `Cov(sign(grad + Z))`: the SignSGD SDE's `Σ̄^{1/2}`."""

    @abc.abstractmethod
    def cov_sqrt(self, d: int) -> lx.AbstractLinearOperator:
        """`Σ^{1/2}`, the covariance square root of `Z` (raises for infinite variance)."""

    @property
    @abc.abstractmethod
    def has_finite_variance(self) -> bool:
        """Whether `Cov Z` exists (the SGD SDE needs it)."""

    @property
    @abc.abstractmethod
    def dim(self) -> int | None:
        """The dimension the noise is tied to, or None when it broadcasts to any `d`."""


def _scale_kind(name: str, scale, *, allow_matrix: bool) -> None:
    arr = np.asarray(scale) if _check.is_concrete(scale) else None
    ndim = jnp.ndim(scale)
    if ndim > (2 if allow_matrix else 1):
        allowed = "a scalar, a vector or a square matrix" if allow_matrix else "a scalar or vector"
        raise ValueError(f"{name} has shape {jnp.shape(scale)}: it must be {allowed}.")
    if arr is None:
        return
    if ndim == 2:
        if arr.shape[0] != arr.shape[1]:
            raise ValueError(f"{name} has shape {arr.shape}: a matrix scale must be square (d, d).")
        _check.spd_matrix(f"{name} @ {name}.T (the noise covariance)", arr @ arr.T)
    else:
        _check.positive_finite(name, arr)


def _psd_sqrt(mat: Float[Array, "d d"]) -> lx.AbstractLinearOperator:
    """Symmetric PSD square root by eigendecomposition (eigenvalues clipped at 0)."""
    eigval, eigvec = jnp.linalg.eigh(mat)
    root = (eigvec * jnp.sqrt(jnp.clip(eigval, 0.0))) @ eigvec.T
    return lx.MatrixLinearOperator(root, lx.symmetric_tag)


# Gauss-Legendre nodes on [0, 1] for the bivariate normal CDF integral below.
_GL_NODES, _GL_WEIGHTS = (np.asarray(a) for a in np.polynomial.legendre.leggauss(24))
_GL_NODES = 0.5 * (_GL_NODES + 1.0)
_GL_WEIGHTS = 0.5 * _GL_WEIGHTS


def _bivariate_normal_cdf(h, k, rho):
    """`P[U < h, V < k]` for standard normals with correlation `rho`.

    Plackett's identity `∂Φ₂/∂ρ = φ₂` integrated from `ρ = 0`, with `r = sin θ`, which removes
    the endpoint singularity at `|ρ| → 1` (24-point Gauss–Legendre, error < 1e-7 for |ρ| < 0.99):
    `Φ₂(h, k; ρ) = Φ(h)Φ(k) + (1/2π) ∫₀^{arcsin ρ} exp(-(h² - 2hk sin θ + k²) / (2 cos² θ)) dθ`.
    """
    upper = jnp.arcsin(jnp.clip(rho, -1.0, 1.0))
    theta = upper[..., None] * _GL_NODES
    sin, cos2 = jnp.sin(theta), jnp.cos(theta) ** 2
    h_, k_ = h[..., None], k[..., None]
    integrand = jnp.exp(-(h_**2 - 2 * h_ * k_ * sin + k_**2) / (2 * jnp.maximum(cos2, 1e-30)))
    integral = upper * jnp.sum(_GL_WEIGHTS * integrand, axis=-1)
    return jsp.ndtr(h) * jsp.ndtr(k) + integral / (2 * jnp.pi)


class GaussianNoise(AbstractNoise):
    """Gaussian gradient noise `Z ~ N(0, Σ)`.

    `scale` is a scalar `s` (`Σ = s² I`), a vector of per-coordinate standard deviations
    (`Σ = diag(s²)`), or a square matrix `S` with `Σ = S Sᵀ` (any square root, e.g. Cholesky).

    SignSGD moments (Compagnoni et al. 2025, Cor. 3.3): with `σᵢ = √Σᵢᵢ`,
    `E[sign gᵢ] = erf(∂ᵢf / (√2 σᵢ))`; `Var(sign gᵢ) = 1 - E[sign gᵢ]²`; for a matrix scale the
    off-diagonal `E[sign gᵢ sign gⱼ] = 1 - 2pᵢ - 2pⱼ + 4 Φ₂(-∂ᵢf/σᵢ, -∂ⱼf/σⱼ; ρᵢⱼ)`, with
    `pᵢ = P[gᵢ < 0]` and the bivariate normal CDF `Φ₂`.
    """

    scale: Float[Array, "..."] = eqx.field(converter=jnp.asarray)

    def __check_init__(self):
        _scale_kind("scale", self.scale, allow_matrix=True)

    @property
    def dim(self) -> int | None:
        return None if self.scale.ndim == 0 else self.scale.shape[0]

    @property
    def has_finite_variance(self) -> bool:
        return True

    @property
    def is_diagonal(self) -> bool:
        """Whether the coordinates of `Z` are independent (scalar or vector scale)."""
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
        xi = jax.random.normal(key, shape)
        if self.scale.ndim == 2:
            return self.scale @ xi
        return self.scale * xi

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
        p_both = _bivariate_normal_cdf(
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
        return _psd_sqrt(self.sign_cov(grad))

    def cov_sqrt(self, d):
        if self.scale.ndim == 2:
            return lx.MatrixLinearOperator(self.scale)
        return lx.DiagonalLinearOperator(self.std(d))

    def phase3_slope(self) -> float:
        """`c` in `E[sign g] ≈ c ∇f/σ` near `∇f = 0`: `√(2/π)` for Gaussian noise."""
        return math.sqrt(2.0 / math.pi)


class StudentTNoise(AbstractNoise):
    """Heavy-tailed noise `Zᵢ = sᵢ tᵢ` with independent Student-t coordinates `tᵢ ~ t_ν`.

    Any `df = ν > 0` is allowed. For `ν <= 2` the variance is infinite: the SGD SDE does not
    exist, but SignSGD's does (Compagnoni et al. 2025, §3): with `F_ν` the t CDF,
    `E[sign gᵢ] = 2 F_ν(∂ᵢf / sᵢ) - 1 = sign(z)(1 - I_{ν/(ν+z²)}(ν/2, 1/2))`, `z = ∂ᵢf/sᵢ`
    (regularised incomplete beta `I`, since `jax.scipy.stats.t` has no CDF).
    For `ν > 2`, `Var Zᵢ = sᵢ² ν/(ν-2)`.
    """

    df: Float[Array, ""] = eqx.field(converter=jnp.asarray)
    scale: Float[Array, "..."] = eqx.field(converter=jnp.asarray)

    def __check_init__(self):
        _check.positive_finite("df", self.df)
        if jnp.ndim(self.df) != 0:
            raise ValueError(f"df has shape {jnp.shape(self.df)}: a scalar > 0 is required.")
        _scale_kind("scale", self.scale, allow_matrix=False)

    @property
    def dim(self) -> int | None:
        return None if self.scale.ndim == 0 else self.scale.shape[0]

    @property
    def has_finite_variance(self) -> bool:
        return bool(self.df > 2)

    def std(self, d: int) -> Float[Array, " d"]:
        """Per-coordinate standard deviation `sᵢ √(ν/(ν-2))` (ν > 2 only)."""
        self._require_finite_variance()
        return jnp.broadcast_to(self.scale * jnp.sqrt(self.df / (self.df - 2.0)), (d,))

    def _require_finite_variance(self):
        if _check.is_concrete(self.df) and not self.has_finite_variance:
            raise ValueError(
                f"StudentTNoise(df={float(self.df)}) has infinite variance (df <= 2): "
                "its covariance does not exist. Use a moment that exists (e.g. the SignSGD SDE)."
            )

    def sample(self, key, shape):
        return self.scale * jax.random.t(key, self.df, shape)

    def sign_mean(self, grad):
        z = grad / self.scale
        tail = jsp.betainc(self.df / 2.0, 0.5, self.df / (self.df + z**2))
        return jnp.sign(z) * (1.0 - tail)

    def sign_cov(self, grad):
        return jnp.diag(1.0 - self.sign_mean(grad) ** 2)

    def sign_cov_sqrt(self, grad):
        return lx.DiagonalLinearOperator(jnp.sqrt(jnp.clip(1.0 - self.sign_mean(grad) ** 2, 0.0)))

    def cov_sqrt(self, d):
        return lx.DiagonalLinearOperator(self.std(d))

    def phase3_slope(self) -> float:
        """`c_ν = 2Γ((ν+1)/2) / (√(πν) Γ(ν/2))`: `E[sign g] ≈ c_ν ∇f/s` near `∇f = 0`."""
        nu = float(self.df)
        return (
            2.0
            * math.exp(math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2))
            / math.sqrt(math.pi * nu)
        )


def monte_carlo_sign_moments(
    noise: AbstractNoise, grad: Float[Array, " d"], key: PRNGKeyArray, n_samples: int
) -> tuple[Float[Array, " d"], Float[Array, "d d"]]:
    """Monte Carlo estimates of `E[sign g]` and `Cov(sign g)` from the noise sampler.

    The fallback for noise without closed forms, and the check of the closed forms in tests.
    """
    n_samples = _check.positive_int("n_samples", n_samples)
    keys = jax.random.split(key, n_samples)
    signs = jnp.sign(grad + jax.vmap(lambda k: noise.sample(k, grad.shape))(keys))
    mean = jnp.mean(signs, axis=0)
    centred = signs - mean
    return mean, centred.T @ centred / n_samples


class SampledNoise(AbstractNoise):
    """Noise given only by a sampler `sampler(key, shape) -> Z`; every moment by Monte Carlo.

    `E[sign g]` and `Cov(sign g)` are estimated from `n_samples` draws with a fixed key
    (common random numbers), so the SDE's drift is a deterministic function of the state; its
    Monte Carlo error is `O(n_samples^{-1/2})`. `covariance_sqrt` (a `(d, d)` matrix) must be
    given for the SGD SDE, since a sample covariance is unreliable for heavy tails.
    """

    sampler: Callable = eqx.field(static=True)
    n_samples: int = eqx.field(static=True, default=4096)
    seed: int = eqx.field(static=True, default=0)
    covariance_sqrt: Float[Array, "d d"] | None = None

    def __check_init__(self):
        _check.positive_int("n_samples", self.n_samples)
        if not callable(self.sampler):
            raise ValueError(
                f"sampler={self.sampler!r} is invalid: a callable (key, shape) -> Z is required."
            )
        if self.covariance_sqrt is not None:
            _scale_kind("covariance_sqrt", self.covariance_sqrt, allow_matrix=True)

    @property
    def dim(self) -> int | None:
        return None if self.covariance_sqrt is None else self.covariance_sqrt.shape[0]

    @property
    def has_finite_variance(self) -> bool:
        return self.covariance_sqrt is not None

    def sample(self, key, shape):
        return self.sampler(key, shape)

    def _moments(self, grad):
        return monte_carlo_sign_moments(self, grad, jax.random.key(self.seed), self.n_samples)

    def sign_mean(self, grad):
        return self._moments(grad)[0]

    def sign_cov(self, grad):
        return self._moments(grad)[1]

    def sign_cov_sqrt(self, grad):
        return _psd_sqrt(self.sign_cov(grad))

    def cov_sqrt(self, d):
        if self.covariance_sqrt is None:
            raise ValueError(
                "SampledNoise(covariance_sqrt=None) has no known covariance: pass "
                "covariance_sqrt (a (d, d) matrix S with Cov Z = S Sᵀ) to use it with SGD."
            )
        return lx.MatrixLinearOperator(jnp.asarray(self.covariance_sqrt))


def sign_phase(
    noise: AbstractNoise, grad: Float[Array, " d"], *, low: float = 1.0, high: float = 1.5
) -> Float[Array, " d"]:
    """SignSGD phase (1, 2 or 3) per coordinate (Compagnoni et al. 2025, Lemma 3.4).

    With the signal-to-noise ratio `Y = ∂ᵢf / (√2 σᵢ)` (Student-t: `σᵢ = sᵢ`):
    phase 1 `|Y| > high` (SignGD ODE, `dX ≈ -sign ∇f dt`), phase 3 `|Y| < low` (linear,
    `dX ≈ -√(2/π) Σ^{-1/2} ∇f dt + √η dW`), phase 2 in between. Defaults follow the Lemma.
    """
    if not 0 < low <= high:
        raise ValueError(f"low={low}, high={high} are invalid: 0 < low <= high is required.")
    if isinstance(noise, GaussianNoise):
        width = noise.std(grad.shape[0])
    elif isinstance(noise, StudentTNoise):
        width = jnp.broadcast_to(noise.scale, grad.shape)
    else:
        raise ValueError(
            f"noise={type(noise).__name__} is invalid: phases are defined for "
            "GaussianNoise and StudentTNoise."
        )
    y = jnp.abs(grad) / (jnp.sqrt(2.0) * width)
    return jnp.where(y > high, 1, jnp.where(y < low, 3, 2))
