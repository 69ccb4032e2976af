"""The Gaussian-smoothed loss and its gradient, by Monte Carlo and by quadrature (`d ≤ 2`)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _check
from ._common import Loss, as_vector, at_least, grid_points, low_dimension


@eqx.filter_jit
def _antithetic_means(fn, x, width, key, n_pairs):
    """`½(fn(x + s z) + fn(x - s z))` for `n_pairs` draws `z ~ N(0, I)`: the pair mean cancels
    every odd term of the expansion of `fn` around `x`."""
    z = jax.random.normal(key, (n_pairs, x.shape[0]), x.dtype)
    batched = jax.vmap(fn)
    return 0.5 * (batched(x + width * z) + batched(x - width * z))


def smoothed_loss(
    loss: Loss, x: Float[Array, " d"], width: float, key: PRNGKeyArray, n_samples: int = 1000
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """The Gaussian-smoothed loss `(G_s * f)(x) = E f(x + z)`, `z ~ N(0, s² I)`, `s` = `width`,
    by Monte Carlo with antithetic pairs `±z` (`n_samples ≥ 4` evaluations, rounded down to
    even). Returns `(estimate, standard error)`.

    At equal width `s² = T/γ`, near a minimum with Hessian eigenvalues `lᵢ`, this is
    `f* + (T/(2γ)) Σ lᵢ` (exactly `f(x) + (s²/2) tr H` on a quadratic): a trace penalty on
    sharpness, against the log-det penalty `(T/2) Σ log(1 + lᵢ/γ)` of the local entropy, which
    it approaches as `T` grows (docs/math.md §7).
    """
    x = as_vector(x)
    _check.positive_finite("width", width)
    n_pairs = at_least("n_samples", n_samples, 4) // 2
    pairs = _antithetic_means(loss, x, jnp.asarray(width, x.dtype), key, n_pairs)
    return jnp.mean(pairs), jnp.std(pairs, ddof=1) / math.sqrt(pairs.shape[0])


def smoothed_grad(
    loss: Loss, x: Float[Array, " d"], width: float, key: PRNGKeyArray, n_samples: int = 1000
) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
    """The gradient of the smoothed loss, `∇(G_s * f)(x) = E ∇f(x + z)`, `z ~ N(0, s² I)`, by
    Monte Carlo with antithetic pairs (exact for a quadratic `f`, whose gradient is linear).
    Returns `(estimate, standard error)`, per coordinate."""
    x = as_vector(x)
    _check.positive_finite("width", width)
    n_pairs = at_least("n_samples", n_samples, 4) // 2
    pairs = _antithetic_means(jax.grad(loss), x, jnp.asarray(width, x.dtype), key, n_pairs)
    return jnp.mean(pairs, axis=0), jnp.std(pairs, axis=0, ddof=1) / math.sqrt(pairs.shape[0])


def smoothed_loss_integral(
    loss: Loss, x: Float[Array, " d"], width: float, n: int = 801
) -> Float[Array, ""]:
    """`(G_s * f)(x) = E f(x + z)`, `z ~ N(0, s² I)`, by quadrature on `n` points per axis over
    `x ± 8s`, for `d = 1` or `2` (`ValueError` otherwise). The kernel weights are normalised on
    the grid, so truncation and cell volume cancel."""
    x = as_vector(x)
    _check.positive_finite("width", width)
    low_dimension(x, "smoothed_loss_integral")
    return _smoothing_quadrature(loss, x, jnp.asarray(width, x.dtype), at_least("n", n, 3))


@eqx.filter_jit
def _smoothing_quadrature(loss, x, width, n):
    points, _ = grid_points(x, 8.0 * width, n)
    log_kernel = -0.5 * jnp.sum((points - x) ** 2, axis=-1) / width**2
    weights = jax.nn.softmax(log_kernel)
    return jnp.sum(weights * jax.vmap(loss)(points))
