"""Convolutions and average pooling on channels-last activations, as patches and a matrix
product, for ensembles of models.

`eqx.nn.Conv` calls `lax.conv_general_dilated`. Under `vmap` over an ensemble whose members have
their own weights (every path of an SDE or of an optimizer is one member), JAX batches the
weights into a grouped convolution (`feature_group_count` = members), which XLA's CPU backend
runs, and differentiates, one group at a time: a 16-path LeNet gradient on digits took 34x one
path's. Written as the product of the input's patches `(*out, k₁⋯k_N·c)` with the weights
`(k₁⋯k_N·c, o)`, the same convolution is one `dot_general` with the members as a batch
dimension, and per-example gradients (`vmap(grad)` over examples) are outer products. Channels
last keeps both the patches and the product's output in the layout the next layer reads, so no
transpose of an activation is left (only of the small weights).
"""

from __future__ import annotations

import itertools
import math

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["conv", "avg_pool"]


def conv(layer: eqx.nn.Conv, x: Float[Array, "*spatial c"]) -> Float[Array, "*out o"]:
    """`layer` applied to a channels-last input: `moveaxis(layer(moveaxis(x, -1, 0)), 0, -1)`
    up to float rounding (the order of the sums differs), for zero padding given as
    `(low, high)` pairs, any stride, no dilation, one group."""
    if layer.groups != 1 or any(d != 1 for d in layer.dilation) or layer.padding_mode != "ZEROS":
        raise ValueError(
            f"layer={layer!r} is invalid: conv needs groups=1, dilation 1 and zero padding."
        )
    if isinstance(layer.padding, str):
        raise ValueError(f"padding={layer.padding!r} is invalid here: (low, high) pairs.")
    n = layer.num_spatial_dims
    x = jnp.pad(x, (*layer.padding, (0, 0)))
    kernel, stride = layer.kernel_size, layer.stride
    out = tuple((x.shape[i] - kernel[i]) // stride[i] + 1 for i in range(n))
    windows = [
        x[tuple(slice(o, o + s * (m - 1) + 1, s) for o, s, m in zip(at, stride, out, strict=True))]
        for at in itertools.product(*(range(k) for k in kernel))
    ]
    # (*out, offsets, c) flattened in the order of the weights' (*kernel, c) below.
    patches = jnp.reshape(jnp.stack(windows, axis=-2), (*out, -1))
    weight = jnp.reshape(jnp.moveaxis(layer.weight, (0, 1), (-1, -2)), (-1, layer.out_channels))
    y = patches @ weight
    return y if layer.bias is None else y + jnp.reshape(layer.bias, (layer.out_channels,))


def avg_pool(x: Float[Array, "*spatial c"], size: int) -> Float[Array, "*out c"]:
    """Average over non-overlapping `size`-windows of every spatial axis of a channels-last
    input (stride = size, no padding: a trailing remainder is dropped), as
    `eqx.nn.AvgPool*(size, stride=size)` does channels first."""
    out = tuple(s // size for s in x.shape[:-1])
    x = x[tuple(slice(0, m * size) for m in out)]
    split = (*itertools.chain.from_iterable((m, size) for m in out), x.shape[-1])
    axes = tuple(range(1, 2 * len(out), 2))
    return jnp.sum(jnp.reshape(x, split), axis=axes) / math.prod(size for _ in out)
