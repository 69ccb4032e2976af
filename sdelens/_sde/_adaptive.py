"""SDEs of RMSprop(W) and Adam(W) (Compagnoni et al. 2025, §3.2-3.3; Malladi et al. 2022;
docs/math.md §4).

The state is the optimizer's: `RMSpropState(x, v)`, `AdamState(x, m, v)`. Clock `t = k η`,
`ρ = (1 - β)/η`.

**The start.** The optimizer starts at `m₀ = v₀ = 0` and its step `k` already uses the updated
`m_{k+1}, v_{k+1}`. The SDE does the same: its `X` equation uses the one-step-ahead averages
`M⁺ = M + ηρ₁(∇f - M)` and `V⁺ = V + ηρ₂(∇f² + diag Σ - V)` (an `O(η)` change, so the weak order
is kept), and Adam's bias-correction factors are the discrete ones, `ιᵢ = 1 - βᵢ^{t/η + 1}`
(`= 1 - e^{-ρᵢ t} + O(η)`). The SDE therefore starts from the optimizer's own state `(x₀, 0, 0)`
with no singularity: at `t = 0`, `V = 0` but `V⁺ = (1-β₂) E g² > 0`.
"""

import abc
from typing import ClassVar, final

import equinox as eqx
import jax.numpy as jnp

from .._noise import MinibatchNoise
from .._optimizers import Adam, AdamState, RMSprop, RMSpropState
from .._problems import AbstractProblem
from ._base import AbstractOwnStateSDE, embed_noise
from ._euler import combine_increment

__all__ = ["RMSpropSDE", "RMSpropMalladiSDE", "AdamSDE", "AdamMalladiSDE"]


class AbstractAdaptiveSDE(AbstractOwnStateSDE):
    """What RMSprop's and Adam's SDEs share: `V` relaxes to `∇f² + diag Σ` (Compagnoni et
    al.'s form) or to `diag Σ` (Malladi et al.'s, `includes_grad_squared = False`)."""

    includes_grad_squared: eqx.AbstractClassVar[bool]

    def __check_init__(self):
        self.problem.noise.require_finite_variance(type(self.optimizer).__name__)

    def _grad_and_target(self, x):
        noise = self.problem.noise
        if isinstance(noise, MinibatchNoise):  # both from one pass of per-example gradients
            grad, variance = noise.grad_and_variance(self.problem, x)
        else:
            grad, variance = self.problem.grad(x), noise.variance_at(self.problem, x)
        return grad, grad**2 + variance if self.includes_grad_squared else variance

    @abc.abstractmethod
    def _coefficients(self, t, y) -> tuple:
        """`(drift, diffusion)` at `(t, y)`, sharing the gradient (under jit the half not
        asked for is dropped)."""

    def _increment(self, t, y, args, dt, dw):
        """`b dt + G dW` with the gradient and `V`'s target computed once for both
        (`_euler.EulerIncrementTerm`; drift and diffusion each need them)."""
        return combine_increment(*self._coefficients(t, y), dt, dw)

    def drift(self, t, y, args):
        return self._coefficients(t, y)[0]

    def diffusion(self, t, y, args):
        return self._coefficients(t, y)[1]


class AbstractRMSpropSDE(AbstractAdaptiveSDE):
    """RMSprop(W):

    `dX = -P⁻¹ (∇f dt + √η Σ^{1/2} dW) - θ X dt`,  `dV = ρ (∇f² + diag Σ - V) dt`,
    `P = diag(√V⁺) + ε I`, `V⁺ = V + ηρ (∇f² + diag Σ - V)` (see the module docstring).
    """

    optimizer: RMSprop
    problem: AbstractProblem
    optimizer_type: ClassVar[type] = RMSprop

    @property
    def coupling_sign(self) -> int | None:
        return -1  # x: +√η P⁻¹ Σ^{1/2} dW, the optimizer: -η g/(√v + ε)

    def rest_state(self, x):
        return RMSpropState(x, self._grad_and_target(x)[1])

    def _coefficients(self, t, y: RMSpropState):
        grad, target = self._grad_and_target(y.x)
        v_ahead = y.v + (1.0 - self.optimizer.beta) * (target - y.v)
        p = jnp.sqrt(jnp.clip(v_ahead, 0.0)) + self.optimizer.eps
        rho = (1.0 - self.optimizer.beta) / self.lr
        dx = -grad / p - self.optimizer.weight_decay * y.x
        root = self.problem.noise.cov_sqrt_at(self.problem, y.x)
        return RMSpropState(dx, rho * (target - y.v)), embed_noise(root, y, x=jnp.sqrt(self.lr) / p)


