"""Heavy-tailed Student-t gradient noise."""

from __future__ import annotations

import math
from typing import final

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import lineax as lx
from jaxtyping import Array, Float

from .. import _check
from ._base import AbstractAdditiveNoise, check_scale

__all__ = ["StudentTNoise"]


@final
class StudentTNoise(AbstractAdditiveNoise):
    """Heavy-tailed noise `Zᵢ = sᵢ tᵢ` with independent Student-t coordinates `tᵢ ~ t_ν`.

    Any `df = ν > 0` is allowed. For `ν <= 2` the variance is infinite: the SGD SDE does not
    exist, but SignSGD's does (Compagnoni et al. 2025, §3; docs/math.md §3): with `F_ν` the t
    CDF, `E[sign gᵢ] = 2 F_ν(∂ᵢf / sᵢ) - 1 = sign(z)(1 - I_{ν/(ν+z²)}(ν/2, 1/2))`,
    `z = ∂ᵢf/sᵢ` (regularised incomplete beta `I`, since `jax.scipy.stats.t` has no CDF).
    For `ν > 2`, `Var Zᵢ = sᵢ² ν/(ν-2)`.
    """

    df: Float[Array, ""] = eqx.field(converter=_check.array("df"))
    scale: Float[Array, "..."] = eqx.field(converter=_check.array("scale"))

    def __check_init__(self):
        _check.positive_finite("df", self.df, scalar=True)
        check_scale("scale", self.scale, allow_matrix=False)

    @property
    def dim(self) -> int | None:
        return None if self.scale.ndim == 0 else self.scale.shape[0]

    @property
    def has_finite_variance(self) -> bool:
        return bool(self.df > 2)

    @property
    def label(self) -> str:
        return f"StudentTNoise(df={float(self.df):g})"

    @property
    def is_diagonal(self) -> bool:
        return True

    def std(self, d: int) -> Float[Array, " d"]:
        """Per-coordinate standard deviation `sᵢ √(ν/(ν-2))` (ν > 2 only)."""
        if _check.is_concrete(self.df) and not self.has_finite_variance:
            raise ValueError(
                f"StudentTNoise(df={float(self.df)}) has infinite variance (df <= 2): "
                "its covariance does not exist. Use a moment that exists (e.g. the SignSGD SDE)."
            )
        return jnp.broadcast_to(self.scale * jnp.sqrt(self.df / (self.df - 2.0)), (d,))

    def sample(self, key, shape):
        return self.scale * jax.random.t(key, self.df, shape)

    def cov_sqrt(self, d):
        return lx.DiagonalLinearOperator(self.std(d))

    def sign_mean(self, grad):
        z = grad / self.scale
        tail = jsp.betainc(self.df / 2.0, 0.5, self.df / (self.df + z**2))
        return jnp.sign(z) * (1.0 - tail)

    def sign_cov(self, grad):
        return jnp.diag(1.0 - self.sign_mean(grad) ** 2)

    def sign_cov_sqrt(self, grad):
        return lx.DiagonalLinearOperator(jnp.sqrt(jnp.clip(1.0 - self.sign_mean(grad) ** 2, 0.0)))

    def sign_noise_moment(self, grad):
        """`E[sign(grad + Z) Z] = 2 s E[t 1{t > -z}] = 2 s (ν + z²)/(ν - 1) f_ν(z)`, `z = grad/s`,
        `f_ν` the t density (from `∫_c^∞ t f_ν = (ν + c²) f_ν(c)/(ν - 1)`; docs/math.md §11.1).
        Finite for `ν > 1`; `+∞` for `ν <= 1`, where `E|Z| = ∞`."""
        nu = self.df
        z = grad / self.scale
        log_norm = jsp.gammaln((nu + 1) / 2) - jsp.gammaln(nu / 2) - 0.5 * jnp.log(nu * jnp.pi)
        # (ν + z²) f_ν(z) = ν K (1 + z²/ν)^{-(ν-1)/2}
        tail = nu / (nu - 1.0) * jnp.exp(log_norm - 0.5 * (nu - 1.0) * jnp.log1p(z**2 / nu))
        return jnp.where(nu > 1.0, 2.0 * self.scale * tail, jnp.inf)

    def phase3_slope(self) -> float:
        """`c_ν = 2Γ((ν+1)/2) / (√(πν) Γ(ν/2))`: `E[sign g] ≈ c_ν ∇f/s` near `∇f = 0`."""
        nu = float(self.df)
        return (
            2.0
            * math.exp(math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2))
            / math.sqrt(math.pi * nu)
        )

    def sign_width(self, d):
        return jnp.broadcast_to(self.scale, (d,))

    def scaled(self, factor):
        return StudentTNoise(df=self.df, scale=self.scale * factor)
