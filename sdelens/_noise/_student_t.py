"""Heavy-tailed Student-t gradient noise."""

from __future__ import annotations

import math
from typing import ClassVar, final

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import lineax as lx
import numpy as np
from jaxtyping import Array, Float

from .. import _check
from ._base import AbstractAdditiveNoise, check_scale

__all__ = ["StudentTNoise", "student_t_quantile"]

# Newton steps after the start below: 3 reach float32's rounding (relative error <= 1e-5 for
# df >= 0.5), the 4th brings float64 to ~1e-10 (tested against scipy's t.isf).
_NEWTON_STEPS = 4


def student_t_quantile(xi: Float[Array, "*n"], df) -> Float[Array, "*n"]:
    """`F_ν⁻¹(Φ(ξ))`: the Student-t quantile of a standard normal's probability, the
    comonotone map of `N(0, 1)` onto `t_ν` (docs/math.md §13), elementwise, for any `ν > 0`.

    JAX has no t quantile (nor an inverse incomplete beta), so it is solved for: by symmetry
    `t = sign(ξ) τ` with `F_ν(-τ) = p = Φ(-|ξ|)`, started from the larger of `|ξ|` and the
    Cornish–Fisher expansion (Abramowitz & Stegun 26.7.5), capped by the tail bound
    `F_ν(-τ) ≤ K ν^{(ν-1)/2} τ^{-ν}` (`K` the density's constant: `τ` can only be smaller), then
    Newton steps with the CDF from the regularised incomplete beta `I`: in `τ` on
    `F_ν(τ) - ½ = ½ I_{τ²/(ν+τ²)}(½, ν/2) = ½ - p` for `τ ≤ 1` (no cancellation near the centre),
    and in `log τ` on `log F_ν(-τ) = log(½ I_{ν/(ν+τ²)}(ν/2, ½)) = log p` beyond (the power-law
    tail is a straight line there). One incomplete beta per step. In float32, for `ν ≥ 100`,
    the expansion alone (relative error below 6e-7 for `|ξ| ≤ 6`, where float32's incomplete
    beta is off by ~1e-4).
    """
    dtype = xi.dtype
    nu = jnp.asarray(df, dtype)
    a = jnp.abs(xi)
    log_p = jsp.log_ndtr(-a)
    half_minus_p = 0.5 * jsp.erf(a / np.sqrt(2.0).astype(dtype))
    log_k = jsp.gammaln((nu + 1) / 2) - jsp.gammaln(nu / 2) - 0.5 * jnp.log(nu * jnp.pi)
    terms = (
        (a**3 + a) / 4,
        (5 * a**5 + 16 * a**3 + 3 * a) / 96,
        (3 * a**7 + 19 * a**5 + 17 * a**3 - 15 * a) / 384,
        (79 * a**9 + 776 * a**7 + 1482 * a**5 - 1920 * a**3 - 945 * a) / 92160,
    )
    cornish_fisher = a + sum(g / nu ** (i + 1) for i, g in enumerate(terms))
    tail = jnp.exp((log_k + 0.5 * (nu - 1) * jnp.log(nu) - log_p) / nu)
    tau = jnp.minimum(jnp.maximum(cornish_fisher, a), tail)
    tiny = jnp.finfo(dtype).tiny
    for _ in range(_NEWTON_STEPS):
        tau2 = tau * tau
        log_pdf = log_k - 0.5 * (nu + 1) * jnp.log1p(tau2 / nu)
        share = tau2 / (nu + tau2)
        # The form whose incomplete beta is evaluated below its continued fraction's switch
        # point `(a + 1)/(a + b + 2)`, where it converges directly (no `1 - I` cancellation):
        # the centre form for `τ² ≲ 3` (any `ν`), the tail form beyond.
        centre = share <= 1.5 / (nu / 2 + 2.5)
        beta = jsp.betainc(
            jnp.where(centre, 0.5, nu / 2),
            jnp.where(centre, nu / 2, 0.5),
            jnp.where(centre, share, nu / (nu + tau2)),
        )
        step_centre = tau + (half_minus_p - 0.5 * beta) / jnp.exp(log_pdf)
        log_f = jnp.log(0.5 * beta)
        # Newton in s = log τ: d/ds log F(-e^s) = -τ f(τ)/F(-τ)
        ratio = jnp.exp(log_f - log_pdf) / jnp.maximum(tau, tiny)
        step_tail = tau * jnp.exp((log_f - log_p) * ratio)
        tau = jnp.where(centre, jnp.clip(step_centre, 0.5 * tau, 2.0 * tau + tiny), step_tail)
    if jnp.finfo(dtype).bits <= 32:
        # For ν ≥ 100 the expansion alone is within 6e-7 of the quantile (|ξ| ≤ 6), closer than
        # the float32 incomplete beta (~1e-4 there: its parameter ν/2 is large).
        tau = jnp.where(nu >= 100, jnp.maximum(cornish_fisher, a), tau)
    return jnp.sign(xi) * tau


@final
class StudentTNoise(AbstractAdditiveNoise):
    """Heavy-tailed noise `Zᵢ = sᵢ tᵢ` with independent Student-t coordinates `tᵢ ~ t_ν`.

    Any `df = ν > 0` is allowed. For `ν <= 2` the variance is infinite: the SGD SDE does not
    exist, but SignSGD's does (Compagnoni et al. 2025, §3; docs/math.md §3): with `F_ν` the t
    CDF, `E[sign gᵢ] = 2 F_ν(∂ᵢf / sᵢ) - 1 = sign(z)(1 - I_{ν/(ν+z²)}(ν/2, 1/2))`,
    `z = ∂ᵢf/sᵢ` (regularised incomplete beta `I`, since `jax.scipy.stats.t` has no CDF).
    For `ν > 2`, `Var Zᵢ = sᵢ² ν/(ν-2)`.
    """

    keyed_unless_coupled: ClassVar[bool] = True  # the quantile map: ~Newton steps per draw

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

    def normals_shape(self, problem, x):
        return jnp.shape(x)

    def from_normals(self, xi):
        """`Z = s F_ν⁻¹(Φ(ξ))` per coordinate: the quantile (comonotone) map
        (`student_t_quantile`), so that `Z` is `t_ν`-distributed and increasing in `ξ`."""
        return self.scale * student_t_quantile(xi, self.df)

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
