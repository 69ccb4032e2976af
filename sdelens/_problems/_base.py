"""The problem interface: a loss `f: ℝᵈ → ℝ` and the gradient noise the optimizer sees."""

import abc
import warnings

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _check
from .._noise import AbstractNoise

__all__ = ["AbstractProblem"]


class AbstractProblem(eqx.Module):
    """A loss `f` and a noise model; the optimizer sees `g(x) = noise.stochastic_grad(problem,
    x, key)` (`∇f(x) + Z` for additive noise). Problems hold the loss and its data; what the
    noise means at a point is the noise model's business (`sdelens.AbstractNoise`)."""

    noise: eqx.AbstractVar[AbstractNoise]
    name: eqx.AbstractVar[str]

    def __check_init__(self):
        if not isinstance(self.noise, AbstractNoise):
            raise ValueError(
                f"noise={self.noise!r} is invalid: a noise model (e.g. sl.GaussianNoise) is "
                "required."
            )
        self.noise.check_problem(self)

    @abc.abstractmethod
    def loss(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        """`f(x)`."""

    @abc.abstractmethod
    def grad(self, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """`∇f(x)`."""

    @property
    @abc.abstractmethod
    def dim(self) -> int | None:
        """The parameter dimension `d` if the problem fixes it, else None."""

    @property
    @abc.abstractmethod
    def n_examples(self) -> int | None:
        """Training examples the loss averages over (None for a closed-form loss)."""

    @abc.abstractmethod
    def with_noise(self, noise: AbstractNoise) -> "AbstractProblem":
        """The same loss with another noise model (validated like a new problem)."""

    def stochastic_grad(self, x: Float[Array, " d"], key: PRNGKeyArray) -> Float[Array, " d"]:
        """One stochastic gradient (what the discrete optimizer sees at `x`)."""
        return self.noise.stochastic_grad(self, x, key)

    def stochastic_grad_from_normals(
        self, x: Float[Array, " d"], xi: Float[Array, "..."]
    ) -> Float[Array, " d"]:
        """The stochastic gradient at `x` as a function of standard normals `ξ` of shape
        `noise.normals_shape(problem, x)` (how `run_optimizer` draws it)."""
        return self.noise.stochastic_grad_from_normals(self, x, xi)

    def check_x0(self, x0) -> Float[Array, "n d"] | Float[Array, " d"]:
        """Validate a start point: shape `(d,)` or `(n, d)`, finite, matching the problem."""
        x0 = jnp.asarray(x0, dtype=jnp.result_type(float))
        if x0.ndim not in (1, 2) or x0.shape[-1] == 0:
            raise ValueError(f"x0 has shape {x0.shape}: (d,) or (n_paths, d) is required.")
        d = x0.shape[-1]
        for name, want in (("problem", self.dim), ("noise", self.noise.dim)):
            if want is not None and want != d:
                raise ValueError(
                    f"x0 has dimension d={d} (shape {x0.shape}) but the {name} has d={want}."
                )
        if _check.is_concrete(x0) and not np.all(np.isfinite(np.asarray(x0))):
            raise ValueError("x0 has non-finite entries: a finite start point is required.")
        return x0

    # -- deprecated (0.1): the noise at a point is the noise model's business -----------------

    def _deprecated(self, old: str, new: str):
        warnings.warn(
            f"problem.{old}(x) is deprecated and will be removed in the next release: use "
            f"problem.noise.{new}(problem, x).",
            DeprecationWarning,
            stacklevel=3,
        )
        return getattr(self.noise, new)

    def noise_cov_sqrt(self, x):
        """Deprecated: `problem.noise.cov_sqrt_at(problem, x)`."""
        return self._deprecated("noise_cov_sqrt", "cov_sqrt_at")(self, x)

    def noise_variance(self, x):
        """Deprecated: `problem.noise.variance_at(problem, x)`."""
        return self._deprecated("noise_variance", "variance_at")(self, x)

    def sign_mean(self, x):
        """Deprecated: `problem.noise.sign_mean_at(problem, x)`."""
        return self._deprecated("sign_mean", "sign_mean_at")(self, x)

    def sign_cov_sqrt(self, x):
        """Deprecated: `problem.noise.sign_cov_sqrt_at(problem, x)`."""
        return self._deprecated("sign_cov_sqrt", "sign_cov_sqrt_at")(self, x)
