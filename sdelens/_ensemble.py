"""Running many paths: chunks that bound memory, sharding over devices, streaming statistics.

`simulate` and `run_optimizer` hand their jitted per-path core to `run_ensemble`, which feeds it
`chunk_size` paths at a time (the same compiled function for every chunk; the last one padded),
splits each chunk across `devices` along a `"paths"` mesh axis, and either gathers every path
(`keep="paths"`) or folds each chunk into running statistics on the device (`keep="stats"`), so
that memory does not grow with `n_paths × n_saves`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import _check, _progress
from ._reduce import KeepPaths, KeepStats, block_edges

__all__ = ["RunStats", "Histogram", "run_ensemble"]

KEEP = ("paths", "stats")


@dataclasses.dataclass(frozen=True)
class Histogram:
    """Which coordinates to histogram at every save, and the bin edges (shared by all)."""

    coords: tuple[int, ...]
    edges: tuple[float, ...]

    def __post_init__(self):
        coords = tuple(int(c) for c in np.atleast_1d(self.coords))
        if not coords or min(coords) < 0:
            raise ValueError(f"hist coords={self.coords} is invalid: non-negative indices.")
        edges = np.asarray(self.edges, dtype=float)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError("hist edges must be a strictly increasing 1-D array of >= 2 values.")
        # Hashable, so that a histogram spec can be a static argument of a jitted function.
        object.__setattr__(self, "coords", coords)
        object.__setattr__(self, "edges", tuple(edges.tolist()))


@dataclasses.dataclass(frozen=True, eq=False)
class RunStats:
    """Per-save statistics over the finite paths of an ensemble.

    `count` `(S,)`: paths finite at each save; `loss_mean`, `loss_m2` `(S,)` and `x_mean`,
    `x_m2` `(S, d)`: means and sums of squared deviations (merged across chunks with Chan et
    al.'s parallel update, in float64); `hist_counts` `(S, k, bins)` for `hist` (optional).
    A mean over no finite path is NaN, a variance or standard error over fewer than two NaN:
    never 0.

    For the standard error of a time average, which per-save variances cannot give (successive
    saves are correlated), the saves are cut into `B ≤ 16` contiguous blocks (`block_edges`,
    `B + 1` save indices) and each path's mean loss over each block is summarised across the
    `block_count` paths finite at every save: `block_mean` `(B,)` and the co-moment matrix
    `block_m2` `(B, B)` (sums of products of deviations). Memory stays `O(B²)`, not `O(n)`.
    """

    count: np.ndarray
    loss_mean: np.ndarray
    loss_m2: np.ndarray
    x_mean: np.ndarray
    x_m2: np.ndarray
    hist: Histogram | None = None
    hist_counts: np.ndarray | None = None
    block_edges: np.ndarray | None = None
    block_count: np.ndarray | None = None
    block_mean: np.ndarray | None = None
    block_m2: np.ndarray | None = None

    def window_loss_se(self, keep: np.ndarray) -> float:
        """Standard error of the loss averaged over the saves `keep` (a boolean mask) and the
        finite paths, each path's time average one sample (docs/math.md §A.7). It is computed
        over the whole blocks inside the window, a slightly shorter window whose average varies
        a little more: the error is, if anything, overstated. NaN without a whole block in the
        window or with fewer than two paths."""
        if self.block_m2 is None:
            return float("nan")
        edges, n = np.asarray(self.block_edges), float(self.block_count)
        sizes = np.diff(edges).astype(float)
        inside = np.array([bool(np.all(keep[a:b])) for a, b in zip(edges, edges[1:], strict=False)])
        if n < 2 or not inside.any():
            return float("nan")
        w = np.where(inside, sizes, 0.0) / sizes[inside].sum()
        var = float(w @ self.block_m2 @ w) / (n - 1)  # Var of Σ_j w_j (path's block-j mean)
        return float(np.sqrt(max(var, 0.0) / n))

    @property
    def hist_outside(self) -> np.ndarray | None:
        """`(S, k)` finite values at each save that fell outside the histogram's edges (counted,
        not lost: the finite-path count minus what the bins hold)."""
        if self.hist_counts is None:
            return None
        return self.count[:, None] - self.hist_counts.sum(axis=-1)

    @property
    def loss_var(self) -> np.ndarray:
        return _unbiased(self.loss_m2, self.count)

    @property
    def loss_se(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(self.loss_var / self.count)

    @property
    def x_var(self) -> np.ndarray:
        return _unbiased(self.x_m2, self.count[:, None])

    def merge(self, other: RunStats) -> RunStats:
        """Statistics of the union of two disjoint sets of paths."""
        n_a, n_b = self.count, other.count
        n = n_a + n_b
        with np.errstate(invalid="ignore", divide="ignore"):
            share_b = np.where(n > 0, n_b / np.maximum(n, 1), 0.0)
            cross = np.where(n > 0, n_a * n_b / np.maximum(n, 1), 0.0)
        loss_a, loss_b = _filled(self.loss_mean, n_a), _filled(other.loss_mean, n_b)
        x_a, x_b = _filled(self.x_mean, n_a[:, None]), _filled(other.x_mean, n_b[:, None])
        d_loss, d_x = loss_b - loss_a, x_b - x_a
        counts = None
        if self.hist_counts is not None:
            counts = self.hist_counts + other.hist_counts
        blocks = {}
        if self.block_m2 is not None and other.block_m2 is not None:  # the same update, δ δᵀ
            b_a, b_b = self.block_count, other.block_count
            b_n = b_a + b_b
            mean_a, mean_b = _filled(self.block_mean, b_a), _filled(other.block_mean, b_b)
            delta = mean_b - mean_a
            blocks = {
                "block_edges": self.block_edges,
                "block_count": b_n,
                "block_mean": _empty_nan(mean_a + delta * (b_b / max(b_n, 1)), b_n),
                "block_m2": self.block_m2
                + other.block_m2
                + np.outer(delta, delta) * (b_a * b_b / max(b_n, 1)),
            }
        return RunStats(
            count=n,
            loss_mean=_empty_nan(loss_a + d_loss * share_b, n),
            loss_m2=self.loss_m2 + other.loss_m2 + d_loss**2 * cross,
            x_mean=_empty_nan(x_a + d_x * share_b[:, None], n[:, None]),
            x_m2=self.x_m2 + other.x_m2 + d_x**2 * cross[:, None],
            hist=self.hist,
            hist_counts=counts,
            **blocks,
        )

    @classmethod
    def from_paths(cls, x, loss, hist: Histogram | None = None) -> RunStats:
        """The same statistics computed from stored paths `x (n, S, d)`, `loss (n, S)`."""
        valid = jnp.ones(x.shape[0], dtype=bool)
        parts = _stats_of_paths(jnp.asarray(x), jnp.asarray(loss), valid, _reducer("stats", hist))
        return _stats(parts, hist)


def _reducer(keep: str, hist: Histogram | None):
    if keep == "paths":
        return KeepPaths()
    if hist is None:
        return KeepStats()
    return KeepStats(hist_coords=hist.coords, hist_edges=hist.edges)


class _X(NamedTuple):
    x: jax.Array


@functools.partial(jax.jit, static_argnums=3)
def _stats_of_paths(x, loss, valid, reducer):
    """The reducer over stored paths `x (n, S, d)`, `loss (n, S)`, save by save."""
    n_saves = loss.shape[1]
    carry = reducer.init(valid, n_saves, loss.dtype)

    def body(carry, s):
        return reducer.save(carry, s, _X(x[:, s]), loss[:, s])

    carry, saved = jax.lax.scan(body, carry, jnp.arange(n_saves))
    return reducer.finish(carry, saved)


def _filled(mean, count):
    """A mean with its empty entries (NaN) as 0, for the merge arithmetic."""
    return np.where(count > 0, mean, 0.0)


def _empty_nan(mean, count):
    """A mean over no path is NaN (the device computes 0/1 there)."""
    return np.where(count > 0, mean, np.nan)


def _unbiased(m2, count):
    """`m2 / (n - 1)`, NaN for fewer than two paths."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 1, m2 / np.maximum(count - 1, 1), np.nan)


