"""Small equinox classifiers, sized to train full-batch on a CPU in seconds.

Each model maps **one** example (no batch axis) to `n_classes` logits; the caller vmaps over a
batch, and `eqx.filter_vmap` over keys builds a stacked ensemble of independent runs. There is
no batch norm and no dropout: the loss is a deterministic function of the parameters, as the
optimizer SDEs assume.
"""

from __future__ import annotations

import math
from typing import Literal, final

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _check
from ._conv import avg_pool, conv
from ._recurrent import CNN1D, RecurrentClassifier, RecurrentLM, _sequence_model

__all__ = ["MLP", "LeNet", "ResNet", "Transformer", "make_model", "count_params", "MODELS"]

MODELS = ("mlp", "lenet", "cnn", "resnet", "transformer", "lstm", "gru", "cnn1d")


def count_params(model) -> int:
    """Number of trainable (floating-point array) entries of `model`. For a stacked ensemble
    this is the total over its members."""
    leaves = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    return sum(leaf.size for leaf in leaves)


def _as_image(x: Array, channels: int, size: int) -> Float[Array, "c s s"]:
    """Accept both flat `(c·s·s,)` and image `(c, s, s)` inputs."""
    if x.size != channels * size * size:
        raise ValueError(
            f"input has shape {x.shape}: {channels * size * size} values, i.e. "
            f"({channels}, {size}, {size}) images, are required."
        )
    return jnp.reshape(x, (channels, size, size))


@final
class MLP(eqx.Module):
    """Multilayer perceptron on the flattened input:
    `depth` hidden layers of `width` tanh units → linear logits.

    tanh rather than relu keeps the loss smooth (its Hessian is defined everywhere), as the
    SDE approximations assume.

    Parameters with the defaults (2 × 32): 2,114 on breast cancer (30 features, 2 classes);
    3,466 on digits (64 features, 10 classes).
    """

    mlp: eqx.nn.MLP

    def __init__(
        self, in_size: int, out_size: int, width: int = 32, depth: int = 2, *, key: PRNGKeyArray
    ):
        for name, value in (("in_size", in_size), ("out_size", out_size), ("width", width)):
            _check.positive_int(name, value)
        _check.positive_int("depth", depth)
        self.mlp = eqx.nn.MLP(in_size, out_size, width, depth, activation=jnp.tanh, key=key)

    def __call__(self, x: Float[Array, "..."]) -> Float[Array, " k"]:
        return self.mlp(jnp.ravel(x))