@final
class RMSpropSDE(AbstractRMSpropSDE):
    """RMSprop(W) SDE in the Compagnoni et al. (2025) form: `V` tracks `∇f² + diag Σ`."""

    includes_grad_squared: ClassVar[bool] = True
    form: ClassVar[str] = "default"


@final
class RMSpropMalladiSDE(AbstractRMSpropSDE):
    """RMSprop(W) SDE in the Malladi et al. (2022) form: `dV = ρ (diag Σ - V) dt`.

    Malladi et al. scale time as `t = k η²` with `1 - β = c η²` and noise of size `σ/η`, in
    which `∇f²` is of lower order than `diag Σ` in `dV`. On the common clock `t = k η` and the
    same optimizer run, that is the only difference from the default form.
    """

    includes_grad_squared: ClassVar[bool] = False
    form: ClassVar[str] = "malladi"


class AbstractAdamSDE(AbstractAdaptiveSDE):
    """Adam(W) with bias correction:

    `dX = -(√ι₂/ι₁) P⁻¹ (M⁺ dt + η √η ρ₁ Σ^{1/2} dW) - θ X dt`,
    `dM = ρ₁(∇f - M) dt + √η ρ₁ Σ^{1/2} dW`,  `dV = ρ₂(∇f² + diag Σ - V) dt`,
    `P = diag(√V⁺) + ε √ι₂ I`, with `M⁺, V⁺` the one-step-ahead averages and
    `ιᵢ = 1 - βᵢ^{t/η+1}` (module docstring).

    **The X noise term** `η √η ρ₁ Σ^{1/2} dW` (the same `dW` as `M`'s) is the noise share of
    `m_{k+1}`, which the optimizer applies in the step that draws it. It is `O(η^{3/2})` and
    the published form drops it, but at finite `η` that lowers the stationary variance by a
    factor `≈ β₁²` (measured 0.81 at `β₁ = 0.9`, `η = 0.01`); with it the SDE matches the
    optimizer.
    """

    optimizer: Adam
    problem: AbstractProblem
    optimizer_type: ClassVar[type] = Adam

    @property
    def coupling_sign(self) -> int | None:
        return 1  # m: +ρ₁√η Σ^{1/2} dW, as the optimizer's m moves with Z

    def rest_state(self, x):
        grad, target = self._grad_and_target(x)
        return AdamState(x, grad, target)

    def _step_factor(self, t, y: AdamState):
        """`(∇f, target, (√ι₂/ι₁) P⁻¹)`: what the X equation multiplies `M⁺` by."""
        opt = self.optimizer
        grad, target = self._grad_and_target(y.x)
        k = t / self.lr + 1.0
        iota1, iota2 = 1.0 - opt.beta1**k, 1.0 - opt.beta2**k
        v_ahead = y.v + (1.0 - opt.beta2) * (target - y.v)
        p = jnp.sqrt(jnp.clip(v_ahead, 0.0)) + opt.eps * jnp.sqrt(iota2)
        return grad, target, jnp.sqrt(iota2) / (iota1 * p)

    def _coefficients(self, t, y: AdamState):
        opt = self.optimizer
        grad, target, factor = self._step_factor(t, y)
        m_ahead = y.m + (1.0 - opt.beta1) * (grad - y.m)
        rho1, rho2 = (1.0 - opt.beta1) / self.lr, (1.0 - opt.beta2) / self.lr
        dx = -factor * m_ahead - opt.weight_decay * y.x
        drift = AdamState(dx, rho1 * (grad - y.m), rho2 * (target - y.v))
        m_kick = jnp.sqrt(self.lr) * (1.0 - opt.beta1) / self.lr
        root = self.problem.noise.cov_sqrt_at(self.problem, y.x)
        # m_{k+1} already holds step k's noise, so x moves with it in the same step.
        return drift, embed_noise(root, y, x=-factor * self.lr * m_kick, m=m_kick)


@final
class AdamSDE(AbstractAdamSDE):
    """Adam(W) SDE in the Compagnoni et al. (2025) form: `V` tracks `∇f² + diag Σ`."""

    includes_grad_squared: ClassVar[bool] = True
    form: ClassVar[str] = "default"


@final
class AdamMalladiSDE(AbstractAdamSDE):
    """Adam(W) SDE in the Malladi et al. (2022) form: `dV = ρ₂ (diag Σ - V) dt` (no `∇f²`)."""

    includes_grad_squared: ClassVar[bool] = False
    form: ClassVar[str] = "malladi"
