"""Small recurrent and 1-D convolutional equinox models: a character-level language model, a
sequence classifier and a 1-D CNN (e.g. for MNIST-1D, whose examples are `(40,)` signals).

As in `_models`, each model maps **one** example (no batch axis): the caller vmaps over a batch.
The recurrences run as one `jax.lax.scan` over time from a zero state; there is no dropout and
no normalisation, so the loss is a deterministic, smooth function of the parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, final

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .. import _check
from ._conv import conv

__all__ = ["RecurrentLM", "RecurrentClassifier", "CNN1D", "CELLS"]

CELLS = ("lstm", "gru")


def _make_cell(
    cell: str, input_size: int, hidden: int, *, key: PRNGKeyArray
) -> eqx.nn.LSTMCell | eqx.nn.GRUCell:
    if cell == "lstm":
        return eqx.nn.LSTMCell(input_size, hidden, key=key)
    return eqx.nn.GRUCell(input_size, hidden, key=key)


def _scan(cell: eqx.nn.LSTMCell | eqx.nn.GRUCell, xs: Float[Array, "t d"]) -> Float[Array, "t h"]:
    """The hidden state after each step of `cell` run over `xs` from a zero state (for the
    LSTM, its `h`, not the cell memory `c`): one `lax.scan`, so row `i` depends on `xs[: i + 1]`
    only.

    The cell's own equations (`eqx.nn.LSTMCell`, `eqx.nn.GRUCell`: same parameters, same
    function up to float rounding) with the products written `x Wᵀ` (row vector times the
    transposed weights) instead of the cell's `W x`: under `vmap` over examples and paths
    that keeps the examples on the major axis of the gates, where `W x` put them on the minor
    axis and XLA transposed the gates at every step.
    """
    dtype = jnp.result_type(xs.dtype, cell.weight_hh.dtype)
    zero = jnp.zeros(cell.hidden_size, dtype)
    w_in, w_rec = cell.weight_ih.T, cell.weight_hh.T
    if isinstance(cell, eqx.nn.LSTMCell):
        bias = 0.0 if cell.bias is None else cell.bias

        def lstm_step(state, x):
            h, c = state
            i, f, g, o = jnp.split(x @ w_in + h @ w_rec + bias, 4)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        _, hs = jax.lax.scan(lstm_step, (zero, zero), xs)
        return hs
    bias, bias_n = (0.0, 0.0) if cell.bias is None else (cell.bias, cell.bias_n)

    def gru_step(h, x):
        igates = jnp.split(x @ w_in + bias, 3)
        hgates = jnp.split(h @ w_rec, 3)
        reset = jax.nn.sigmoid(igates[0] + hgates[0])
        update = jax.nn.sigmoid(igates[1] + hgates[1])
        new = jnp.tanh(igates[2] + reset * (hgates[2] + bias_n))
        h = new + update * (h - new)
        return h, h

    _, hs = jax.lax.scan(gru_step, zero, xs)
    return hs


@final
class RecurrentLM(eqx.Module):
    """Character-level language model: embedding(`embed`) → LSTM or GRU cell(`hidden`) scanned
    over time from a zero state → linear readout of every hidden state to `vocab_size` logits.

    `model(tokens)` maps one integer sequence `(t,)` to logits `(t, vocab_size)`. The model is
    causal: the logits at position `i` depend on `tokens[: i + 1]` only and predict token
    `i + 1`, so train on `cross_entropy(model(seq[:-1]), seq[1:])` (the caller shifts the
    targets). Token ids must lie in `[0, vocab_size)`: concrete ids are checked, but traced
    ones (under `jit` or `vmap`) cannot be, and there the lookup wraps negative ids and
    clamps those `>= vocab_size` to the last row.

    Parameters with the defaults (embed 16, hidden 64) at vocab 64: 25,920 with the LSTM
    (embedding 1,024, cell 20,736, readout 4,160); 20,800 with the GRU (cell 15,616).
    """

    embedding: eqx.nn.Embedding
    cell: eqx.nn.LSTMCell | eqx.nn.GRUCell
    readout: eqx.nn.Linear
    vocab_size: int = eqx.field(static=True)
    cell_type: str = eqx.field(static=True)

    def __init__(
        self,
        vocab_size: int,
        cell: Literal["lstm", "gru"] = "lstm",
        embed: int = 16,
        hidden: int = 64,
        *,
        key: PRNGKeyArray,
    ):
        _check.positive_int("vocab_size", vocab_size)
        _check.choice("cell", cell, CELLS)
        _check.positive_int("embed", embed)
        _check.positive_int("hidden", hidden)
        k1, k2, k3 = jax.random.split(key, 3)
        self.embedding = eqx.nn.Embedding(vocab_size, embed, key=k1)
        self.cell = _make_cell(cell, embed, hidden, key=k2)
        self.readout = eqx.nn.Linear(hidden, vocab_size, key=k3)
        self.vocab_size = int(vocab_size)
        self.cell_type = cell

    def __call__(self, tokens: Int[Array, " t"]) -> Float[Array, "t vocab"]:
        tokens = jnp.asarray(tokens)
        if tokens.ndim != 1 or tokens.shape[0] < 1:
            raise ValueError(
                f"tokens has shape {tokens.shape}: one sequence (t,) of t >= 1 token ids is "
                "required (vmap the model over a batch)."
            )
        if not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(
                f"tokens has dtype {tokens.dtype}: integer token ids in [0, {self.vocab_size}) "
                "are required."
            )
        if _check.is_concrete(tokens):
            low, high = int(jnp.min(tokens)), int(jnp.max(tokens))
            if low < 0 or high >= self.vocab_size:
                raise ValueError(
                    f"tokens has ids in [{low}, {high}]: ids in [0, {self.vocab_size}) "
                    "(the vocab_size) are required."
                )
        hs = _scan(self.cell, jax.vmap(self.embedding)(tokens))
        # The readout of every position as `hs Wᵀ + b` (the layer's function), which keeps
        # examples and positions on the major axes under vmap (see _scan).
        return hs @ self.readout.weight.T + self.readout.bias


@final
class RecurrentClassifier(eqx.Module):
    """Sequence classifier: a GRU or LSTM cell(`hidden`) scanned over the time steps of one
    signal from a zero state → linear readout of the **final** hidden state to `n_classes`
    logits.

    Input `(t,)` (one feature per step, e.g. an MNIST-1D example `(40,)`, with `in_features=1`)
    or `(t, in_features)`; any length `t >= 1` works.

    Parameters with the defaults (GRU, hidden 32, one feature) and 10 classes: 3,626 (cell
    3,296, readout 330); 4,682 with the LSTM.
    """

    cell: eqx.nn.LSTMCell | eqx.nn.GRUCell
    readout: eqx.nn.Linear
    in_features: int = eqx.field(static=True)
    cell_type: str = eqx.field(static=True)

    def __init__(
        self,
        n_classes: int,
        cell: Literal["lstm", "gru"] = "gru",
        hidden: int = 32,
        in_features: int = 1,
        *,
        key: PRNGKeyArray,
    ):
        _check.positive_int("n_classes", n_classes)
        _check.choice("cell", cell, CELLS)
        _check.positive_int("hidden", hidden)
        _check.positive_int("in_features", in_features)
        k1, k2 = jax.random.split(key)
        self.cell = _make_cell(cell, in_features, hidden, key=k1)
        self.readout = eqx.nn.Linear(hidden, n_classes, key=k2)
        self.in_features = int(in_features)
        self.cell_type = cell

    def __call__(self, x: Float[Array, " t *c"]) -> Float[Array, " k"]:
        x = jnp.asarray(x)
        if x.ndim == 1 and self.in_features == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.in_features or x.shape[0] < 1:
            allowed = "(t,) or (t, 1)" if self.in_features == 1 else f"(t, {self.in_features})"
            raise ValueError(
                f"input has shape {x.shape}: one signal {allowed} with t >= 1 steps is "
                "required (vmap the model over a batch)."
            )
        return self.readout(_scan(self.cell, x)[-1])


@final
class CNN1D(eqx.Module):
    """1-D convolutional classifier for signals `(length,)` or `(1, length)`:

    `len(channels)` × [conv(`kernel`, stride 2, zero "same" padding) → tanh] → mean over
    positions → linear(n_classes).

    Each convolution halves the length (rounding up), so any `length >= 1` works; the
    global mean makes the logits nearly, not exactly, shift invariant (the strides and the
    zero padding see where a pattern is).

    Parameters with the defaults (channels (16, 16), kernel 5) and 10 classes: 1,562
    (convolutions 96 + 1,296, readout 170).
    """

    convs: tuple[eqx.nn.Conv1d, ...]
    readout: eqx.nn.Linear
    length: int = eqx.field(static=True)

    def __init__(
        self,
        n_classes: int,
        length: int,
        channels: Sequence[int] = (16, 16),
        kernel: int = 5,
        *,
        key: PRNGKeyArray,
    ):
        _check.positive_int("n_classes", n_classes)
        _check.positive_int("length", length)
        _check.positive_int("kernel", kernel)
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
            raise ValueError(
                f"channels={channels!r} is invalid: a sequence of integers >= 1 is required."
            )
        if not channels:
            raise ValueError("channels=() is invalid: at least one convolution is required.")
        for width in channels:
            _check.positive_int("channels", width)
        widths = (1, *(int(c) for c in channels))
        *conv_keys, head_key = jax.random.split(key, len(channels) + 1)
        padding = (((kernel - 1) // 2, kernel // 2),)
        self.convs = tuple(
            eqx.nn.Conv1d(c_in, c_out, kernel, stride=2, padding=padding, key=k)
            for c_in, c_out, k in zip(widths[:-1], widths[1:], conv_keys, strict=True)
        )
        self.readout = eqx.nn.Linear(widths[-1], n_classes, key=head_key)
        self.length = int(length)

    def __call__(self, x: Float[Array, "*c length"]) -> Float[Array, " k"]:
        x = jnp.asarray(x)
        if x.shape not in ((self.length,), (1, self.length)):
            raise ValueError(
                f"input has shape {x.shape}: one signal ({self.length},) or (1, {self.length}) "
                "is required (vmap the model over a batch)."
            )
        # Channels last: the convolutions are matrix products (nn/_conv.py).
        x = jnp.reshape(x, (self.length, 1))
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            x = x.astype(self.readout.weight.dtype)
        for layer in self.convs:
            x = jnp.tanh(conv(layer, x))
        return self.readout(jnp.mean(x, axis=0))


def _sequence_model(
    name: str, n_classes: int, feature_shape: tuple[int, ...], tokens: bool, key, kwargs: dict
) -> RecurrentLM | RecurrentClassifier | CNN1D:
    """`make_model` for the models of this module (`name` and `feature_shape` are checked
    there)."""
    fixed = [k for k in ("cell", "in_features", "length") if k in kwargs]
    if fixed:
        raise ValueError(
            f"{fixed[0]}={kwargs[fixed[0]]!r} is invalid for make_model: it is set by the model "
            "name and feature_shape."
        )
    if name == "cnn1d":
        if len(feature_shape) == 1 or (len(feature_shape) == 2 and feature_shape[0] == 1):
            return CNN1D(n_classes, feature_shape[-1], key=key, **kwargs)
        raise ValueError(
            f"model='cnn1d' needs 1-D signals (L,) or (1, L); the data has feature shape "
            f"{feature_shape}."
        )
    if tokens:
        if len(feature_shape) != 1:
            raise ValueError(
                f"model={name!r} with tokens=True needs token sequences (t,); the data has "
                f"feature shape {feature_shape}."
            )
        return RecurrentLM(n_classes, cell=name, key=key, **kwargs)
    if len(feature_shape) not in (1, 2):
        raise ValueError(
            f"model={name!r} needs sequences (t,) or (t, c) (c features per step); the data "
            f"has feature shape {feature_shape}."
        )
    in_features = feature_shape[1] if len(feature_shape) == 2 else 1
    return RecurrentClassifier(n_classes, cell=name, in_features=in_features, key=key, **kwargs)