@final
class LeNet(eqx.Module):
    """LeNet-style CNN for small square images (`(C, S, S)` or flattened):

    conv3×3(6, pad 1) → relu → avgpool2 → conv3×3(16, pad 1) → relu → avgpool2 → flatten →
    linear(32) → relu → linear(n_classes).

    Parameters on 8×8 digits (1 channel, 10 classes): 3,350.
    """

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear
    pool: eqx.nn.AvgPool2d
    in_channels: int = eqx.field(static=True)
    image_size: int = eqx.field(static=True)

    def __init__(
        self, in_channels: int = 1, n_classes: int = 10, *, key: PRNGKeyArray, image_size: int = 8
    ):
        _check.positive_int("in_channels", in_channels)
        _check.positive_int("n_classes", n_classes)
        if _check.positive_int("image_size", image_size) < 4:
            raise ValueError(f"image_size={image_size} is invalid: LeNet pools twice, so >= 4.")
        k1, k2, k3, k4 = jax.random.split(key, 4)
        pooled = image_size // 2 // 2
        self.conv1 = eqx.nn.Conv2d(in_channels, 6, 3, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(6, 16, 3, padding=1, key=k2)
        self.fc1 = eqx.nn.Linear(16 * pooled * pooled, 32, key=k3)
        self.fc2 = eqx.nn.Linear(32, n_classes, key=k4)
        self.pool = eqx.nn.AvgPool2d(2, stride=2)
        self.in_channels = in_channels
        self.image_size = image_size

    def __call__(self, x: Float[Array, "..."]) -> Float[Array, " k"]:
        # Channels last, the layers as matrix products, so that an ensemble of paths (vmap
        # over parameters) batches into matmuls, not grouped convolutions (nn/_conv.py).
        x = jnp.moveaxis(_as_image(x, self.in_channels, self.image_size), 0, -1)
        x = avg_pool(jax.nn.relu(conv(self.conv1, x)), self.pool.kernel_size[0])
        x = avg_pool(jax.nn.relu(conv(self.conv2, x)), self.pool.kernel_size[0])
        x = jnp.ravel(jnp.moveaxis(x, -1, 0))  # fc1 reads channels first
        return self.fc2(jax.nn.relu(self.fc1(x)))


class _ResidualBlock(eqx.Module):
    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d

    def __init__(self, width: int, *, key: PRNGKeyArray):
        k1, k2 = jax.random.split(key)
        self.conv1 = eqx.nn.Conv2d(width, width, 3, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(width, width, 3, padding=1, key=k2)

    def __call__(self, x: Float[Array, "s s c"]) -> Float[Array, "s s c"]:
        """Channels last (nn/_conv.py)."""
        return jax.nn.relu(x + conv(self.conv2, jax.nn.relu(conv(self.conv1, x))))


@final
class ResNet(eqx.Module):
    """A small ResNet **without normalisation** (no running statistics, so the model stays a
    pure function of its parameters; two blocks are shallow enough not to need it):

    conv3×3(width) → relu → `n_blocks` × [conv3×3 → relu → conv3×3, + identity, relu] →
    global average pool → linear(n_classes).

    Any image size works (the pool is global). Flat inputs need `image_size`, to be reshaped to
    `(in_channels, image_size, image_size)`.

    Parameters with width 8 and 2 blocks on digits (1 channel, 10 classes): 2,506.
    """

    stem: eqx.nn.Conv2d
    blocks: tuple[_ResidualBlock, ...]
    head: eqx.nn.Linear
    in_channels: int = eqx.field(static=True)
    image_size: int | None = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 10,
        *,
        key: PRNGKeyArray,
        width: int = 8,
        n_blocks: int = 2,
        image_size: int | None = None,
    ):
        _check.positive_int("in_channels", in_channels)
        _check.positive_int("n_classes", n_classes)
        _check.positive_int("width", width)
        _check.positive_int("n_blocks", n_blocks)
        if image_size is not None:
            _check.positive_int("image_size", image_size)
        stem_key, head_key, *block_keys = jax.random.split(key, n_blocks + 2)
        self.stem = eqx.nn.Conv2d(in_channels, width, 3, padding=1, key=stem_key)
        self.blocks = tuple(_ResidualBlock(width, key=k) for k in block_keys)
        self.head = eqx.nn.Linear(width, n_classes, key=head_key)
        self.in_channels = in_channels
        self.image_size = image_size

    def __call__(self, x: Float[Array, "..."]) -> Float[Array, " k"]:
        if self.image_size is not None:
            x = _as_image(x, self.in_channels, self.image_size)
        elif x.ndim != 3 or x.shape[0] != self.in_channels:
            raise ValueError(
                f"input has shape {x.shape}: ({self.in_channels}, H, W) images are required "
                "(or build the ResNet with image_size to accept flat inputs)."
            )
        # Channels last, the layers as matrix products (see LeNet; nn/_conv.py).
        x = jax.nn.relu(conv(self.stem, jnp.moveaxis(x, 0, -1)))
        for block in self.blocks:
            x = block(x)
        return self.head(jnp.mean(x, axis=(0, 1)))


class _TransformerBlock(eqx.Module):
    """Pre-norm block: `t + attention(norm(t))`, then `t + mlp(norm(t))`."""

    norm1: eqx.nn.LayerNorm
    attention: eqx.nn.MultiheadAttention
    norm2: eqx.nn.LayerNorm
    mlp: eqx.nn.MLP

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int, *, key: PRNGKeyArray):
        k1, k2 = jax.random.split(key)
        self.norm1 = eqx.nn.LayerNorm(d_model)
        self.attention = eqx.nn.MultiheadAttention(n_heads, d_model, key=k1)
        self.norm2 = eqx.nn.LayerNorm(d_model)
        self.mlp = eqx.nn.MLP(d_model, d_model, mlp_ratio * d_model, 1, jax.nn.gelu, key=k2)

    def __call__(self, tokens: Float[Array, "t m"]) -> Float[Array, "t m"]:
        normed = jax.vmap(self.norm1)(tokens)
        tokens = tokens + self.attention(normed, normed, normed)
        return tokens + jax.vmap(self.mlp)(jax.vmap(self.norm2)(tokens))


