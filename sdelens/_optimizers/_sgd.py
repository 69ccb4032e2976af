"""SGD (with optional heavy-ball or Nesterov momentum) and SignSGD."""

from typing import ClassVar, NamedTuple, final

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from .. import _check
from .._linalg import discrete_lyapunov, lyapunov
from .._noise import AbstractAdditiveNoise
from ._base import AbstractOptimizer, ParamState, require_quadratic

__all__ = ["SGD", "SignSGD", "MomentumState"]


class MomentumState(NamedTuple):
    """The state of SGD with momentum: parameters `x` and the velocity `m` (optax's trace,
    `m ← β m + g`)."""

    x: Float[Array, " d"]
    m: Float[Array, " d"]


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
    """SGD, `x ← x - η g(x)`, with optional heavy-ball or Nesterov momentum `β`: exactly
    `optax.sgd(lr, momentum, nesterov)`, i.e. `m ← β m + g`, `x ← x - η m` (Nesterov:
    `x ← x - η (g + β m)` with the updated `m`), `m₀ = 0`.

    SDE (Li, Tai & E 2019; docs/math.md §2): `dX = -∇f(X) dt + √η Σ^{1/2} dW`. With momentum
    (docs/math.md §11.2) the family keeps `β` **fixed** as `η → 0` (`decay_names = ()`): `m`
    settles near `g/(1-β)` within `O(1/(1-β))` steps, and the SDE is SGD's at the effective
    learning rate `η/(1-β)` (heavy ball and, to leading order, Nesterov). The batch-size rule
    stays linear (`η/B` fixed at fixed `β`).

    The state is `ParamState(x)` without momentum (`momentum == 0`, also with
    `nesterov=True`, which is then plain SGD) and `MomentumState(x, m)` with it.
    """

    lr: float = eqx.field(converter=_check.number("lr"))
    # Static: momentum 0 or not changes the state (`ParamState` or `MomentumState`).
    momentum: float = eqx.field(converter=_check.number("momentum"), default=0.0, static=True)
    nesterov: bool = eqx.field(static=True, default=False)
    scaling_rules: ClassVar[tuple[str, ...]] = ("linear",)

    def __check_init__(self):
        _check.in_interval("momentum", self.momentum, 0.0, 1.0)
        if not isinstance(self.nesterov, bool):
            raise ValueError(f"nesterov={self.nesterov!r} is invalid: True or False is required.")

    def to_optax(self) -> optax.GradientTransformation:
        if self.momentum == 0:
            return optax.sgd(self.lr)
        return optax.sgd(self.lr, momentum=self.momentum, nesterov=self.nesterov)

    @property
    def name(self) -> str:
        return "sgd"

    def initial_state(self, x0):
        if self.momentum == 0:
            return ParamState(x0)
        return MomentumState(x0, jnp.zeros_like(x0))

    def state(self, x, opt_state):
        if self.momentum == 0:
            return ParamState(x)
        return MomentumState(x, opt_state[0].trace)

    def stationary_cov(self, problem):
        """Without momentum: solves `H C + C H = η Σ`; diagonal `H` and `Σ`:
        `C = (η/2) H⁻¹ Σ`, `E f = (η/4) tr Σ` (docs/math.md §5). The discrete SGD has a
        stationary law only if `η λ_max(H) < 2`.

        With momentum: the **exact** stationary covariance of the discrete recursion, which is
        linear on a quadratic (docs/math.md §11.2). With `e = x - x*`, one heavy-ball step is
        `(e, m) ← A (e, m) + (-η, 1) Z` with `A = [[I - ηH, -ηβ I], [H, β I]]`; Nesterov has
        `A = [[I - η(1+β)H, -ηβ² I], [H, β I]]` and noise `(-η(1+β), 1) Z`. `C = A C Aᵀ + Q`
        (`discrete_lyapunov`), the `x` block returned. Stable iff `η λ_max < 2(1+β)` (heavy
        ball) or `η λ_max < 2(1+β)/(1+2β)` (Nesterov). To leading order it is
        `(η/(2(1-β))) H⁻¹ Σ`, the effective-learning-rate SDE's law.
        """
        quadratic = require_quadratic(self, problem)
        noise = _additive(self, quadratic)
        if not noise.has_finite_variance:
            raise ValueError(
                f"SGD has no stationary law under {noise.label}: its variance is infinite."
            )
        hess = np.asarray(quadratic.hessian, dtype=float)
        top = float(quadratic.curvatures[-1])
        if self.momentum > 0:
            return self._momentum_stationary_cov(quadratic, noise, hess, top)
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

    def _momentum_stationary_cov(self, quadratic, noise, hess, top):
        beta, eta, d = self.momentum, self.lr, quadratic.dim
        eye = np.eye(d)
        if self.nesterov:  # x ← x - η((1+β) g + β² m_old)
            limit, rule = 2 * (1 + beta) / (1 + 2 * beta), "2(1+β)/(1+2β)"
            gain, carry = 1 + beta, beta**2
        else:  # x ← x - η(g + β m_old)
            limit, rule, gain, carry = 2 * (1 + beta), "2(1+β)", 1.0, beta
        a = np.block([[eye - eta * gain * hess, -eta * carry * eye], [hess, beta * eye]])
        if eta * top >= limit:
            kind = "Nesterov" if self.nesterov else "heavy-ball"
            raise ValueError(
                f"lr={eta:g} is too large for a stationary law: {kind} SGD with momentum={beta:g} "
                f"diverges on this quadratic when lr · h_max >= {rule} (h_max = {top:.4g}, lr "
                f"must be < {limit / top:.4g})."
            )
        root = np.asarray(noise.cov_sqrt(d).as_matrix(), dtype=float)
        sigma = root @ root.T
        kick = np.concatenate([-eta * gain * eye, eye])
        q = kick @ sigma @ kick.T
        return discrete_lyapunov(a, q)[:d, :d], "discrete lyapunov (exact for the optimizer)"


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