def _stats(parts, hist: Histogram | None) -> RunStats:
    """Device moments → host float64 `RunStats` (where chunks are merged)."""
    *moments, blocks = parts
    count, loss_mean, loss_m2, x_mean, x_m2, counts = (
        None if p is None else np.asarray(p, dtype=np.float64) for p in moments
    )
    block_count, block_mean, block_m2 = (np.asarray(p, dtype=np.float64) for p in blocks)
    loss_mean, x_mean = _empty_nan(loss_mean, count), _empty_nan(x_mean, count[:, None])
    return RunStats(
        count,
        loss_mean,
        loss_m2,
        x_mean,
        x_m2,
        hist=hist,
        hist_counts=counts,
        block_edges=block_edges(count.shape[0]),
        block_count=block_count,
        block_mean=_empty_nan(block_mean, block_count),
        block_m2=block_m2,
    )


def _mesh(devices) -> Mesh | None:
    devices = list(devices)
    return Mesh(np.asarray(devices), ("paths",)) if len(devices) > 1 else None


def _place(mesh: Mesh | None, array):
    if mesh is None:
        return array
    return jax.device_put(array, NamedSharding(mesh, PartitionSpec("paths")))


def resolve_chunk(chunk_size: int | None, n_paths: int, n_devices: int) -> int:
    """Paths per jitted call: `chunk_size` clamped to `n_paths` (None: all), rounded up to a
    multiple of the device count so every device gets the same share."""
    if chunk_size is not None:
        _check.positive_int("chunk_size", chunk_size)
    chunk = n_paths if chunk_size is None else min(int(chunk_size), n_paths)
    return int(math.ceil(chunk / n_devices) * n_devices)


