"""Adaptive optimizers: RMSprop(W) and Adam(W), with `ε` outside the square root."""

import abc
from typing import ClassVar, NamedTuple, final

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from .. import _check
from .._noise import GaussianNoise
from ._base import AbstractOptimizer, require_minimum_at_zero, require_quadratic

__all__ = ["RMSprop", "Adam", "RMSpropState", "AdamState"]


class RMSpropState(NamedTuple):
    """RMSprop's state and its SDE's: parameters `x` and the average of squared gradients `v`."""

    x: Float[Array, " d"]
    v: Float[Array, " d"]


class AdamState(NamedTuple):
    """Adam's state and its SDE's: parameters `x`, first moment `m`, second moment `v`."""

    x: Float[Array, " d"]
    m: Float[Array, " d"]
    v: Float[Array, " d"]


def _check_decay(name: str, value: float) -> None:
    _check.in_interval(name, value, 0.0, 1.0)


class AbstractAdaptiveOptimizer(AbstractOptimizer):
    """A coordinate-wise preconditioned method with `ε` and decoupled weight decay `θ`
    (`x ← x - η (update + θ x)`, `optax.adamw` semantics; RMSpropW/AdamW when `θ > 0`)."""

    lr: eqx.AbstractVar[float]
    eps: eqx.AbstractVar[float]
    weight_decay: eqx.AbstractVar[float]
    scaling_rules: ClassVar[tuple[str, ...]] = ("malladi", "compagnoni")
    coordinatewise: ClassVar[bool] = True

    def __check_init__(self):
        _check.positive_finite("lr", self.lr, scalar=True)
        for name in self.decay_names:
            _check_decay(name, getattr(self, name))
        _check.positive_finite("eps", self.eps, allow_zero=True, scalar=True)
        _check.positive_finite("weight_decay", self.weight_decay, allow_zero=True, scalar=True)

    @property
    def name(self) -> str:
        base = type(self).__name__.lower()
        return base + "w" if self.weight_decay > 0 else base

    @property
    def grads_per_step(self) -> int:
        return 1

    def default_scaling_rule(self) -> str:
        """Malladi's square-root rule; with weight decay Compagnoni et al.'s (also `θ → √κ θ`)."""
        return "compagnoni" if self.weight_decay > 0 else "malladi"

    @abc.abstractmethod
    def _momentum_factor(self) -> float:
        """What momentum multiplies the stationary covariance by (1 without momentum)."""

    def stationary_cov(self, problem):
        """Diagonal `H`, diagonal Gaussian noise, `x* = 0` when `θ > 0` (docs/math.md §5).

        Near the minimum `V → s²`, `P → s + ε`, so `dX = -(H/P + θ) X dt + √η (s/P) dW`:
        `Cᵢᵢ = (η/2) sᵢ² / ((sᵢ + ε)(hᵢ + θ (sᵢ + ε)))`, i.e. `(η/2) (H Σ^{-1/2} + θ)⁻¹` as
        `ε → 0` (RMSpropW; `E f = (η/4) Σ hᵢsᵢ/(hᵢ + θ sᵢ)`, bounded by `η tr H/(4θ)` as
        `s → ∞`). AdamW multiplies by `ρ₁/(ρ₁ + θ)`, `ρ₁ = (1-β₁)/η`, from the Lyapunov equation
        of `(x, m)` (the factor that the paper's quoted form omits).
        """
        quadratic = require_quadratic(self, problem)
        noise = quadratic.noise
        if not (isinstance(noise, GaussianNoise) and noise.is_diagonal and quadratic.h.ndim == 1):
            raise NotImplementedError(
                f"Closed forms for {type(self).__name__} need diagonal h and diagonal "
                "GaussianNoise: use sl.linearised_stationary for the general case."
            )
        require_minimum_at_zero(self, quadratic)
        h = np.asarray(quadratic.h, dtype=float)
        s = np.asarray(noise.std(quadratic.dim), dtype=float)
        p = s + self.eps
        var = 0.5 * self.lr * s**2 / (p * (h + self.weight_decay * p))
        return np.diag(var * self._momentum_factor()), "closed form"


@final
class RMSprop(AbstractAdaptiveOptimizer):
    """RMSprop, and RMSpropW when `weight_decay > 0` (decoupled, `optax.adamw` semantics):

    `v ← β v + (1-β) g²`,  `x ← x - η (g / (√v + ε) + θ x)`,  `v₀ = 0`.

    `ε` sits **outside** the square root (unlike `optax.rmsprop`'s default `eps_in_sqrt=True`),
    as in the SDE of Compagnoni et al. (2025, §3.2; docs/math.md §4); `to_optax()` builds exactly
    this update.
    """

    lr: float = eqx.field(converter=_check.number("lr"))
    beta: float = eqx.field(converter=_check.number("beta"), default=0.999)
    eps: float = eqx.field(converter=_check.number("eps"), default=1e-8)
    weight_decay: float = eqx.field(converter=_check.number("weight_decay"), default=0.0)
    decay_names: ClassVar[tuple[str, ...]] = ("beta",)

    def to_optax(self) -> optax.GradientTransformation:
        return optax.chain(
            optax.scale_by_rms(decay=self.beta, eps=self.eps, eps_in_sqrt=False),
            optax.add_decayed_weights(self.weight_decay),
            optax.scale_by_learning_rate(self.lr),
        )

    def initial_state(self, x0):
        return RMSpropState(x0, jnp.zeros_like(x0))

    def state(self, x, opt_state):
        return RMSpropState(x, opt_state[0].nu)

    def _momentum_factor(self) -> float:
        return 1.0


@final
class Adam(AbstractAdaptiveOptimizer):
    """Adam with bias correction, and AdamW when `weight_decay > 0` (decoupled):

    `m ← β₁ m + (1-β₁) g`, `v ← β₂ v + (1-β₂) g²`, `m̂ = m/(1-β₁ᵏ)`, `v̂ = v/(1-β₂ᵏ)`,
    `x ← x - η (m̂ / (√v̂ + ε) + θ x)` (`optax.adamw` semantics, `ε` outside the root;
    docs/math.md §4).
    """

    lr: float = eqx.field(converter=_check.number("lr"))
    beta1: float = eqx.field(converter=_check.number("beta1"), default=0.9)
    beta2: float = eqx.field(converter=_check.number("beta2"), default=0.999)
    eps: float = eqx.field(converter=_check.number("eps"), default=1e-8)
    weight_decay: float = eqx.field(converter=_check.number("weight_decay"), default=0.0)
    decay_names: ClassVar[tuple[str, ...]] = ("beta1", "beta2")

    def to_optax(self) -> optax.GradientTransformation:
        return optax.chain(
            optax.scale_by_adam(b1=self.beta1, b2=self.beta2, eps=self.eps),
            optax.add_decayed_weights(self.weight_decay),
            optax.scale_by_learning_rate(self.lr),
        )

    def initial_state(self, x0):
        return AdamState(x0, jnp.zeros_like(x0), jnp.zeros_like(x0))

    def state(self, x, opt_state):
        return AdamState(x, opt_state[0].mu, opt_state[0].nu)

    def _momentum_factor(self) -> float:
        rho1 = (1.0 - self.beta1) / self.lr
        return rho1 / (rho1 + self.weight_decay)
