"""Problems: a loss `f: ℝᵈ → ℝ` and a gradient-noise model."""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from . import _check
from ._noise import AbstractNoise

__all__ = ["AbstractProblem", "Quadratic", "Problem"]


class AbstractProblem(eqx.Module):
    """A loss `f` with stochastic gradients `g(x) = ∇f(x) + Z`, `Z` from `noise`."""

    noise: eqx.AbstractVar[AbstractNoise]

    @abc.abstractmethod
    def loss(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        """`f(x)`."""

    @property
    @abc.abstractmethod
    def dim(self) -> int | None:
        """The parameter dimension `d` if the problem fixes it, else None."""

    def grad(self, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """`∇f(x)` by reverse-mode autodiff."""
        return jax.grad(self.loss)(x)

    def stochastic_grad(self, x: Float[Array, " d"], key: PRNGKeyArray) -> Float[Array, " d"]:
        """One noisy gradient `∇f(x) + Z` (what the discrete optimizer sees)."""
        return self.grad(x) + self.noise.sample(key, x.shape)

    # What the SDEs ask of the gradient noise at a point `x`. Additive noise does not depend on
    # `x`; problems whose noise does (minibatch noise of a network) override these.

    def noise_cov_sqrt(self, x: Float[Array, " d"]) -> lx.AbstractLinearOperator:
        """`Σ(x)^{1/2}`, a square root of the gradient-noise covariance at `x`."""
        return self.noise.cov_sqrt(x.shape[0])

    def noise_variance(self, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """`diag Σ(x)`, the per-coordinate gradient-noise variance (what `v` averages)."""
        root = self.noise_cov_sqrt(x)
        if isinstance(root, lx.DiagonalLinearOperator):
            return root.diagonal**2
        return jnp.sum(root.as_matrix() ** 2, axis=1)

    def sign_mean(self, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """`E[sign g(x)]`, the SignSGD SDE's drift (up to sign)."""
        return self.noise.sign_mean(self.grad(x))

    def sign_cov_sqrt(self, x: Float[Array, " d"]) -> lx.AbstractLinearOperator:
        """A square root of `Cov(sign g(x))`, the SignSGD SDE's `Σ̄^{1/2}`."""
        return self.noise.sign_cov_sqrt(self.grad(x))

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


class Quadratic(AbstractProblem):
    """`f(x) = ½ (x - x*)ᵀ H (x - x*)` with `H` diagonal (`h` a vector) or SPD (`h` a matrix).

    The model problem of the stationary theory (MATH.md §5). `minimum` defaults to 0.
    """

    h: Float[Array, "..."] = eqx.field(converter=jnp.asarray)
    noise: AbstractNoise
    minimum: Float[Array, " d"] | None = None

    def __check_init__(self):
        if self.h.ndim == 1:
            _check.positive_finite("h", self.h)
        elif self.h.ndim == 2:
            _check.spd_matrix("h", self.h)
        else:
            raise ValueError(
                f"h has shape {self.h.shape}: a vector (diagonal of H) or an SPD matrix "
                "is required."
            )
        d = self.h.shape[0]
        if self.noise.dim is not None and self.noise.dim != d:
            raise ValueError(f"noise has dimension {self.noise.dim} but h has dimension {d}.")
        if self.minimum is not None and jnp.shape(self.minimum) != (d,):
            raise ValueError(f"minimum has shape {jnp.shape(self.minimum)}: ({d},) is required.")

    @property
    def dim(self) -> int:
        return self.h.shape[0]

    @property
    def hessian(self) -> Float[Array, "d d"]:
        """`H` as a dense matrix."""
        return jnp.diag(self.h) if self.h.ndim == 1 else self.h

    @property
    def x_star(self) -> Float[Array, " d"]:
        """The minimiser `x*`."""
        return jnp.zeros(self.dim) if self.minimum is None else jnp.asarray(self.minimum)

    def loss(self, x):
        r = x - self.x_star
        hr = self.h * r if self.h.ndim == 1 else self.h @ r
        return 0.5 * jnp.dot(r, hr)

    def grad(self, x):
        r = x - self.x_star
        return self.h * r if self.h.ndim == 1 else self.h @ r


class Problem(AbstractProblem):
    """Any JAX scalar loss `loss(x)` of a vector `x`, with additive gradient noise.

    `dim` may be given to fix `d`; otherwise it comes from the noise (vector scale) or `x0`.
    """

    loss_fn: Callable[[Float[Array, " d"]], Float[Array, ""]] = eqx.field(static=True)
    noise: AbstractNoise
    fixed_dim: int | None = eqx.field(static=True, default=None)

    def __init__(self, loss: Callable, noise: AbstractNoise, dim: int | None = None):
        if not callable(loss):
            raise ValueError(f"loss={loss!r} is invalid: a callable x -> scalar is required.")
        if not isinstance(noise, AbstractNoise):
            raise ValueError(f"noise={noise!r} is invalid: a noise model (e.g. GaussianNoise).")
        if dim is not None:
            dim = _check.positive_int("dim", dim)
            if noise.dim is not None and noise.dim != dim:
                raise ValueError(f"noise has dimension {noise.dim} but dim={dim}.")
        self.loss_fn = loss
        self.noise = noise
        self.fixed_dim = dim

    @property
    def dim(self) -> int | None:
        return self.fixed_dim if self.fixed_dim is not None else self.noise.dim

    def loss(self, x):
        return self.loss_fn(x)
