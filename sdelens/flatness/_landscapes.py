"""Test landscapes with a narrow deep minimum and a wide shallow one, where local entropy and
smoothing disagree on which minimum is better (docs/math.md §7)."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
from jaxtyping import Array, Float

from .. import _check
from ._common import Loss


def landscape(
    dim: int = 1,
    *,
    narrow: float = -1.0,
    wide: float = 1.5,
    narrow_depth: float = 1.0,
    wide_depth: float = 0.8,
    narrow_width: float = 0.05,
    wide_width: float = 0.5,
) -> tuple[Loss, Float[Array, " dim"], Float[Array, " dim"]]:
    """A loss on `ℝ^dim` with a **narrow deep** and a **wide shallow** minimum:

    `f(x) = -a exp(-|x - x_n|²/(2 w_n²)) - b exp(-|x - x_w|²/(2 w_w²))`

    (`a`, `w_n` = `narrow_depth`, `narrow_width`; `b`, `w_w` the wide ones), with isotropic
    wells centred on the first axis, `x_n = (narrow, 0, …)` and `x_w = (wide, 0, …)`. Returns
    `(loss, narrow minimum, wide minimum)` as arrays of shape `(dim,)`.

    Defaults: curvatures `a/w_n² = 400` and `b/w_w² = 3.2` along every axis, depth gap 0.2.
    With `γ = 1` the local-entropy loss prefers the narrow minimum at low temperature and the
    wide one above the `T` where the log-det penalty difference
    `(T/2) · dim · log((1 + 400)/(1 + 3.2))` reaches the depth gap: `T ≈ 0.09` in 1-D, and in
    2-D, where both curvatures count twice, `T ≈ 0.044`. Smoothing at the same width `√(T/γ)`
    (a trace penalty) already prefers the wide one at `T = 0.002` (docs/math.md §7).
    """
    dim = _check.positive_int("dim", dim)
    for name, value in (
        ("narrow_depth", narrow_depth),
        ("wide_depth", wide_depth),
        ("narrow_width", narrow_width),
        ("wide_width", wide_width),
    ):
        _check.positive_finite(name, value)
    narrow_at = jnp.zeros(dim).at[0].set(narrow)
    wide_at = jnp.zeros(dim).at[0].set(wide)

    def loss(x):
        deep = narrow_depth * jnp.exp(-0.5 * jnp.sum((x - narrow_at) ** 2) / narrow_width**2)
        shallow = wide_depth * jnp.exp(-0.5 * jnp.sum((x - wide_at) ** 2) / wide_width**2)
        return -(deep + shallow)

    return loss, narrow_at, wide_at


def landscape_1d(**parameters) -> tuple[Loss, Float[Array, " 1"], Float[Array, " 1"]]:
    """Deprecated: `landscape(dim=1, ...)`, which takes the same keyword arguments."""
    warnings.warn(
        "landscape_1d is deprecated: use landscape(dim=1, ...).", DeprecationWarning, stacklevel=2
    )
    return landscape(1, **parameters)


def landscape_2d(**parameters) -> tuple[Loss, Float[Array, " 2"], Float[Array, " 2"]]:
    """Deprecated: `landscape(dim=2, ...)`, which takes the same keyword arguments."""
    warnings.warn(
        "landscape_2d is deprecated: use landscape(dim=2, ...).", DeprecationWarning, stacklevel=2
    )
    return landscape(2, **parameters)


def two_minima(dim: int = 1) -> tuple[Loss, Float[Array, " dim"], Float[Array, " dim"]]:
    """`landscape(dim)` with default parameters: `(loss, narrow minimum, wide minimum)`."""
    return landscape(dim)
