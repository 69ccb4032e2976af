"""A counter-based Brownian path for fixed-step ensembles, fused by XLA into the solver step."""

from __future__ import annotations

import abc

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, UInt32

__all__ = [
    "CounterBrownianPath",
    "EnsembleBrownianPath",
    "threefry2x32",
    "standard_normal",
    "standard_normal_by_path",
    "step_normals",
    "key_words",
]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(v, r: int):
    return (v << np.uint32(r)) | (v >> np.uint32(32 - r))


def threefry2x32(
    key: tuple[UInt32[Array, ""], UInt32[Array, ""]],
    counters: tuple[UInt32[Array, "*n"], UInt32[Array, "*n"]],
) -> tuple[UInt32[Array, "*n"], UInt32[Array, "*n"]]:
    """The Threefry-2x32 hash with 20 rounds (Salmon et al., SC 2011), as `jax.random` uses it.

    Written out in `jax.numpy` so that XLA fuses the whole hash with what consumes it. (On CPU
    JAX lowers its own threefry as a five-iteration loop to keep compile times short; inside a
    time-stepping loop that loop's fixed cost dominates for small ensembles.) Bit-identical to
    `jax.random`'s threefry primitive (tested).
    """
    keys = (key[0], key[1], key[0] ^ key[1] ^ _PARITY)
    x0 = counters[0] + keys[0]
    x1 = counters[1] + keys[1]
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, r) ^ x0
        x0 = x0 + keys[(block + 1) % 3]
        x1 = x1 + keys[(block + 2) % 3] + np.uint32(block + 1)
    return x0, x1


def _centred_uniform(m: UInt32[Array, "*n"], bits: int, dtype) -> Float[Array, "*n"]:
    """`(2m + 1)/2^bits - 1` for `m < 2^bits`: symmetric about 0, never ±1 (so `erfinv` is
    finite), exact in `dtype` for `bits` up to the mantissa width + 1."""
    odd = 2 * m.astype(jnp.int64 if bits > 31 else jnp.int32) + 1 - (1 << bits)
    return odd.astype(dtype) * dtype.type(2.0**-bits)


