"""Optimizer hyperparameters: one object drives both the discrete optimizer and its SDE."""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float

from . import _check

__all__ = ["AbstractOptimizer", "SGD", "SignSGD", "RMSprop", "Adam"]


class AbstractOptimizer(eqx.Module):
    """Hyperparameters of a first-order optimizer with learning rate `lr` (`η`).

    `to_optax()` is the discrete optimizer; `sdelens.sde_for` builds its SDE from the same
    fields, so the two never disagree on what the hyperparameters mean. Step `k` sits at time
    `t = k η` on the common clock.
    """

    lr: eqx.AbstractVar[float]

    @abc.abstractmethod
    def to_optax(self) -> optax.GradientTransformation:
        """The discrete optimizer as an optax transformation."""

    @property
    def name(self) -> str:
        """Short lower-case name, as used on the command line (`"adamw"` when decayed)."""
        base = type(self).__name__.lower()
        return base + "w" if getattr(self, "weight_decay", 0.0) > 0 else base

    def hyperparameters(self) -> dict[str, float]:
        """The fields as plain floats, for manifests."""
        return {k: float(v) for k, v in vars(self).items()}

    @abc.abstractmethod
    def moments(self, opt_state) -> Float[Array, "k d"] | None:
        """The optimizer's moving averages (`m`, `v`, ...) stacked as rows; None if stateless.

        The row order is the SDE state's after `x`, so `Run.state` of the optimizer and of the
        SDE line up column by column.
        """


class SGD(AbstractOptimizer):
    """Plain SGD, `x ← x - η g(x)` (`optax.sgd`).

    SDE (Li, Tai & E 2019): `dX = -∇f(X) dt + √η Σ^{1/2} dW`.
    """

    lr: float = eqx.field(converter=float)

    def __check_init__(self):
        _check.positive_finite("lr", self.lr)

    def to_optax(self) -> optax.GradientTransformation:
        return optax.sgd(self.lr)

    def moments(self, opt_state) -> None:
        return None


class SignSGD(AbstractOptimizer):
    """SignSGD, `x ← x - η sign(g(x))` (`optax.sign_sgd`).

    SDE (Compagnoni et al. 2025, Thm 3.2): `dX = -E[sign g(X)] dt + √η Σ̄(X)^{1/2} dW` with
    `E[sign g] = 1 - 2 P[g < 0]` and `Σ̄ = Cov(sign g)`.
    """

    lr: float = eqx.field(converter=float)

    def __check_init__(self):
        _check.positive_finite("lr", self.lr)

    def to_optax(self) -> optax.GradientTransformation:
        return optax.sign_sgd(self.lr)

    def moments(self, opt_state) -> None:
        return None


def _check_decay(name: str, value: float) -> None:
    _check.in_interval(name, value, 0.0, 1.0)


class RMSprop(AbstractOptimizer):
    """RMSprop, and RMSpropW when `weight_decay > 0` (decoupled, `optax.adamw` semantics):

    `v ← β v + (1-β) g²`,  `x ← x - η (g / (√v + ε) + θ x)`,  `v₀ = 0`.

    `ε` sits **outside** the square root (unlike `optax.rmsprop`'s default `eps_in_sqrt=True`),
    as in the SDE of Compagnoni et al. (2025, §3.2); `to_optax()` builds exactly this update.
    """

    lr: float = eqx.field(converter=float)
    beta: float = eqx.field(converter=float, default=0.999)
    eps: float = eqx.field(converter=float, default=1e-8)
    weight_decay: float = eqx.field(converter=float, default=0.0)

    def __check_init__(self):
        _check.positive_finite("lr", self.lr)
        _check_decay("beta", self.beta)
        _check.positive_finite("eps", self.eps, allow_zero=True)
        _check.positive_finite("weight_decay", self.weight_decay, allow_zero=True)

    def to_optax(self) -> optax.GradientTransformation:
        return optax.chain(
            optax.scale_by_rms(decay=self.beta, eps=self.eps, eps_in_sqrt=False),
            optax.add_decayed_weights(self.weight_decay),
            optax.scale_by_learning_rate(self.lr),
        )

    def moments(self, opt_state):
        return opt_state[0].nu[None]


class Adam(AbstractOptimizer):
    """Adam with bias correction, and AdamW when `weight_decay > 0` (decoupled):

    `m ← β₁ m + (1-β₁) g`, `v ← β₂ v + (1-β₂) g²`, `m̂ = m/(1-β₁ᵏ)`, `v̂ = v/(1-β₂ᵏ)`,
    `x ← x - η (m̂ / (√v̂ + ε) + θ x)` (`optax.adamw` semantics, `ε` outside the root).
    """

    lr: float = eqx.field(converter=float)
    beta1: float = eqx.field(converter=float, default=0.9)
    beta2: float = eqx.field(converter=float, default=0.999)
    eps: float = eqx.field(converter=float, default=1e-8)
    weight_decay: float = eqx.field(converter=float, default=0.0)

    def __check_init__(self):
        _check.positive_finite("lr", self.lr)
        _check_decay("beta1", self.beta1)
        _check_decay("beta2", self.beta2)
        _check.positive_finite("eps", self.eps, allow_zero=True)
        _check.positive_finite("weight_decay", self.weight_decay, allow_zero=True)

    def to_optax(self) -> optax.GradientTransformation:
        return optax.chain(
            optax.scale_by_adam(b1=self.beta1, b2=self.beta2, eps=self.eps),
            optax.add_decayed_weights(self.weight_decay),
            optax.scale_by_learning_rate(self.lr),
        )

    def moments(self, opt_state):
        return jnp.stack([opt_state[0].mu, opt_state[0].nu])
