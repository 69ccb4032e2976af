"""Real minibatch noise of a problem with training examples (a network)."""

from __future__ import annotations

import math
from typing import Protocol, final

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Float, Int

from .. import _check
from ._base import AbstractNoise, ProblemLike
from ._gaussian import GaussianNoise

__all__ = ["MinibatchNoise", "COVARIANCES"]

COVARIANCES = ("exact", "diagonal")


class ExampleProblem(ProblemLike, Protocol):
    """A problem whose loss is a mean over `n_examples` training examples."""

    def train_losses(
        self, x: Float[Array, " d"], idx: Int[Array, " b"] | None = None
    ) -> Float[Array, " b"]: ...


@final
class MinibatchNoise(AbstractNoise):
    """Real minibatch noise: the gradient of the mean loss over `batch_size` training examples
    drawn uniformly **without replacement** at every step.

    Its covariance at `x` is `Σ(x) = (n - B) / (B (n - 1)) · Σ₁(x)`, with
    `Σ₁ = (1/n) G_cᵀ G_c` the per-example gradient covariance, `G_c` the centred `n × d` matrix of
    per-example gradients (`n` training examples, batch size `B`; the factor is the finite
    population correction of sampling without replacement, 0 at `B = n`; docs/math.md §9).

    The SDE uses `Σ(x)` in one of two forms (`covariance=`):

    - `"exact"`: `Σ^{1/2} dW = c G_cᵀ dW_n` with `W_n` an `n`-dimensional Brownian motion and
      `c = √((n - B) / (B (n - 1) n))`. `G_cᵀ w = ∇ₓ Σᵢ wᵢ ℓᵢ(x) - ∇f(x) Σᵢ wᵢ` is one
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

    Needs a problem with training examples (`sdelens.NetworkProblem`).
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

    @property
    def label(self) -> str:
        return f"MinibatchNoise(batch_size={self.batch_size}, covariance={self.covariance!r})"

    def check_problem(self, problem: ProblemLike) -> None:
        n = problem.n_examples
        if n is None:
            raise ValueError(
                "noise=MinibatchNoise samples training examples: a problem with data "
                "(sdelens.NetworkProblem) is required."
            )
        if self.batch_size > n:
            raise ValueError(
                f"batch_size={self.batch_size} is invalid: the training set has {n} examples, "
                f"so 1 <= batch_size <= {n}."
            )

    def population_factor(self, n: int) -> float:
        """`(n - B) / (B (n - 1))`: the covariance of a minibatch mean relative to `Σ₁`."""
        return (n - self.batch_size) / (self.batch_size * max(n - 1, 1))

    def stochastic_grad(self, problem: ExampleProblem, x, key):
        xi = jax.random.normal(key, (problem.n_examples,), x.dtype)
        return self.stochastic_grad_from_normals(problem, x, xi)

    def normals_shape(self, problem: ExampleProblem, x):
        return (problem.n_examples,)

    def stochastic_grad_from_normals(self, problem: ExampleProblem, x, xi):
        """The minibatch of the `B` examples with the largest `ξᵢ` (`n` independent normals, one
        per example): a uniform draw of `B` of the `n` without replacement, by exchangeability.
        It couples with the exact-covariance SDE, driven by one Brownian motion per example
        (`Σ^{1/2} dW = c G_cᵀ dW_n`): the examples pushed hardest by `dW_n` are the ones
        sampled (docs/math.md §13)."""
        _, idx = jax.lax.top_k(xi, self.batch_size)
        return jax.grad(lambda p: jnp.mean(problem.train_losses(p, idx)))(x)

    def cov_sqrt_at(self, problem: ExampleProblem, x):
        if self.covariance == "diagonal":
            return lx.DiagonalLinearOperator(jnp.sqrt(self.variance_at(problem, x)))
        n = problem.n_examples
        return lx.FunctionLinearOperator(
            lambda w: self.grad_and_noise(problem, x, 0.0, 1.0, w),
            jax.ShapeDtypeStruct((n,), x.dtype),
        )

    def grad_and_noise(
        self, problem: ExampleProblem, x, a, b, w: Float[Array, " n"]
    ) -> Float[Array, " d"]:
        """`a ∇f(x) + b c G_cᵀ w` (the exact covariance's `Σ^{1/2} w` for `b = 1`) as one
        vector-Jacobian product of the per-example losses (docs/math.md §9.4):
        `G_cᵀ w = Σᵢ (wᵢ - w̄) ∇ℓᵢ` (centring the weights centres the gradients, since
        `∇f = (1/n) Σᵢ ∇ℓᵢ`) and `∇f = Σᵢ ∇ℓᵢ / n`, so both are the pullback of one cotangent.
        An SGD step's drift and noise together cost one backward pass."""
        n = problem.n_examples
        c = math.sqrt(self.population_factor(n) / n)
        _, pullback = jax.vjp(problem.train_losses, x)
        (out,) = pullback(a / n + (b * c) * (w - jnp.mean(w)))
        return out

    def variance_at(self, problem: ExampleProblem, x):
        return self.grad_and_variance(problem, x)[1]

    def grad_and_variance(self, problem: ExampleProblem, x) -> tuple[Array, Array]:
        """`(∇f(x), diag Σ(x))`, the gradient computed once for both
        (`per_example_moments`)."""
        grad, second = self.per_example_moments(problem, x)
        return grad, self.population_factor(problem.n_examples) * second

    def per_example_variance(self, problem: ExampleProblem, x) -> Float[Array, " d"]:
        """`diag Σ₁(x) = (1/n) Σᵢ (∇ℓᵢ - ∇f)²`, per-example gradients in chunks."""
        return self.per_example_moments(problem, x)[1]

    def per_example_moments(self, problem: ExampleProblem, x) -> tuple[Array, Array]:
        """`(∇f, diag Σ₁)`: the full-batch gradient and the per-coordinate variance (divisor
        `n`) of the per-example gradients `∇ℓᵢ(x)` about it, these in chunks of `chunk_size`
        examples (`vmap(grad)`, memory `O(chunk_size · d)`). Returned together so that a
        caller needing both computes the gradient once."""
        n = problem.n_examples
        chunk = min(self.chunk_size, n)
        n_chunks = -(-n // chunk)
        idx = jnp.arange(n_chunks * chunk).reshape(n_chunks, chunk)
        grad = problem.grad(x)

        def example_grad(row):
            return jax.grad(lambda p: problem.train_losses(p, row[None])[0])(x)

        def add_chunk(total, rows):
            valid = rows < n
            g = jax.vmap(example_grad)(jnp.minimum(rows, n - 1))
            return total + jnp.sum(jnp.where(valid[:, None], (g - grad) ** 2, 0.0), axis=0), None

        total, _ = jax.lax.scan(add_chunk, jnp.zeros_like(x), idx)
        return grad, total / n

    def _sign_gaussian(self, variance) -> GaussianNoise:
        # A floor on the std keeps erf(0/0) away where every example agrees exactly.
        return GaussianNoise(scale=jnp.sqrt(variance) + jnp.finfo(variance.dtype).tiny)

    def _sampled_signs(self, problem, x) -> Float[Array, "k d"]:
        """`sign` of the gradients of `sign_samples` fixed minibatches at `x`."""
        keys = jax.random.split(jax.random.key(self.seed), self.sign_samples)
        return jax.vmap(lambda k: jnp.sign(self.stochastic_grad(problem, x, k)))(keys)

    def sign_mean_at(self, problem, x):
        return self.sign_moments_at(problem, x)[0]

    def sign_cov_sqrt_at(self, problem, x):
        return self.sign_moments_at(problem, x)[1]

    def sign_moments_at(self, problem, x) -> tuple[Array, lx.AbstractLinearOperator]:
        """`(E[sign g], Cov(sign g)^{1/2})` at `x` from one set of gradients: `sign_samples`
        minibatches, or the full-batch gradient and one pass of per-example gradients."""
        if self.sign_samples:
            signs = self._sampled_signs(problem, x)
            mean = jnp.mean(signs, axis=0)
            return mean, lx.MatrixLinearOperator((signs - mean).T / math.sqrt(self.sign_samples))
        grad, variance = self.grad_and_variance(problem, x)
        gaussian = self._sign_gaussian(variance)
        return gaussian.sign_mean(grad), gaussian.sign_cov_sqrt(grad)

    def scaled(self, factor):
        batch = self.batch_size / float(factor) ** 2
        if abs(batch - round(batch)) > 1e-9 or round(batch) < 1:
            raise ValueError(
                f"factor={factor:g} is invalid for MinibatchNoise(batch_size={self.batch_size}): "
                "the noise scales as 1/√B, so batch_size/factor² must be a whole number >= 1."
            )
        return MinibatchNoise(
            int(round(batch)), self.covariance, self.chunk_size, self.sign_samples, self.seed
        )

    def examples_per_grad(self, problem):
        return self.batch_size
