"""Neural-network problems: a model, a loss and data, parameters flattened for the SDE.

The SDEs work on a flat parameter vector `x ∈ ℝᵈ`; `NetworkProblem.unflatten(x)` gives the user's
equinox model back. Gradient noise is either synthetic (`GaussianNoise` on top of the full-batch
gradient, the setting of Compagnoni et al. 2025, §4) or real (`MinibatchNoise`: the discrete
optimizer samples minibatches, the SDE uses their covariance at the current point).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, Int, PRNGKeyArray

from . import _check
from ._noise import AbstractNoise, GaussianNoise
from ._problems import AbstractProblem
from .nn import Dataset, load_dataset, make_model

__all__ = [
    "MinibatchNoise",
    "NetworkProblem",
    "network_problem",
    "evaluate",
    "NETWORK_PROBLEMS",
]

LOSSES = ("cross_entropy", "mse")
COVARIANCES = ("exact", "diagonal")


class MinibatchNoise(eqx.Module):
    """Real minibatch noise: the gradient of the mean loss over `batch_size` training examples
    drawn uniformly **without replacement** at every step.

    Its covariance at `x` is `Σ(x) = (n - B) / (B (n - 1)) · Σ₁(x)`, with
    `Σ₁ = (1/n) G_cᵀ G_c` the per-example gradient covariance, `G_c` the centred `n × d` matrix of
    per-example gradients (`n` training examples, batch size `B`; the factor is the finite
    population correction of sampling without replacement, 0 at `B = n`).

    The SDE uses `Σ(x)` in one of two forms (`covariance=`):

    - `"exact"`: `Σ^{1/2} dW = c G_cᵀ dW_n` with `W_n` an `n`-dimensional Brownian motion and
      `c = √((n - B) / (B (n - 1) n))` (MATH.md §9). `G_cᵀ w = ∇ₓ Σᵢ wᵢ ℓᵢ(x) - ∇f(x) Σᵢ wᵢ` is one
      vector-Jacobian product of the per-example losses: neither `d × d` nor `n × d` is formed.
    - `"diagonal"`: `Σ ≈ diag Σ(x)`, driven by a `d`-dimensional `W`.

    `diag Σ(x)` (RMSprop/Adam's `V`, SignSGD's moments) comes from per-example gradients
    (`vmap(grad)`) in chunks of `chunk_size` examples, so memory stays `O(chunk_size · d)`.

    **SignSGD.** With `sign_samples=0` the SDE uses the Gaussian approximation of the minibatch
    gradient: `E[sign gᵢ] = erf(∂ᵢf / (√2 σᵢ))`, `σᵢ² = Σᵢᵢ(x)`, and the diagonal of
    `Cov(sign g)` (its off-diagonals would need `d²` bivariate normal CDFs per step). Near a
    minimum, where a few examples dominate each coordinate's gradient, the minibatch gradient is
    skewed and this approximation fails. With `sign_samples=K > 0` both moments are averages
    over `K` real minibatches (fixed by `seed`: common random numbers, so the drift is a
    deterministic function of `x`), and the diffusion is the sample covariance's square root
    `K^{-1/2} (S - m)ᵀ dW_K`, off-diagonals included: no Gaussian approximation, for `K`
    minibatch gradients per step.
    """

    batch_size: int = eqx.field(static=True)
    covariance: str = eqx.field(static=True, default="exact")
    chunk_size: int = eqx.field(static=True, default=128)
    sign_samples: int = eqx.field(static=True, default=0)
    seed: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        _check.positive_int("batch_size", self.batch_size)
        _check.choice("covariance", self.covariance, COVARIANCES)
        _check.positive_int("chunk_size", self.chunk_size)
        if self.sign_samples != 0:
            _check.positive_int("sign_samples", self.sign_samples)

    @property
    def dim(self) -> None:
        return None

    @property
    def has_finite_variance(self) -> bool:
        return True

    def population_factor(self, n: int) -> float:
        """`(n - B) / (B (n - 1))`: the covariance of a minibatch mean relative to `Σ₁`."""
        return (n - self.batch_size) / (self.batch_size * max(n - 1, 1))


def _split_params(model):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    return flat, unravel, static


def _check_logits(model, data: Dataset) -> None:
    out = jax.eval_shape(model, data.x_train[0])
    if out.shape != (data.n_classes,):
        raise ValueError(
            f"model output has shape {out.shape} on one example of {data.name}: "
            f"({data.n_classes},) logits are required."
        )


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
    noise: AbstractNoise | MinibatchNoise
    x0: Float[Array, " d"]
    static: Any
    unravel: Callable = eqx.field(static=True)
    loss_name: str = eqx.field(static=True)
    name: str = eqx.field(static=True)

    def __init__(self, model, data: Dataset, noise, loss: str = "cross_entropy", name: str = ""):
        if not isinstance(data, Dataset):
            raise ValueError(f"data={data!r} is invalid: an sdelens.nn.Dataset is required.")
        if not isinstance(noise, AbstractNoise | MinibatchNoise):
            raise ValueError(
                f"noise={noise!r} is invalid: a noise model (GaussianNoise, ...) or "
                "MinibatchNoise(batch_size) is required."
            )
        _check.choice("loss", loss, LOSSES)
        if isinstance(noise, MinibatchNoise) and noise.batch_size > data.n_train:
            raise ValueError(
                f"batch_size={noise.batch_size} is invalid: the training set has "
                f"{data.n_train} examples, so 1 <= batch_size <= {data.n_train}."
            )
        self.x0, self.unravel, self.static = _split_params(model)
        if noise.dim is not None and noise.dim != self.x0.shape[0]:
            raise ValueError(
                f"noise has dimension {noise.dim} but the model has {self.x0.shape[0]} parameters."
            )
        self.data = data
        self.noise = noise
        self.loss_name = loss
        self.name = name or f"{type(model).__name__.lower()}-{data.name}"
        _check_logits(model, data)

    @property
    def dim(self) -> int:
        return self.x0.shape[0]

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
        """`ℓ(model_x(aᵢ), yᵢ)` for each example."""
        logits = jax.vmap(self.unflatten(x))(inputs)
        if self.loss_name == "cross_entropy":
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        onehot = jax.nn.one_hot(labels, self.data.n_classes, dtype=logits.dtype)
        return 0.5 * jnp.sum((logits - onehot) ** 2, axis=-1)

    def loss(self, x):
        return jnp.mean(self.example_losses(x, self.data.x_train, self.data.y_train))

    def metrics(self, x: Float[Array, " d"], split: str = "test") -> tuple[Array, Array]:
        """`(mean loss, accuracy)` of parameters `x` on the `"train"` or `"test"` split."""
        inputs, labels = self._split(split)
        logits = jax.vmap(self.unflatten(x))(inputs)
        accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
        return jnp.mean(self.example_losses(x, inputs, labels)), accuracy

    def _split(self, split):
        _check.choice("split", split, ("train", "test"))
        if split == "train":
            return self.data.x_train, self.data.y_train
        return self.data.x_test, self.data.y_test

    # -- minibatch noise ------------------------------------------------------------------

    def _minibatch(self) -> MinibatchNoise | None:
        return self.noise if isinstance(self.noise, MinibatchNoise) else None

    def stochastic_grad(self, x, key):
        noise = self._minibatch()
        if noise is None:
            return super().stochastic_grad(x, key)
        idx = jax.random.choice(key, self.data.n_train, (noise.batch_size,), replace=False)
        inputs, labels = self.data.x_train[idx], self.data.y_train[idx]
        return jax.grad(lambda p: jnp.mean(self.example_losses(p, inputs, labels)))(x)

    def noise_cov_sqrt(self, x):
        noise = self._minibatch()
        if noise is None:
            return super().noise_cov_sqrt(x)
        if noise.covariance == "diagonal":
            return lx.DiagonalLinearOperator(jnp.sqrt(self.noise_variance(x)))
        n = self.data.n_train
        c = math.sqrt(noise.population_factor(n) / n)
        per_example = lambda p: self.example_losses(p, self.data.x_train, self.data.y_train)  # noqa: E731
        _, pullback = jax.vjp(per_example, x)
        grad = self.grad(x)

        def centred_gradients_transposed(w):
            (g_w,) = pullback(w)
            return c * (g_w - grad * jnp.sum(w))

        return lx.FunctionLinearOperator(
            centred_gradients_transposed, jax.ShapeDtypeStruct((n,), x.dtype)
        )

    def noise_variance(self, x):
        noise = self._minibatch()
        if noise is None:
            return super().noise_variance(x)
        return noise.population_factor(self.data.n_train) * self.per_example_variance(x)

    def per_example_variance(self, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """`diag Σ₁(x) = (1/n) Σᵢ (∇ℓᵢ - ∇f)²`, per-example gradients in chunks."""
        inputs, labels = self.data.x_train, self.data.y_train
        n = self.data.n_train
        noise = self._minibatch()
        chunk = min(noise.chunk_size if noise is not None else 128, n)
        n_chunks = -(-n // chunk)
        idx = jnp.arange(n_chunks * chunk).reshape(n_chunks, chunk)
        grad = self.grad(x)

        def example_grad(a, y):
            return jax.grad(lambda p: self.example_losses(p, a[None], y[None])[0])(x)

        def add_chunk(total, rows):
            valid = rows < n
            rows = jnp.minimum(rows, n - 1)
            g = jax.vmap(example_grad)(inputs[rows], labels[rows])
            return total + jnp.sum(jnp.where(valid[:, None], (g - grad) ** 2, 0.0), axis=0), None

        total, _ = jax.lax.scan(add_chunk, jnp.zeros_like(x), idx)
        return total / n

    def _sign_gaussian(self, x) -> GaussianNoise:
        # A floor on the std keeps erf(0/0) away where every example agrees exactly.
        std = jnp.sqrt(self.noise_variance(x)) + jnp.finfo(x.dtype).tiny
        return GaussianNoise(scale=std)

    def _sampled_signs(self, x) -> Float[Array, "k d"]:
        """`sign` of the gradients of `sign_samples` fixed minibatches at `x`."""
        noise = self._minibatch()
        keys = jax.random.split(jax.random.key(noise.seed), noise.sign_samples)
        return jax.vmap(lambda k: jnp.sign(self.stochastic_grad(x, k)))(keys)

    def sign_mean(self, x):
        noise = self._minibatch()
        if noise is None:
            return super().sign_mean(x)
        if noise.sign_samples:
            return jnp.mean(self._sampled_signs(x), axis=0)
        return self._sign_gaussian(x).sign_mean(self.grad(x))

    def sign_cov_sqrt(self, x):
        noise = self._minibatch()
        if noise is None:
            return super().sign_cov_sqrt(x)
        if noise.sign_samples:
            signs = self._sampled_signs(x)
            centred = signs - jnp.mean(signs, axis=0)
            return lx.MatrixLinearOperator(centred.T / math.sqrt(noise.sign_samples))
        return self._sign_gaussian(x).sign_cov_sqrt(self.grad(x))


NETWORK_PROBLEMS: dict[str, tuple[str, str, bool]] = {
    # name: (model, dataset, images)
    "mlp-breast-cancer": ("mlp", "breast-cancer", False),
    "mlp-digits": ("mlp", "digits", False),
    "cnn-digits": ("lenet", "digits", True),
    "resnet-digits": ("resnet", "digits", True),
    "transformer-digits": ("transformer", "digits", True),
}


def network_problem(
    name: str,
    noise=None,
    *,
    key: PRNGKeyArray | None = None,
    loss: str = "cross_entropy",
    data: Dataset | None = None,
    train_size: int | None = None,
    **model_kwargs,
) -> NetworkProblem:
    """A ready-made network problem: `"mlp-breast-cancer"`, `"mlp-digits"`, `"cnn-digits"`,
    `"resnet-digits"`, `"transformer-digits"` (models and datasets of `sdelens.nn`).

    `noise` defaults to `GaussianNoise(0.01)` (Compagnoni et al.'s synthetic noise); `key`
    initialises the model (default `jax.random.key(0)`). `data` replaces the bundled dataset
    (e.g. `sdelens.nn.load_npz(...)`; images must then match the model). `train_size` keeps
    only that many training examples of the bundled dataset (`sdelens.nn.load_dataset`).
    """
    _check.choice("problem", name, tuple(NETWORK_PROBLEMS))
    model_name, dataset_name, images = NETWORK_PROBLEMS[name]
    if data is None:
        data = load_dataset(dataset_name, image=images, train_size=train_size)
    key = jax.random.key(0) if key is None else key
    model = make_model(model_name, data.n_classes, data.feature_shape, key=key, **model_kwargs)
    noise = GaussianNoise(0.01) if noise is None else noise
    return NetworkProblem(model, data, noise, loss=loss, name=name)


@eqx.filter_jit
def _evaluate_all(problem: NetworkProblem, xs, split: str):
    per_save = jax.vmap(lambda x: problem.metrics(x, split))
    return jax.lax.map(per_save, xs)  # one path at a time: memory O(saves), not O(paths)


def evaluate(problem: NetworkProblem, run, split: str = "test") -> dict[str, Array]:
    """Loss and accuracy of every path of `run` at every save on a split (`"test"` or
    `"train"`): `{"loss": (n_paths, S), "accuracy": (n_paths, S)}`. Needs the paths
    (`keep="paths"`). Non-finite paths give NaN."""
    if not isinstance(problem, NetworkProblem):
        raise ValueError(f"problem={type(problem).__name__} is invalid: a NetworkProblem.")
    _check.choice("split", split, ("train", "test"))
    if run.x is None:
        raise ValueError("run kept statistics only (keep='stats'): evaluate needs the paths.")
    loss, accuracy = _evaluate_all(problem, jnp.asarray(run.x), split)
    finite = jnp.all(jnp.isfinite(jnp.asarray(run.x)), axis=-1)
    return {"loss": loss, "accuracy": jnp.where(finite, accuracy, jnp.nan)}