def run_ensemble(
    core: Callable,
    x0s,
    keys,
    *,
    keep: str = "paths",
    chunk_size: int | None = None,
    hist: Histogram | None = None,
    devices: Sequence | None = None,
):
    """Run `core(x0s_chunk, keys_chunk, valid_chunk, reducer)` over all paths: with
    `reducer=KeepPaths()` it returns `(states, loss)`, `states` a named tuple of arrays
    `(paths, saves, ...)` whose field `x` holds the parameters; with `KeepStats` the chunk's
    per-save statistics (`valid` marks the rows that are not padding).

    Returns `(states, loss, None)` as host arrays for `keep="paths"`, or
    `(None, None, RunStats)` for `keep="stats"`. Path `i` always uses `keys[i]`, so
    chunking and sharding do not change the result (up to float rounding).

    Under `jax.distributed` (several processes, e.g. one per host), process `p` runs the `p`-th
    contiguous share of the paths on its local devices, and the shares are gathered
    (`process_allgather`) so that every process returns the result for all paths.
    """
    _check.choice("keep", keep, KEEP)
    devices = jax.local_devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices is empty: give at least one device.")
    n_proc = jax.process_count()
    if n_proc == 1:
        return _run_local(core, x0s, keys, keep, chunk_size, hist, devices, x0s.shape[0])
    n = x0s.shape[0]
    if n < n_proc:
        raise ValueError(
            f"n_paths={n} is smaller than the {n_proc} processes: one path each at least."
        )
    share = math.ceil(n / n_proc)
    lo = jax.process_index() * share
    index = np.minimum(np.arange(lo, lo + share), n - 1)
    real = max(0, min(share, n - lo))
    # Padding rows repeat path n-1; they sit at the end of the global order, where the gather
    # cuts them off, but statistics must not count them.
    n_valid = share if keep == "paths" else real
    states, loss, stats = _run_local(
        core, x0s[index], keys[index], keep, chunk_size, hist, devices, n_valid
    )
    return _gather(states, loss, stats, n)


def _gather(states, loss, stats, n: int):
    """Every process's share → the whole ensemble, in path order, on every process."""
    from jax.experimental import multihost_utils

    if stats is None:
        parts = multihost_utils.process_allgather((states, loss))
        states, loss = jax.tree.map(lambda p: np.asarray(p).reshape(-1, *p.shape[2:])[:n], parts)
        return states, loss, None
    fields = [stats.count, stats.loss_mean, stats.loss_m2, stats.x_mean, stats.x_m2]
    fields += [stats.block_count, stats.block_mean, stats.block_m2]
    if stats.hist_counts is not None:
        fields.append(stats.hist_counts)
    gathered = multihost_utils.process_allgather(tuple(fields))
    merged = None
    for p in range(gathered[0].shape[0]):
        block_count, block_mean, block_m2 = (np.asarray(g[p]) for g in gathered[5:8])
        part = RunStats(
            *(np.asarray(g[p], dtype=np.float64) for g in gathered[:5]),
            hist=stats.hist,
            hist_counts=None if stats.hist_counts is None else np.asarray(gathered[8][p]),
            block_edges=stats.block_edges,
            block_count=block_count,
            block_mean=block_mean,
            block_m2=block_m2,
        )
        merged = part if merged is None else merged.merge(part)
    return None, None, merged


def _run_local(core, x0s, keys, keep, chunk_size, hist, devices, n_valid: int):
    """The ensemble on this process's devices; rows from `n_valid` on are padding."""
    n = x0s.shape[0]
    chunk = resolve_chunk(chunk_size, n, len(devices))
    mesh = _mesh(devices)
    reducer = _reducer(keep, hist)
    gathered, stats = [], None
    # advanced once a chunk is on the host (np.asarray, _stats): no extra device sync
    with _progress.task(f"chunks of {chunk} paths", math.ceil(n / chunk)) as progress:
        for start in range(0, n, chunk):
            real = max(0, min(chunk, n_valid - start))
            if chunk == n:  # one chunk of every path: no copy
                x0s_chunk, keys_chunk = x0s, keys
            else:
                index = np.minimum(np.arange(start, start + chunk), n - 1)  # pad: the last path
                x0s_chunk, keys_chunk = x0s[index], keys[index]
            valid = _place(mesh, jnp.arange(chunk) < real)
            out = core(_place(mesh, x0s_chunk), _place(mesh, keys_chunk), valid, reducer)
            if keep == "paths":
                gathered.append(jax.tree.map(lambda a, n=real: np.asarray(a)[:n], out))
            else:
                part = _stats(out, hist)
                stats = part if stats is None else stats.merge(part)
            progress.advance()
    if keep == "stats":
        return None, None, stats
    states, loss = jax.tree.map(lambda *parts: np.concatenate(parts), *gathered)
    return states, loss, None
