"""What the jitted cores keep of an ensemble at each save: every path, or per-save statistics
folded into the scan over saves.

Both cores (`_kernels.solve_paths`, `_kernels.optimize_paths`) advance all paths of a chunk from
one save to the next in an outer `lax.scan` (`scan_saves`) and hand the states at each save to a
reducer: `KeepPaths` stacks them, `KeepStats` reduces them over the paths at once, so that a
statistics-only run never holds more than one save of its paths (memory per chunk independent
of the number of saves; no second pass over stored paths).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["KeepPaths", "KeepStats", "scan_saves", "block_edges", "MAX_BLOCKS"]

MAX_BLOCKS = 16


def block_edges(n_saves: int) -> np.ndarray:
    """`B + 1` save indices cutting `n_saves` saves into `B = min(16, n_saves)` blocks."""
    return np.linspace(0, n_saves, min(MAX_BLOCKS, n_saves) + 1).round().astype(int)


def _block_average(n_saves: int) -> np.ndarray:
    """`(S, B)` matrix whose column `j` averages the saves of block `j`."""
    edges = block_edges(n_saves)
    out = np.zeros((n_saves, len(edges) - 1))
    for j, (a, b) in enumerate(zip(edges, edges[1:], strict=False)):
        out[a:b, j] = 1.0 / (b - a)
    return out


@dataclasses.dataclass(frozen=True)
class KeepPaths:
    """Keep every path: the states and loss at each save, laid out `(paths, saves, ...)`."""

    def init(self, valid, n_saves: int, dtype):
        return None

    def save(self, carry, s, states, loss):
        return carry, (states, loss)

    def finish(self, carry, saved):
        return jax.tree.map(lambda a: jnp.moveaxis(a, 0, 1), saved)


@dataclasses.dataclass(frozen=True)
class KeepStats:
    """Per-save statistics over the valid, finite paths (docs/math.md §A.7), computed at each
    save inside the scan: `(count, loss_mean, loss_m2, x_mean, x_m2, hist_counts, blocks)`
    with leaves `(S, ...)`; `blocks = (block_count, block_mean (B,), block_m2 (B, B))` summarise
    each path's mean loss over `B ≤ 16` blocks of saves across the paths finite at every save
    (accumulated per path in the scan's carry). `hist_coords`, `hist_edges`: coordinates to
    histogram at every save, and the bin edges (None: no histogram)."""

    hist_coords: tuple[int, ...] | None = None
    hist_edges: tuple[float, ...] | None = None

    def init(self, valid, n_saves: int, dtype):
        average = jnp.asarray(_block_average(n_saves), dtype=dtype)
        return valid, jnp.zeros((valid.shape[0], average.shape[1]), dtype), valid, average

    def save(self, carry, s, states, loss):
        valid, sums, whole, average = carry
        xs = states.x
        finite = valid & jnp.all(jnp.isfinite(xs), axis=-1) & jnp.isfinite(loss)
        weight = finite.astype(xs.dtype)
        count = weight.sum()
        denom = jnp.maximum(count, 1.0)
        loss0 = jnp.where(finite, loss, 0.0)
        loss_mean = loss0.sum() / denom
        loss_m2 = (weight * (loss0 - loss_mean) ** 2).sum()
        x0 = jnp.where(finite[:, None], xs, 0.0)
        x_mean = x0.sum(axis=0) / denom
        x_m2 = (weight[:, None] * (x0 - x_mean) ** 2).sum(axis=0)
        counts = None
        if self.hist_coords is not None:
            edges = jnp.asarray(self.hist_edges, dtype=xs.dtype)
            picked = x0[:, jnp.asarray(self.hist_coords)]  # (n, k)

            def one(values):
                return jnp.histogram(values, bins=edges, weights=weight)[0]

            counts = jax.vmap(one, in_axes=1)(picked)
        sums = sums + loss0[:, None] * average[s]
        carry = (valid, sums, whole & finite, average)
        return carry, (count, loss_mean, loss_m2, x_mean, x_m2, counts)

    def finish(self, carry, saved):
        _, sums, whole, _ = carry
        weight = whole.astype(sums.dtype)
        block_count = weight.sum()
        block_mean = (weight[:, None] * sums).sum(axis=0) / jnp.maximum(block_count, 1.0)
        dev = weight[:, None] * (sums - block_mean)
        return (*saved, (block_count, block_mean, dev.T @ dev))


def scan_saves(
    reducer,
    valid,
    n_saves: int,
    y0,
    advance: Callable,
    observe: Callable,
):
    """Save `y0`, then `n_saves` times advance all paths to the next save
    (`advance(y, s) -> y`, `s = 0, 1, …`) and save again, as one `lax.scan`;
    `observe(y) -> (states, loss)` gives the states with the paths first and the loss `(n,)`.
    Returns `reducer.finish` of the `n_saves + 1` saves."""
    states, loss = observe(y0)
    carry = reducer.init(valid, n_saves + 1, loss.dtype)
    carry, first = reducer.save(carry, 0, states, loss)

    def body(state, s):
        y, carry = state
        y = advance(y, s)
        carry, out = reducer.save(carry, s + 1, *observe(y))
        return (y, carry), out

    (_, carry), rest = jax.lax.scan(body, (y0, carry), jnp.arange(n_saves))
    saved = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
    return reducer.finish(carry, saved)
