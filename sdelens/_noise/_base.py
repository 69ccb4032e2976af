"""The noise-model interface.

A stochastic gradient is `g(x) = ∇f(x) + Z(x)`. A noise model does two jobs: it draws `g` for
the discrete optimizer, and it gives the SDEs the moments they need at a point `x` — for SGD
and the adaptive methods the covariance `Σ(x)` (its square root and its diagonal), for SignSGD
`E[sign g(x)]` and `Cov(sign g(x))` (docs/math.md §1-§3, §9). Every such method takes the problem
and the point, because some noise depends on both (the minibatch noise of a network).
"""

from __future__ import annotations

import abc
from typing import ClassVar, Protocol

import equinox as eqx
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _check

__all__ = ["AbstractNoise", "AbstractAdditiveNoise"]


class ProblemLike(Protocol):
    """What a noise model asks of a problem (`sdelens.AbstractProblem` provides it)."""

    @property
    def dim(self) -> int | None: ...

    @property
    def n_examples(self) -> int | None: ...

    def grad(self, x: Float[Array, " d"]) -> Float[Array, " d"]: ...


class AbstractNoise(eqx.Module):
    """Gradient noise: how the optimizer's stochastic gradient is drawn at a point and the
    moments of it that the SDEs need there."""

    keyed_unless_coupled: ClassVar[bool] = False
    """Whether an optimizer run that is not coupled draws this noise from its key
    (`stochastic_grad`, the same law) instead of from normals: for noise whose map from
    normals costs far more than a direct draw (Student-t's quantile, a few incomplete-beta
    Newton steps per number), which only coupled runs need."""

    @property
    @abc.abstractmethod
    def dim(self) -> int | None:
        """The dimension the noise is tied to, or None when it fits any `d`."""

    @property
    @abc.abstractmethod
    def has_finite_variance(self) -> bool:
        """Whether `Cov Z` exists (the SDEs of SGD, RMSprop, Adam and Entropy-SGD need it)."""

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """A short description for manifests and messages, e.g. `"StudentTNoise(df=1.5)"`."""

    @abc.abstractmethod
    def check_problem(self, problem: ProblemLike) -> None:
        """Raise a ValueError if this noise cannot be used with `problem`."""

    @abc.abstractmethod
    def stochastic_grad(
        self, problem: ProblemLike, x: Float[Array, " d"], key: PRNGKeyArray
    ) -> Float[Array, " d"]:
        """One stochastic gradient `g(x)`: what the discrete optimizer sees."""

    @abc.abstractmethod
    def normals_shape(self, problem: ProblemLike, x: Float[Array, " d"]) -> tuple[int, ...] | None:
        """The shape of the standard normals `ξ` one stochastic gradient is a function of
        (`stochastic_grad_from_normals`), or None for noise that is drawn from a key only.

        The discrete optimizer draws its noise this way, from the same counter-based stream as
        the SDE's Brownian paths, which is what lets the two be driven by the same numbers
        (coupled runs, docs/math.md §13)."""

    @abc.abstractmethod
    def stochastic_grad_from_normals(
        self, problem: ProblemLike, x: Float[Array, " d"], xi: Float[Array, "..."]
    ) -> Float[Array, " d"]:
        """The stochastic gradient `g(x)` as a function of standard normals `ξ` of shape
        `normals_shape(problem, x)`, increasing in `ξ` in the sense of the model (a monotone,
        comonotone map: the noise moves with `ξ`)."""

    @abc.abstractmethod
    def cov_sqrt_at(self, problem: ProblemLike, x: Float[Array, " d"]) -> lx.AbstractLinearOperator:
        """`Σ(x)^{1/2}`, a square root of the gradient-noise covariance at `x` (its input is the
        driving Brownian motion of the SDE)."""

    @abc.abstractmethod
    def variance_at(self, problem: ProblemLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """`diag Σ(x)`, the per-coordinate variance (what RMSprop's and Adam's `v` average)."""

    @abc.abstractmethod
    def sign_mean_at(self, problem: ProblemLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """`E[sign g(x)]` componentwise: minus the SignSGD SDE's drift."""

    @abc.abstractmethod
    def sign_cov_sqrt_at(
        self, problem: ProblemLike, x: Float[Array, " d"]
    ) -> lx.AbstractLinearOperator:
        """A square root of `Cov(sign g(x))`: the SignSGD SDE's `Σ̄^{1/2}`."""

    @abc.abstractmethod
    def scaled(self, factor: float) -> "AbstractNoise":
        """The same kind of noise with `Z` multiplied by `factor` (`1/√κ` for a `κ` times larger
        batch, docs/math.md §6)."""

    @abc.abstractmethod
    def examples_per_grad(self, problem: ProblemLike) -> int | None:
        """Training examples one stochastic gradient reads (None if the problem has none)."""

    def require_finite_variance(self, what: str) -> None:
        """Refuse to build a model that needs `Σ` (the SDE of `what`) on infinite-variance noise."""
        if not self.has_finite_variance:
            raise ValueError(
                f"The {what} SDE does not exist for {self.label} with infinite variance: it "
                "needs the noise covariance Σ. SignSGD's SDE exists for any Student-t df > 0: "
                "use SignSGD."
            )


class AbstractAdditiveNoise(AbstractNoise):
    """Noise `Z` independent of the iterate, added to the exact gradient: `g = ∇f(x) + Z`.

    Its SDE moments are functions of `∇f(x)` alone; concrete models give them as functions of
    the gradient (`sign_mean(grad)`, ...), which is also how they are checked against their
    closed forms.
    """

    @property
    @abc.abstractmethod
    def is_diagonal(self) -> bool:
        """Whether the coordinates of `Z` are independent."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, "..."]:
        """One draw of `Z` with the given shape."""

    @abc.abstractmethod
    def from_normals(self, xi: Float[Array, " d"]) -> Float[Array, " d"]:
        """`Z` as a monotone function of standard normals `ξ` of the shape of `x` (the map
        `stochastic_grad_from_normals` adds to `∇f`); NotImplementedError for a noise drawn
        from a key only."""

    @abc.abstractmethod
    def cov_sqrt(self, d: int) -> lx.AbstractLinearOperator:
        """`Σ^{1/2}` (raises a ValueError for infinite variance or an unknown covariance)."""

    @abc.abstractmethod
    def sign_mean(self, grad: Float[Array, " d"]) -> Float[Array, " d"]:
        """`E[sign(grad + Z)]`, componentwise (`= 1 - 2 P[g < 0]`)."""

    @abc.abstractmethod
    def sign_cov(self, grad: Float[Array, " d"]) -> Float[Array, "d d"]:
        """`Cov(sign(grad + Z)) = E[s sᵀ] - E s E sᵀ` as a dense matrix."""

    @abc.abstractmethod
    def sign_cov_sqrt(self, grad: Float[Array, " d"]) -> lx.AbstractLinearOperator:
        """A square root of `Cov(sign(grad + Z))`."""

    @abc.abstractmethod
    def phase3_slope(self) -> float:
        """`c` in `E[sign g] ≈ c ∇f / w` near `∇f = 0` (docs/math.md §3)."""

    @abc.abstractmethod
    def sign_width(self, d: int) -> Float[Array, " d"]:
        """The per-coordinate width `w` of that linearisation (Gaussian: the std; Student-t: the
        scale), which also sets the SignSGD phases."""

    def sign_noise_moment(self, grad: Float[Array, " d"]) -> Float[Array, " d"]:
        """`E[sign(grad + Z) Z]` componentwise (`= Cov(sign(grad + Z), Z)`, as `E Z = 0`): how
        the sign of a gradient moves with its noise, which Lion's SDE needs for the covariance
        of its `x` and `m` increments (docs/math.md §11.1). Closed forms for diagonal
        `GaussianNoise` and `StudentTNoise`; other models raise NotImplementedError."""
        raise NotImplementedError(
            f"{self.label} has no closed form for E[sign(g) Z] (the Lion SDE needs it, per "
            "coordinate, with independent coordinates): use form='moments'."
        )

    def check_problem(self, problem: ProblemLike) -> None:
        if self.dim is not None and problem.dim is not None and self.dim != problem.dim:
            raise ValueError(
                f"noise has dimension {self.dim} but the problem has dimension {problem.dim}."
            )

    def stochastic_grad(self, problem, x, key):
        return problem.grad(x) + self.sample(key, x.shape)

    def stochastic_grad_from_normals(self, problem, x, xi):
        return problem.grad(x) + self.from_normals(xi)

    def cov_sqrt_at(self, problem, x):
        return self.cov_sqrt(x.shape[0])

    def variance_at(self, problem, x):
        root = self.cov_sqrt(x.shape[0])
        if isinstance(root, lx.DiagonalLinearOperator):
            return root.diagonal**2
        return jnp.sum(root.as_matrix() ** 2, axis=1)

    def sign_mean_at(self, problem, x):
        return self.sign_mean(problem.grad(x))

    def sign_cov_sqrt_at(self, problem, x):
        return self.sign_cov_sqrt(problem.grad(x))

    def examples_per_grad(self, problem):
        return problem.n_examples  # the exact gradient reads the whole training set


def check_scale(name: str, scale, *, allow_matrix: bool) -> None:
    """A scalar or vector of positive finite stds, or (if allowed) a square matrix `S` whose
    `S Sᵀ` is positive definite."""
    ndim = jnp.ndim(scale)
    if ndim > (2 if allow_matrix else 1):
        allowed = "a scalar, a vector or a square matrix" if allow_matrix else "a scalar or vector"
        raise ValueError(f"{name} has shape {jnp.shape(scale)}: it must be {allowed}.")
    if not _check.is_concrete(scale):
        return
    arr = np.asarray(scale)
    if ndim == 2:
        if arr.shape[0] != arr.shape[1]:
            raise ValueError(f"{name} has shape {arr.shape}: a matrix scale must be square (d, d).")
        _check.spd_matrix(f"{name} @ {name}.T (the noise covariance)", arr @ arr.T)
    else:
        _check.positive_finite(name, arr)
