"""Helpers shared by the flatness modules: the loss type, input vectors, integer checks and the
quadrature grid of the `d ≤ 2` integrals."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
from jaxtyping import Array, Float

from .. import _check

Loss = Callable[[Float[Array, " d"]], Float[Array, ""]]


def as_vector(x) -> Float[Array, " d"]:
    """`x` as a floating-point flat vector of shape `(d,)`, `d ≥ 1` (`ValueError` otherwise)."""
    x = jnp.asarray(x)
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"x has shape {x.shape}: a flat vector of shape (d,), d >= 1, is needed.")
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(float)


def at_least(name: str, value, low: int) -> int:
    """A Python integer `>= low` (`ValueError` naming `name` otherwise)."""
    value = _check.positive_int(name, value)
    if value < low:
        raise ValueError(f"{name}={value!r} is invalid: must be an integer >= {low}.")
    return value


def low_dimension(x, what: str) -> None:
    """`ValueError` unless `d ≤ 2`: `what` integrates on a grid of `n^d` points."""
    if x.shape[0] > 2:
        raise ValueError(f"x has d={x.shape[0]}: {what} integrates on a grid, d <= 2 only.")


def grid_points(x, half_width, n):
    """An `n`-per-axis grid on the cube `x ± half_width` (`d ≤ 2`) and its log cell volume."""
    offsets = jnp.linspace(-half_width, half_width, n, dtype=x.dtype)
    axes = x[:, None] + offsets
    points = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, x.shape[0])
    return points, x.shape[0] * jnp.log(offsets[1] - offsets[0])