def _tokenise(image: Float[Array, "c s s"], patch: int | str) -> Float[Array, "t p"]:
    channels, size, _ = image.shape
    if patch == "rows":  # row i of every channel is token i
        return jnp.reshape(jnp.transpose(image, (1, 0, 2)), (size, channels * size))
    n = size // patch
    patches = jnp.reshape(image, (channels, n, patch, n, patch))
    return jnp.reshape(jnp.transpose(patches, (1, 3, 0, 2, 4)), (n * n, channels * patch**2))


@final
class Transformer(eqx.Module):
    """A small pre-norm Transformer (ViT-style) for square images (`(C, S, S)` or flattened):

    tokens → linear(d_model) + learned positional embedding → `n_layers` × [layer norm →
    multi-head self-attention, + skip; layer norm → MLP(mlp_ratio · d_model, gelu), + skip] →
    mean over tokens → layer norm → linear(n_classes).

    `patch="rows"` makes the `S` image rows the tokens (size `C·S`: an 8×8 digit is 8 tokens
    of 8 pixels); an integer `p` dividing `S` uses non-overlapping `p × p` patches instead
    (`(S/p)²` tokens of size `C·p²`).

    Parameters on 8×8 digits with the defaults (rows, d_model 16, 2 heads, 1 layer,
    mlp_ratio 2, 10 classes): 2,634.
    """

    embed: eqx.nn.Linear
    positions: Float[Array, "t m"]
    layers: tuple[_TransformerBlock, ...]
    norm: eqx.nn.LayerNorm
    head: eqx.nn.Linear
    patch: int | str = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    image_size: int = eqx.field(static=True)

    def __init__(
        self,
        n_classes: int = 10,
        *,
        key: PRNGKeyArray,
        patch: Literal["rows"] | int = "rows",
        d_model: int = 16,
        n_heads: int = 2,
        n_layers: int = 1,
        mlp_ratio: int = 2,
        image_size: int = 8,
        in_channels: int = 1,
    ):
        for name, value in (
            ("n_classes", n_classes),
            ("d_model", d_model),
            ("n_heads", n_heads),
            ("n_layers", n_layers),
            ("mlp_ratio", mlp_ratio),
            ("image_size", image_size),
            ("in_channels", in_channels),
        ):
            _check.positive_int(name, value)
        if d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} is invalid: it must divide d_model={d_model}.")
        if patch == "rows":
            n_tokens, token_size = image_size, in_channels * image_size
        elif isinstance(patch, int) and not isinstance(patch, bool) and patch >= 1:
            if image_size % patch:
                raise ValueError(
                    f"patch={patch} is invalid: it must divide image_size={image_size}."
                )
            n_tokens, token_size = (image_size // patch) ** 2, in_channels * patch**2
        else:
            raise ValueError(f"patch={patch!r} is invalid: 'rows' or an integer >= 1.")
        embed_key, position_key, head_key, *layer_keys = jax.random.split(key, n_layers + 3)
        self.embed = eqx.nn.Linear(token_size, d_model, key=embed_key)
        # Small positions, so that at initialisation the tokens' content dominates.
        self.positions = 0.02 * jax.random.normal(position_key, (n_tokens, d_model))
        self.layers = tuple(
            _TransformerBlock(d_model, n_heads, mlp_ratio, key=k) for k in layer_keys
        )
        self.norm = eqx.nn.LayerNorm(d_model)
        self.head = eqx.nn.Linear(d_model, n_classes, key=head_key)
        self.patch = patch
        self.in_channels = in_channels
        self.image_size = image_size

    def __call__(self, x: Float[Array, "..."]) -> Float[Array, " k"]:
        image = _as_image(x, self.in_channels, self.image_size)
        tokens = jax.vmap(self.embed)(_tokenise(image, self.patch)) + self.positions
        for layer in self.layers:
            tokens = layer(tokens)
        return self.head(self.norm(jnp.mean(tokens, axis=0)))


def _image_shape(
    name: str, feature_shape: tuple[int, ...], image_size: int | None
) -> tuple[int, int]:
    """`(channels, side)` of the square images an image model will see, or a ValueError.
    `(S, S)` examples are one channel; `(C, S, S)` are channels first."""
    square = len(feature_shape) in (2, 3) and feature_shape[-1] == feature_shape[-2]
    if square:
        if image_size is not None and image_size != feature_shape[-1]:
            raise ValueError(
                f"image_size={image_size} is invalid: the data has images of shape {feature_shape}."
            )
        return (feature_shape[0] if len(feature_shape) == 3 else 1), feature_shape[-1]
    size = math.prod(feature_shape)
    if image_size is not None:
        side = _check.positive_int("image_size", image_size)
        if size % (side * side):
            raise ValueError(
                f"image_size={image_size} is invalid: the data has feature shape "
                f"{feature_shape} ({size} values), not a whole number of {side}×{side} channels."
            )
        return size // (side * side), side
    # A flat perfect square is unambiguous for the Transformer: one channel of rows.
    if name == "transformer" and len(feature_shape) == 1 and math.isqrt(size) ** 2 == size:
        return 1, math.isqrt(size)
    raise ValueError(
        f"model={name!r} needs square images (S, S) or (channels, S, S); the data has feature "
        f"shape {feature_shape} (load digits with image=True, or pass image_size)."
    )


def make_model(
    name: str,
    n_classes: int,
    feature_shape: tuple[int, ...],
    *,
    key: PRNGKeyArray,
    tokens: bool = False,
    **kwargs,
) -> MLP | LeNet | ResNet | Transformer | RecurrentLM | RecurrentClassifier | CNN1D:
    """Build a model for data with the given per-example `feature_shape`.

    **Arguments:**

    - `name`: `"mlp"`, `"lenet"` (alias `"cnn"`), `"resnet"`, `"transformer"`, `"lstm"`,
      `"gru"` or `"cnn1d"`.
    - `n_classes`: number of logits (for a language model, the vocabulary size).
    - `feature_shape`: shape of one example, e.g. `Dataset.feature_shape`. The image models
      need `(C, S, S)` (channels first) or `(S, S)` images, or flat features together with
      `image_size=S` (the Transformer also takes a flat perfect square such as `(64,)` as one
      8×8 channel). `"lstm"` and `"gru"` take sequences `(t,)` (one feature per step) or
      `(t, c)`; `"cnn1d"` takes signals `(L,)` or `(1, L)` (e.g. MNIST-1D's `(40,)`).
    - `key`: initialisation key. `eqx.filter_vmap(lambda k: make_model(..., key=k))(keys)`
      builds a stacked ensemble.
    - `tokens`: only for `"lstm"`/`"gru"`. `False` (default): a `RecurrentClassifier` of the
      sequence, logits `(n_classes,)` from its final hidden state. `True`: a character-level
      `RecurrentLM` of integer token sequences `(t,)` with vocabulary `n_classes`, logits
      `(t, n_classes)`, position `i` predicting token `i + 1`.
    - `kwargs`: passed to the model (`width`, `depth`, `n_blocks`, `d_model`, `patch`,
      `hidden`, `embed`, `channels`, `kernel`, ...).
    """
    _check.choice("model", name, MODELS)
    _check.positive_int("n_classes", n_classes)
    feature_shape = tuple(int(n) if isinstance(n, np.integer) else n for n in feature_shape)
    if not all(isinstance(n, int) and n >= 1 for n in feature_shape):
        raise ValueError(
            f"feature_shape={feature_shape} is invalid: positive integer sizes are required."
        )
    if not isinstance(tokens, (bool, np.bool_)):
        raise ValueError(f"tokens={tokens!r} is invalid: True or False is required.")
    if tokens and name not in ("lstm", "gru"):
        raise ValueError(
            f"tokens=True is invalid with model={name!r}: only 'lstm' and 'gru' build a "
            "language model of token sequences."
        )
    if name in ("lstm", "gru", "cnn1d"):
        return _sequence_model(name, n_classes, feature_shape, bool(tokens), key, kwargs)
    if name == "mlp":
        return MLP(math.prod(feature_shape), n_classes, key=key, **kwargs)
    channels, side = _image_shape(name, feature_shape, kwargs.pop("image_size", None))
    if name in ("lenet", "cnn"):
        return LeNet(channels, n_classes, key=key, image_size=side, **kwargs)
    if name == "resnet":
        return ResNet(channels, n_classes, key=key, image_size=side, **kwargs)
    return Transformer(n_classes, key=key, image_size=side, in_channels=channels, **kwargs)
