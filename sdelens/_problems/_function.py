"""Any JAX loss with additive gradient noise."""

from __future__ import annotations

from collections.abc import Callable
from typing import final

import equinox as eqx
import jax
from jaxtyping import Array, Float

from .. import _check
from .._noise import AbstractNoise
from ._base import AbstractProblem

__all__ = ["Problem"]


@final
class Problem(AbstractProblem):
    """Any JAX scalar loss `loss(x)` of a vector `x`, with a noise model.

    `dim` may be given to fix `d`; otherwise it comes from the noise (vector scale) or `x0`.
    """

    loss_fn: Callable[[Float[Array, " d"]], Float[Array, ""]] = eqx.field(static=True)
    noise: AbstractNoise
    fixed_dim: int | None = eqx.field(static=True, default=None)

    def __init__(self, loss: Callable, noise: AbstractNoise, dim: int | None = None):
        if not callable(loss):
            raise ValueError(f"loss={loss!r} is invalid: a callable x -> scalar is required.")
        if dim is not None:
            dim = _check.positive_int("dim", dim)
            if isinstance(noise, AbstractNoise) and noise.dim is not None and noise.dim != dim:
                raise ValueError(f"noise has dimension {noise.dim} but dim={dim}.")
        self.loss_fn = loss
        self.noise = noise
        self.fixed_dim = dim

    @property
    def name(self) -> str:
        return "problem"

    @property
    def dim(self) -> int | None:
        return self.fixed_dim if self.fixed_dim is not None else self.noise.dim

    @property
    def n_examples(self) -> None:
        return None

    def loss(self, x):
        return self.loss_fn(x)

    def grad(self, x):
        return jax.grad(self.loss_fn)(x)

    def with_noise(self, noise):
        return Problem(self.loss_fn, noise, self.fixed_dim)
