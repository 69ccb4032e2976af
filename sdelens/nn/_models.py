"""Small equinox models, sized to train on a CPU in seconds to minutes.

Each model maps **one** example to `n_classes` logits (vmap over a batch). No batch norm, no
dropout: the loss is a deterministic function of the parameters, as the SDEs assume.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _check

__all__ = ["MLP", "LeNet", "ResNet", "Transformer", "make_model", "count_params", "MODELS"]

MODELS = ("mlp", "lenet", "cnn", "resnet", "transformer")


def count_params(model) -> int:
    """Number of trainable (floating-point) parameters."""
    leaves = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    return sum(leaf.size for leaf in leaves)


class MLP(eqx.Module):
    """`depth` hidden layers of `width` tanh units (tanh keeps the loss smooth, as the SDE
    theory assumes); the input is flattened. 2×32 on Breast Cancer (30 features): 2,114
    parameters; on digits (64): 3,466."""

    mlp: eqx.nn.MLP

    def __init__(self, in_size: int, out_size: int, width: int = 32, depth: int = 2, *, key):
        _check.positive_int("width", width)
        _check.positive_int("depth", depth)
        self.mlp = eqx.nn.MLP(in_size, out_size, width, depth, activation=jnp.tanh, key=key)

    def __call__(self, x: Float[Array, "..."]) -> Float[Array, " c"]:
        return self.mlp(jnp.ravel(x))


class LeNet(eqx.Module):
    """LeNet-style CNN for small images (`(C, S, S)`, `S` divisible by 4):
    conv3×3(6) → relu → avgpool2 → conv3×3(16) → relu → avgpool2 → linear(32) → relu → linear.
    On 8×8 digits: 3,350 parameters."""

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear
    pool: eqx.nn.AvgPool2d

    def __init__(self, in_channels: int = 1, n_classes: int = 10, *, key, image_size: int = 8):
        if image_size % 4:
            raise ValueError(f"image_size={image_size} is invalid: LeNet needs a multiple of 4.")
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.conv1 = eqx.nn.Conv2d(in_channels, 6, 3, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(6, 16, 3, padding=1, key=k2)
        self.fc1 = eqx.nn.Linear(16 * (image_size // 4) ** 2, 32, key=k3)
        self.fc2 = eqx.nn.Linear(32, n_classes, key=k4)
        self.pool = eqx.nn.AvgPool2d(2, stride=2)

    def __call__(self, x: Float[Array, "c s s"]) -> Float[Array, " k"]:
        x = self.pool(jax.nn.relu(self.conv1(x)))
        x = self.pool(jax.nn.relu(self.conv2(x)))
        return self.fc2(jax.nn.relu(self.fc1(jnp.ravel(x))))


class _ResidualBlock(eqx.Module):
    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d

    def __init__(self, width: int, *, key):
        k1, k2 = jax.random.split(key)
        self.conv1 = eqx.nn.Conv2d(width, width, 3, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(width, width, 3, padding=1, key=k2)

    def __call__(self, x):
        return jax.nn.relu(x + self.conv2(jax.nn.relu(self.conv1(x))))


class ResNet(eqx.Module):
    """A small ResNet without normalisation (no running statistics):
    conv3×3(width) → `n_blocks` × [conv-relu-conv + identity, relu] → global average pool →
    linear. width 8, 2 blocks, 10 classes: 2,506 parameters."""

    stem: eqx.nn.Conv2d
    blocks: tuple[_ResidualBlock, ...]
    head: eqx.nn.Linear

    def __init__(self, in_channels: int = 1, n_classes: int = 10, *, key, width=8, n_blocks=2):
        _check.positive_int("width", width)
        _check.positive_int("n_blocks", n_blocks)
        keys = jax.random.split(key, n_blocks + 2)
        self.stem = eqx.nn.Conv2d(in_channels, width, 3, padding=1, key=keys[0])
        self.blocks = tuple(_ResidualBlock(width, key=k) for k in keys[1:-1])
        self.head = eqx.nn.Linear(width, n_classes, key=keys[-1])

    def __call__(self, x: Float[Array, "c s s"]) -> Float[Array, " k"]:
        x = jax.nn.relu(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return self.head(jnp.mean(x, axis=(1, 2)))


class _TransformerBlock(eqx.Module):
    norm1: eqx.nn.LayerNorm
    attention: eqx.nn.MultiheadAttention
    norm2: eqx.nn.LayerNorm
    mlp: eqx.nn.MLP

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int, *, key):
        k1, k2 = jax.random.split(key)
        self.norm1 = eqx.nn.LayerNorm(d_model)
        self.attention = eqx.nn.MultiheadAttention(n_heads, d_model, key=k1)
        self.norm2 = eqx.nn.LayerNorm(d_model)
        self.mlp = eqx.nn.MLP(d_model, d_model, mlp_ratio * d_model, 1, jax.nn.gelu, key=k2)

    def __call__(self, tokens):
        normed = jax.vmap(self.norm1)(tokens)
        tokens = tokens + self.attention(normed, normed, normed)
        return tokens + jax.vmap(self.mlp)(jax.vmap(self.norm2)(tokens))


class Transformer(eqx.Module):
    """A small pre-norm Transformer on image rows: the rows of an `S × S` image are `S` tokens
    of size `S` → linear embedding + learned positions → `n_layers` blocks (multi-head
    attention, GELU MLP) → mean over tokens → layer norm → linear. On 8×8 digits with
    `d_model=16`, 2 heads, 1 layer: 2,634 parameters."""

    embed: eqx.nn.Linear
    positions: Float[Array, "s m"]
    layers: tuple[_TransformerBlock, ...]
    norm: eqx.nn.LayerNorm
    head: eqx.nn.Linear
    image_size: int = eqx.field(static=True)

    def __init__(
        self,
        n_classes: int = 10,
        *,
        key,
        image_size: int = 8,
        d_model: int = 16,
        n_heads: int = 2,
        n_layers: int = 1,
        mlp_ratio: int = 2,
    ):
        for name, value in (("d_model", d_model), ("n_heads", n_heads), ("n_layers", n_layers)):
            _check.positive_int(name, value)
        if d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} is invalid: it must divide d_model={d_model}.")
        keys = jax.random.split(key, n_layers + 3)
        self.image_size = image_size
        self.embed = eqx.nn.Linear(image_size, d_model, key=keys[0])
        self.positions = 0.02 * jax.random.normal(keys[1], (image_size, d_model))
        self.layers = tuple(
            _TransformerBlock(d_model, n_heads, mlp_ratio, key=k) for k in keys[2:-1]
        )
        self.norm = eqx.nn.LayerNorm(d_model)
        self.head = eqx.nn.Linear(d_model, n_classes, key=keys[-1])

    def __call__(self, x: Float[Array, "..."]) -> Float[Array, " k"]:
        rows = jnp.reshape(x, (self.image_size, self.image_size))
        tokens = jax.vmap(self.embed)(rows) + self.positions
        for layer in self.layers:
            tokens = layer(tokens)
        return self.head(self.norm(jnp.mean(tokens, axis=0)))


def _image_side(name: str, feature_shape: tuple[int, ...]) -> tuple[int, int]:
    """(channels, side) of a square image input, or a ValueError naming the model."""
    if len(feature_shape) == 3 and feature_shape[1] == feature_shape[2]:
        return feature_shape[0], feature_shape[1]
    if len(feature_shape) == 1 and math.isqrt(feature_shape[0]) ** 2 == feature_shape[0]:
        if name == "transformer":
            return 1, math.isqrt(feature_shape[0])
    raise ValueError(
        f"model={name!r} needs square images (channels, S, S); the data has feature shape "
        f"{feature_shape} (load digits with image=True)."
    )


def make_model(
    name: str, n_classes: int, feature_shape: tuple[int, ...], *, key: PRNGKeyArray, **kwargs
):
    """Build `"mlp"`, `"lenet"` (alias `"cnn"`), `"resnet"` or `"transformer"` for data of the
    given feature shape; `kwargs` go to the model (widths, depths, ...)."""
    _check.choice("model", name, MODELS)
    _check.positive_int("n_classes", n_classes)
    feature_shape = tuple(feature_shape)
    if name == "mlp":
        return MLP(math.prod(feature_shape), n_classes, key=key, **kwargs)
    channels, side = _image_side(name, feature_shape)
    if name in ("lenet", "cnn"):
        return LeNet(channels, n_classes, key=key, image_size=side, **kwargs)
    if name == "resnet":
        return ResNet(channels, n_classes, key=key, **kwargs)
    if channels != 1:
        raise ValueError(f"model='transformer' takes one-channel images, not {channels}.")
    return Transformer(n_classes, key=key, image_size=side, **kwargs)
