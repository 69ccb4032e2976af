"""Optimizer hyperparameters: one object drives both the discrete optimizer and its SDE."""

from __future__ import annotations

import abc

import equinox as eqx
import optax

from . import _check

__all__ = ["AbstractOptimizer", "SGD", "SignSGD"]


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
        """Short lower-case name, as used on the command line."""
        return type(self).__name__.lower()

    def hyperparameters(self) -> dict[str, float]:
        """The fields as plain floats, for manifests."""
        return {k: float(v) for k, v in vars(self).items()}


class SGD(AbstractOptimizer):
    """Plain SGD, `x ← x - η g(x)` (`optax.sgd`).

    SDE (Li, Tai & E 2019): `dX = -∇f(X) dt + √η Σ^{1/2} dW`.
    """

    lr: float = eqx.field(converter=float)

    def __check_init__(self):
        _check.positive_finite("lr", self.lr)

    def to_optax(self) -> optax.GradientTransformation:
        return optax.sgd(self.lr)


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
