"""A counter-based Brownian path for fixed-step ensembles, fused by XLA into the solver step."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, UInt32

__all__ = ["CounterBrownianPath", "threefry2x32", "standard_normal"]

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
        hi, lo = threefry2x32(key, (jnp.arange(size, dtype=jnp.uint32), jnp.zeros((), jnp.uint32)))
        m = (hi.astype(jnp.uint64) >> 6) << 27 | (lo.astype(jnp.uint64) >> 5)
        u = _centred_uniform(m, 53, dtype)
    else:
        counters = jnp.arange((size + 1) // 2, dtype=jnp.uint32)
        a, b = threefry2x32(key, (counters, jnp.zeros((), jnp.uint32)))
        # Interleaved, not concatenated: XLA then fuses the hash into one loop.
        words = jnp.stack([a, b], axis=-1).reshape(-1)[:size]
        u = _centred_uniform(words >> np.uint32(8), 24, np.dtype(np.float32)).astype(dtype)
    return (np.sqrt(2.0).astype(dtype) * jax.lax.erf_inv(u)).reshape(shape)


def _step_key(words: UInt32[Array, "2"], t0, t1) -> tuple[UInt32[Array, ""], UInt32[Array, ""]]:
    """The hash key of the step `[t₀, t₁]`: the path's key hashed with the bits of `t₀` and
    `t₁` (one hash in float32, two in float64, whose times are two words each)."""
    words_of = [jax.lax.bitcast_convert_type(t, jnp.uint32).reshape(-1) for t in (t0, t1)]
    times = jnp.concatenate(words_of)
    key = (words[0], words[1])
    for i in range(0, times.shape[0], 2):
        key = threefry2x32(key, (times[i], times[i + 1]))
    return key


class CounterBrownianPath(diffrax.AbstractBrownianPath):
    """Independent increments `W(t₁) - W(t₀) = √(t₁ - t₀) ξ`, `ξ ~ N(0, I)` drawn from a
    counter-based hash of `(key, t₀, t₁)`: the same contract as `diffrax.UnsafeBrownianPath`
    (fixed steps, no backpropagation, no Lévy area) and the same law, but each step's draw is
    one fused Threefry hash of a counter instead of two `fold_in`s, a `split` and a
    `jax.random.normal` call (each a separate loop on CPU). Deterministic in `(key, t₀, t₁)`.
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    dtype: np.dtype = eqx.field(static=True)
    words: UInt32[Array, "2"]
    levy_area: type = eqx.field(static=True)

    def __init__(self, shape: tuple[int, ...], key: PRNGKeyArray, dtype=None):
        self.shape = tuple(shape)
        self.dtype = np.dtype(jnp.result_type(float) if dtype is None else dtype)
        # Two words from any key implementation (threefry, rbg, ...): the hash's key.
        self.words = jax.random.bits(key, (2,), jnp.uint32)
        self.levy_area = diffrax.BrownianIncrement

    @property
    def t0(self):
        return -jnp.inf

    @property
    def t1(self):
        return jnp.inf

    def evaluate(self, t0, t1=None, left: bool = True, use_levy: bool = False):
        del left
        if use_levy:
            raise ValueError(
                "CounterBrownianPath has no Lévy area: use diffrax.VirtualBrownianTree for "
                "solvers that need it."
            )
        if t1 is None:
            t0, t1 = jnp.zeros_like(t0), t0
        t0 = jax.lax.stop_gradient(jnp.asarray(t0, self.dtype))
        t1 = jax.lax.stop_gradient(jnp.asarray(t1, self.dtype))
        xi = standard_normal(_step_key(self.words, t0, t1), self.shape, self.dtype)
        return jnp.sqrt(t1 - t0) * xi