def standard_normal(key: tuple[UInt32[Array, ""], UInt32[Array, ""]], shape, dtype) -> Array:
    """Standard normal draws `√2 erfinv(U)`, `U` uniform on a centred grid of `(-1, 1)`.

    float32: each hash gives two draws of 24 bits each (tails to 5.4σ, as `jax.random.normal`'s
    23 bits reach 5.3σ). float64 (x64 mode): one draw of 53 bits per hash.
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    if dtype == np.float64:
        return _normal_53(key, jnp.arange(size, dtype=jnp.uint32), dtype).reshape(shape)
    counters = jnp.arange((size + 1) // 2, dtype=jnp.uint32)
    a, b = threefry2x32(key, (counters, jnp.zeros((), jnp.uint32)))
    # Interleaved, not concatenated: XLA then fuses the hash into one loop.
    words = jnp.stack([a, b], axis=-1).reshape(-1)[:size]
    return _normal_24(words, dtype).reshape(shape)


def standard_normal_by_path(
    keys: tuple[UInt32[Array, " n"], UInt32[Array, " n"]], size: int, dtype
) -> Float[Array, "size n"]:
    """`size` standard normal draws for each of `n` keys, laid out `(size, n)`: paths on the
    minor axis, so that XLA's loops run along the paths (fast for small `size`). One hash per
    draw (using both words costs the hash twice in a fused loop); float64 as `standard_normal`.
    """
    dtype = np.dtype(dtype)
    counters = jnp.arange(size, dtype=jnp.uint32)[:, None]
    key = (keys[0][None, :], keys[1][None, :])
    if dtype == np.float64:
        return _normal_53(key, counters, dtype)
    a, _ = threefry2x32(key, (counters, jnp.zeros((), jnp.uint32)))
    return _normal_24(a, dtype)


def _inverse_cdf(u: Float[Array, "*n"]) -> Float[Array, "*n"]:
    """`Φ⁻¹((u + 1)/2) = √2 erfinv(u)` for `u` in `(-1, 1)`."""
    return np.sqrt(2.0).astype(u.dtype) * jax.lax.erf_inv(u)


def _normal_24(words: UInt32[Array, "*n"], dtype) -> Float[Array, "*n"]:
    u = _centred_uniform(words >> np.uint32(8), 24, np.dtype(np.float32)).astype(dtype)
    return _inverse_cdf(u)


def _normal_53(key, counters: UInt32[Array, "*n"], dtype) -> Float[Array, "*n"]:
    hi, lo = threefry2x32(key, (counters, jnp.zeros((), jnp.uint32)))
    m = (hi.astype(jnp.uint64) >> 6) << 27 | (lo.astype(jnp.uint64) >> 5)
    return _inverse_cdf(_centred_uniform(m, 53, dtype))


def _step_key(words: UInt32[Array, "2"], t0, t1) -> tuple[UInt32[Array, ""], UInt32[Array, ""]]:
    """The hash key of the step `[t₀, t₁]`: the path's key hashed with the bits of `t₀` and
    `t₁` (one hash in float32, two in float64, whose times are two words each)."""
    words_of = [jax.lax.bitcast_convert_type(t, jnp.uint32).reshape(-1) for t in (t0, t1)]
    times = jnp.concatenate(words_of)
    key = (words[0], words[1])
    for i in range(0, times.shape[0], 2):
        key = threefry2x32(key, (times[i], times[i + 1]))
    return key


def step_normals(words: UInt32[Array, "2 ..."], t0, t1, shape, dtype, *, by_path: bool) -> Array:
    """The standard normals `ξ` of the step `[t₀, t₁]` of a counter-based Brownian path, whose
    increment is `√(t₁ - t₀) ξ`: of `shape` for one path (`words` of shape `(2,)`; the draws
    of `CounterBrownianPath`, two per hash in float32), or `(*shape, n)` for `n` paths at once
    (`words` `(2, n)`, `by_path=True`; those of `EnsembleBrownianPath`, one hash per draw).

    The one definition of both layouts' draws, which the SDE's paths and the optimizer's noise
    share, so that the two can be driven by the same numbers (docs/math.md §13)."""
    key = _step_key(words, t0, t1)
    if not by_path:
        return standard_normal(key, shape, dtype)
    size = int(np.prod(shape))
    if words.ndim == 1:  # one path of the ensemble layout
        one = (key[0][None], key[1][None])
        return standard_normal_by_path(one, size, dtype).reshape(shape)
    return standard_normal_by_path(key, size, dtype).reshape(*shape, words.shape[-1])


class _AbstractCounterPath(diffrax.AbstractBrownianPath):
    """Increments `√(t₁ - t₀) ξ` with `ξ` hashed from `(key, t₀, t₁)`: the contract of
    `diffrax.UnsafeBrownianPath` (fixed steps, no backpropagation, no Lévy area)."""

    shape: tuple[int, ...] = eqx.field(static=True)
    dtype: np.dtype = eqx.field(static=True)
    words: UInt32[Array, "2 ..."]
    levy_area: type = eqx.field(static=True)

    @property
    def t0(self):
        return -jnp.inf

    @property
    def t1(self):
        return jnp.inf

    @abc.abstractmethod
    def normals(self, t0, t1) -> Array:
        """The standard normals `ξ` of the step `[t₀, t₁]` (`step_normals`)."""

    def evaluate(self, t0, t1=None, left: bool = True, use_levy: bool = False):
        del left
        if use_levy:
            raise ValueError(
                f"{type(self).__name__} has no Lévy area: use diffrax.VirtualBrownianTree for "
                "solvers that need it."
            )
        if t1 is None:
            t0, t1 = jnp.zeros_like(t0), t0
        t0 = jax.lax.stop_gradient(jnp.asarray(t0, self.dtype))
        t1 = jax.lax.stop_gradient(jnp.asarray(t1, self.dtype))
        return jnp.sqrt(t1 - t0) * self.normals(t0, t1)


def key_words(key: PRNGKeyArray) -> UInt32[Array, "2"]:
    """Two words from any key implementation (threefry, rbg, ...): the hash's key."""
    return jax.random.bits(key, (2,), jnp.uint32)


def _float_dtype(dtype) -> np.dtype:
    return np.dtype(jnp.result_type(float) if dtype is None else dtype)


class CounterBrownianPath(_AbstractCounterPath):
    """One path's Brownian motion: `W(t₁) - W(t₀) = √(t₁ - t₀) ξ`, `ξ ~ N(0, I)` of `shape`
    drawn from a counter-based Threefry hash of `(key, t₀, t₁)`. Same law as
    `diffrax.UnsafeBrownianPath`, but each step's draw is one hash fused into the step instead
    of two `fold_in`s, a `split` and a `jax.random.normal` (each a separate loop on CPU).
    Deterministic in `(key, t₀, t₁)`.
    """

    def __init__(self, shape: tuple[int, ...], key: PRNGKeyArray, dtype=None):
        self.shape = tuple(shape)
        self.dtype = _float_dtype(dtype)
        self.words = key_words(key)
        self.levy_area = diffrax.BrownianIncrement

    def normals(self, t0, t1):
        return step_normals(self.words, t0, t1, self.shape, self.dtype, by_path=False)


class EnsembleBrownianPath(_AbstractCounterPath):
    """`n` independent Brownian motions of `shape`, one per key, evaluated together with the
    paths on the last axis: `evaluate(t₀, t₁)` has shape `(*shape, n)`. For integrating a whole
    ensemble as one state `(state, n)`, which is faster than `vmap` over paths when the state
    is small (XLA's loops then run along the paths)."""

    def __init__(self, shape: tuple[int, ...], keys: PRNGKeyArray, dtype=None):
        self.shape = tuple(shape)
        self.dtype = _float_dtype(dtype)
        self.words = jax.vmap(key_words, out_axes=1)(keys)
        self.levy_area = diffrax.BrownianIncrement

    def normals(self, t0, t1):
        return step_normals(self.words, t0, t1, self.shape, self.dtype, by_path=True)
