"""Quadratic losses: the model problem of the stationary theory."""

from __future__ import annotations

from typing import final

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .. import _check
from .._noise import AbstractNoise, GaussianNoise, StudentTNoise
from ._base import AbstractProblem

__all__ = ["Quadratic", "NOISE_KINDS"]

NOISE_KINDS = ("gaussian", "student-t")


@final
class Quadratic(AbstractProblem):
    """`f(x) = ½ (x - x*)ᵀ H (x - x*)` with `H` diagonal (`h` a vector) or SPD (`h` a matrix).

    The model problem of the stationary theory (docs/math.md §5). `minimum` defaults to 0.
    `Quadratic.standard(...)` is the test problem of the command line, benchmarks and notebooks.
    """

    h: Float[Array, "..."] = eqx.field(converter=_check.array("h"))
    noise: AbstractNoise
    minimum: Float[Array, " d"] | None = eqx.field(
        default=None, converter=_check.array("minimum", optional=True)
    )

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
        if self.minimum is not None and jnp.shape(self.minimum) != (d,):
            raise ValueError(
                f"minimum={_check.short(self.minimum)} is invalid: shape ({d},) is required, "
                f"not {jnp.shape(self.minimum)}."
            )
        if self.minimum is not None:
            _check.finite("minimum", self.minimum)

    @classmethod
    def standard(
        cls,
        dim: int = 3,
        cond: float = 4.0,
        scale: float = 1.0,
        *,
        noise: str = "gaussian",
        df: float = 3.0,
    ) -> Quadratic:
        """The standard test quadratic: `h = linspace(1, cond, d)` and noise whose scale grows
        over the coordinates like the curvature, `s = scale · linspace(1, 2, d)` (Gaussian std,
        or Student-t scale with `df` degrees of freedom; `noise="gaussian"` or `"student-t"`)."""
        dim = _check.positive_int("dim", dim)
        _check.positive_finite("scale", scale)
        if not (_check.is_concrete(cond) and float(cond) >= 1.0):
            raise ValueError(f"cond={cond!r} is invalid: the condition number must be >= 1.")
        _check.choice("noise", noise, NOISE_KINDS)
        spread = jnp.linspace(1.0, 2.0, dim) if dim > 1 else jnp.ones(1)
        if noise == "gaussian":
            model = GaussianNoise(scale=scale * spread)
        else:
            model = StudentTNoise(df=df, scale=scale * spread)
        return cls(h=jnp.linspace(1.0, float(cond), dim), noise=model)

    @property
    def name(self) -> str:
        return "quadratic"

    @property
    def dim(self) -> int:
        return self.h.shape[0]

    @property
    def n_examples(self) -> None:
        return None

    @property
    def hessian(self) -> Float[Array, "d d"]:
        """`H` as a dense matrix."""
        return jnp.diag(self.h) if self.h.ndim == 1 else self.h

    @property
    def curvatures(self) -> np.ndarray:
        """The eigenvalues of `H`, ascending (numpy, float64)."""
        h = np.asarray(self.h, dtype=float)
        return np.sort(h) if h.ndim == 1 else np.linalg.eigvalsh(h)

    @property
    def x_star(self) -> Float[Array, " d"]:
        """The minimiser `x*`."""
        return jnp.zeros(self.dim) if self.minimum is None else jnp.asarray(self.minimum)

    def loss(self, x):
        r = x - self.x_star
        return 0.5 * jnp.dot(r, self.grad(x))

    def grad(self, x):
        r = x - self.x_star
        return self.h * r if self.h.ndim == 1 else self.h @ r

    def with_noise(self, noise):
        return Quadratic(h=self.h, noise=noise, minimum=self.minimum)
