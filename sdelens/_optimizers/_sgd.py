"""Optimizers without memory: SGD and SignSGD."""

from typing import ClassVar, final

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optax

from .. import _check
from .._linalg import lyapunov
from .._noise import AbstractAdditiveNoise
from ._base import AbstractOptimizer, ParamState, require_quadratic

__all__ = ["SGD", "SignSGD"]


class AbstractStatelessOptimizer(AbstractOptimizer):
    """An optimizer whose only state is the parameters: `x ← x - η u(g)`."""

    lr: eqx.AbstractVar[float]
    decay_names: ClassVar[tuple[str, ...]] = ()
    coordinatewise: ClassVar[bool] = True

    def __check_init__(self):
        _check.positive_finite("lr", self.lr, scalar=True)

    @property
    def name(self) -> str:
        return type(self).__name__.lower()

    @property
    def weight_decay(self) -> float:
        return 0.0

    @property
    def grads_per_step(self) -> int:
        return 1

    def initial_state(self, x0):
        return ParamState(x0)

    def state(self, x, opt_state):
        return ParamState(x)

    def default_scaling_rule(self) -> str:
        return self.scaling_rules[0]


def _additive(opt, problem) -> AbstractAdditiveNoise:
    noise = problem.noise
    if not isinstance(noise, AbstractAdditiveNoise):
        raise NotImplementedError(
            f"{type(opt).__name__} has closed forms for additive noise only, not {noise.label}."
        )
    return noise


@final
class SGD(AbstractStatelessOptimizer):
    """Plain SGD, `x ← x - η g(x)` (`optax.sgd`).

    SDE (Li, Tai & E 2019; docs/math.md §2): `dX = -∇f(X) dt + √η Σ^{1/2} dW`.
    """

    lr: float = eqx.field(converter=_check.number("lr"))
    scaling_rules: ClassVar[tuple[str, ...]] = ("linear",)

    def to_optax(self) -> optax.GradientTransformation:
        return optax.sgd(self.lr)

    def stationary_cov(self, problem):
        """Solves `H C + C H = η Σ`; diagonal `H` and `Σ`: `C = (η/2) H⁻¹ Σ`, `E f = (η/4) tr Σ`
        (docs/math.md §5). The discrete SGD has a stationary law only if `η λ_max(H) < 2`."""
        quadratic = require_quadratic(self, problem)
        noise = _additive(self, quadratic)
        if not noise.has_finite_variance:
            raise ValueError(
                f"SGD has no stationary law under {noise.label}: its variance is infinite."
            )
        hess = np.asarray(quadratic.hessian, dtype=float)
        top = float(np.linalg.eigvalsh(hess).max())
        if self.lr * top >= 2.0:
            raise ValueError(
                f"lr={self.lr:g} is too large for a stationary law: SGD on this quadratic "
                f"diverges when lr · h_max >= 2 (h_max = {top:.4g}, lr must be < {2 / top:.4g})."
            )
        d = quadratic.dim
        if quadratic.h.ndim == 1 and noise.is_diagonal:
            var = np.asarray(noise.variance_at(quadratic, jnp.zeros(d)), dtype=float)
            return np.diag(self.lr * var / (2 * np.asarray(quadratic.h))), "closed form"
        sigma = np.asarray(noise.cov_sqrt(d).as_matrix(), dtype=float)
        return lyapunov(-hess, self.lr * sigma @ sigma.T), "lyapunov"


@final
class SignSGD(AbstractStatelessOptimizer):
    """SignSGD, `x ← x - η sign(g(x))` (`optax.sign_sgd`).

    SDE (Compagnoni et al. 2025, Thm 3.2; docs/math.md §3):
    `dX = -E[sign g(X)] dt + √η Σ̄(X)^{1/2} dW` with `E[sign g] = 1 - 2 P[g < 0]` and
    `Σ̄ = Cov(sign g)`.
    """

    lr: float = eqx.field(converter=_check.number("lr"))
    scaling_rules: ClassVar[tuple[str, ...]] = ("sqrt",)

    def to_optax(self) -> optax.GradientTransformation:
        return optax.sign_sgd(self.lr)

    def stationary_cov(self, problem):
        """Phase-3 linearisation (small `η`): `dX ≈ -c W⁻¹ H (X-x*) dt + √η Σ̄₀^{1/2} dW` with
        `W = diag(width)`; diagonal case `C = (η/2)(1/c) H⁻¹ W`, `E f = (η/4)(1/c) Σᵢ wᵢ`,
        `c = √(2/π)` (Gaussian, `w` the std) or `c_ν` (Student-t, `w` the scale): linear in
        the noise scale, where SGD's floor is quadratic (docs/math.md §5)."""
        quadratic = require_quadratic(self, problem)
        noise = _additive(self, quadratic)
        d = quadratic.dim
        slope = noise.phase3_slope()
        width = np.asarray(noise.sign_width(d), dtype=float)
        sign_cov = np.asarray(noise.sign_cov(jnp.zeros(d)), dtype=float)
        if quadratic.h.ndim == 1 and np.allclose(sign_cov, np.diag(np.diag(sign_cov))):
            h = np.asarray(quadratic.h, dtype=float)
            return np.diag(self.lr * width / (2 * slope * h)), "closed form"
        drift = -slope * np.asarray(quadratic.hessian, dtype=float) / width[:, None]
        return lyapunov(drift, self.lr * sign_cov), "lyapunov"
