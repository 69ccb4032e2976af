"""Neural-network problems: a model, a loss and data, parameters flattened for the SDE.

The SDEs work on a flat parameter vector `x ∈ ℝᵈ`; `NetworkProblem.unflatten(x)` gives the user's
equinox model back. Gradient noise is either synthetic (`GaussianNoise` on top of the full-batch
gradient, the setting of Compagnoni et al. 2025, §4) or real (`MinibatchNoise`: the discrete
optimizer samples minibatches, the SDE uses their covariance at the current point;
docs/math.md §9).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, final

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .. import _check
from .._noise import AbstractNoise, GaussianNoise, MinibatchNoise
from ..nn import Dataset, load_dataset, make_model
from ._base import AbstractProblem

__all__ = ["NetworkProblem", "network_problem", "NETWORK_PROBLEMS", "NETWORK_MODELS", "LOSSES"]

LOSSES = ("cross_entropy", "mse")


def _split_params(model):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    return flat, unravel, static


def _check_logits(model, data: Dataset) -> None:
    out = jax.eval_shape(model, data.x_train[0])
    want = (*data.y_train.shape[1:], data.n_classes)  # (k,), or (t, k) with labels per position
    if out.shape != want:
        raise ValueError(
            f"model output has shape {out.shape} on one example of {data.name}: "
            f"{want} logits are required."
        )


@final
class NetworkProblem(AbstractProblem):
    """Train a network: `f(x) = (1/n) Σᵢ ℓ(model_x(aᵢ), yᵢ)` over the training set, `x` the
    flattened parameters.

    `model` is an equinox module mapping one example to logits; `loss` is `"cross_entropy"`
    (softmax) or `"mse"` (squared error against one-hot labels, halved). `noise` is an additive
    noise model (`GaussianNoise(scale)` on top of the full-batch gradient) or
    `MinibatchNoise(batch_size)`. `x0` is the model's own initialisation, flattened;
    `unflatten(x)` rebuilds the model, `flatten(model)` inverts it.
    """

    data: Dataset
    noise: AbstractNoise
    x0: Float[Array, " d"]
    static: Any
    unravel: Callable = eqx.field(static=True)
    loss_name: str = eqx.field(static=True)
    name: str = eqx.field(static=True)

    def __init__(self, model, data: Dataset, noise, loss: str = "cross_entropy", name: str = ""):
        if not isinstance(data, Dataset):
            raise ValueError(f"data={data!r} is invalid: an sdelens.nn.Dataset is required.")
        _check.choice("loss", loss, LOSSES)
        self.x0, self.unravel, self.static = _split_params(model)
        self.data = data
        self.noise = noise
        self.loss_name = loss
        self.name = name or f"{type(model).__name__.lower()}-{data.name}"
        _check_logits(model, data)

    @property
    def dim(self) -> int:
        return self.x0.shape[0]

    @property
    def n_examples(self) -> int:
        return self.data.n_train

    def unflatten(self, x: Float[Array, " d"]):
        """The equinox model with parameters `x`."""
        return eqx.combine(self.unravel(x), self.static)

    def flatten(self, model) -> Float[Array, " d"]:
        """The flat parameter vector of `model` (same architecture as this problem's)."""
        flat, _, _ = _split_params(model)
        if flat.shape != self.x0.shape:
            raise ValueError(
                f"model has {flat.shape[0]} parameters but the problem has {self.x0.shape[0]}."
            )
        return flat

    def example_losses(
        self, x: Float[Array, " d"], inputs: Array, labels: Int[Array, " n"]
    ) -> Float[Array, " n"]:
        """`ℓ(model_x(aᵢ), yᵢ)` for each example; with labels per position (text) the mean
        over the example's positions (nats per character for cross-entropy)."""
        return self._losses_of_logits(jax.vmap(self.unflatten(x))(inputs), labels)

    def _losses_of_logits(self, logits: Array, labels: Array) -> Array:
        if self.loss_name == "cross_entropy":
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        else:
            onehot = jax.nn.one_hot(labels, self.data.n_classes, dtype=logits.dtype)
            losses = 0.5 * jnp.sum((logits - onehot) ** 2, axis=-1)
        return losses.mean(axis=1) if losses.ndim == 2 else losses

    def train_losses(
        self, x: Float[Array, " d"], idx: Int[Array, " b"] | None = None
    ) -> Float[Array, " b"]:
        """Per-example losses on the training examples `idx` (all of them if None)."""
        if idx is None:
            return self.example_losses(x, self.data.x_train, self.data.y_train)
        return self.example_losses(x, self.data.x_train[idx], self.data.y_train[idx])

    def loss(self, x):
        return jnp.mean(self.train_losses(x))

    def grad(self, x):
        return jax.grad(self.loss)(x)

    def metrics(self, x: Float[Array, " d"], split: str = "test") -> tuple[Array, Array]:
        """`(mean loss, accuracy)` of parameters `x` on the `"train"` or `"test"` split (with
        labels per position: per position, e.g. next-character accuracy; the loss in nats,
        `/ log 2` for bits per character)."""
        _check.choice("split", split, ("train", "test"))
        if split == "train":
            inputs, labels = self.data.x_train, self.data.y_train
        else:
            inputs, labels = self.data.x_test, self.data.y_test
        # One forward pass for both (evaluate maps this over saves in a loop, where XLA does
        # not merge two passes).
        logits = jax.vmap(self.unflatten(x))(inputs)
        accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
        return jnp.mean(self._losses_of_logits(logits, labels)), accuracy

    def per_example_variance(self, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """Deprecated: `MinibatchNoise(...).per_example_variance(problem, x)`."""
        warnings.warn(
            "NetworkProblem.per_example_variance(x) is deprecated and will be removed in the "
            "next release: use sl.MinibatchNoise(batch_size).per_example_variance(problem, x).",
            DeprecationWarning,
            stacklevel=2,
        )
        return MinibatchNoise(batch_size=1).per_example_variance(self, x)

    def with_noise(self, noise):
        return NetworkProblem(self.unflatten(self.x0), self.data, noise, self.loss_name, self.name)


NETWORK_PROBLEMS: dict[str, tuple[str, str, bool]] = {
    # name: (model, dataset, images)
    "mlp-breast-cancer": ("mlp", "breast-cancer", False),
    "mlp-digits": ("mlp", "digits", False),
    "cnn-digits": ("lenet", "digits", True),
    "resnet-digits": ("resnet", "digits", True),
    "transformer-digits": ("transformer", "digits", True),
    "lstm-text": ("lstm", "text", False),
    "gru-text": ("gru", "text", False),
    "lstm-synthetic": ("lstm", "synthetic", False),
    "mlp-mnist1d": ("mlp", "mnist1d", False),
    "cnn-mnist1d": ("cnn1d", "mnist1d", False),
    "gru-mnist1d": ("gru", "mnist1d", False),
}
# The model part of a problem name, for your own `data=`: `cnn` is the LeNet (images), `cnn1d`
# the 1-D CNN; `lstm` and `gru` are language models on tokens and classifiers on signals.
NETWORK_MODELS: dict[str, str] = {
    "mlp": "mlp",
    "cnn": "lenet",
    "cnn1d": "cnn1d",
    "resnet": "resnet",
    "transformer": "transformer",
    "lstm": "lstm",
    "gru": "gru",
}


def network_problem(
    name: str,
    noise: AbstractNoise | None = None,
    *,
    key: PRNGKeyArray,
    loss: str = "cross_entropy",
    data: Dataset | None = None,
    train_size: int | None = None,
    **model_kwargs,
) -> NetworkProblem:
    """A ready-made network problem (models and datasets of `sdelens.nn`), or a model name of
    `NETWORK_MODELS` with your `data` (the problem is then named `"<model>-<data.name>"`, e.g.
    `"mlp-mine"`).

    - Classifiers: `"mlp-breast-cancer"`, `"mlp-digits"`, `"cnn-digits"`, `"resnet-digits"`,
      `"transformer-digits"`; on MNIST-1D (`sdelens.nn.load_mnist1d`) `"mlp-mnist1d"`,
      `"cnn-mnist1d"` (1-D CNN), `"gru-mnist1d"` (a GRU over the 40 samples).
    - Character language models (loss in nats per character): `"lstm-text"`, `"gru-text"` on
      the Python documentation text (`sdelens.nn.load_text`), `"lstm-synthetic"` on a source
      with a known entropy rate (`sdelens.nn.load_synthetic`). They use the loaders' quick
      sizes (`load_dataset`); pass `data=sdelens.nn.load_text(...)` with the model name
      `"lstm"` or `"gru"` for more.
    - Model names: `"mlp"`, `"cnn"` (LeNet, images), `"cnn1d"`, `"resnet"`, `"transformer"`,
      `"lstm"`, `"gru"` (a language model on token data, a classifier on signals).

    `noise` defaults to `GaussianNoise(0.01)` (Compagnoni et al.'s synthetic noise); `key`
    initialises the model. `data` replaces the bundled dataset (e.g. `sdelens.nn.load_npz(...)`;
    images must then match the model). `train_size` keeps only that many training examples of
    the bundled dataset (`sdelens.nn.load_dataset`).
    """
    if name in NETWORK_MODELS:
        if data is None:
            raise ValueError(
                f"problem={name!r} is invalid without data: a model name needs your dataset "
                "(data=sdelens.nn.load_npz(...)); or name a ready-made problem, e.g. 'mlp-digits'."
            )
        model_name, name = NETWORK_MODELS[name], f"{name}-{getattr(data, 'name', 'data')}"
    else:
        _check.choice("problem", name, tuple(NETWORK_PROBLEMS))
        model_name, dataset_name, images = NETWORK_PROBLEMS[name]
    if key is None:
        raise ValueError("key=None is invalid: pass a JAX PRNG key, e.g. jax.random.key(0).")
    if data is None:
        data = load_dataset(dataset_name, image=images, train_size=train_size)
    elif not isinstance(data, Dataset):
        raise ValueError(f"data={data!r} is invalid: an sdelens.nn.Dataset is required.")
    if data.tokens:
        model_kwargs = {"tokens": True, **model_kwargs}
    model = make_model(model_name, data.n_classes, data.feature_shape, key=key, **model_kwargs)
    noise = GaussianNoise(0.01) if noise is None else noise
    return NetworkProblem(model, data, noise, loss=loss, name=name)
