"""SDEs of RMSprop(W) and Adam(W) (Compagnoni et al. 2025, §3.2-3.3; Malladi et al. 2022).

The state stacks the parameters and the optimizer's moving averages: `y = (x, v)` for RMSprop,
`y = (x, m, v)` for Adam, each block of size `d`. Clock `t = k η`, `ρ = (1 - β)/η`.

**The start.** The optimizer starts at `m₀ = v₀ = 0` and its step `k` already uses the updated
`m_{k+1}, v_{k+1}`. The SDE does the same: its `X` equation uses the one-step-ahead averages
`M⁺ = M + ηρ₁(∇f - M)` and `V⁺ = V + ηρ₂(∇f² + diag Σ - V)` (an `O(η)` change, so the weak order
is kept), and Adam's bias-correction factors are the discrete ones, `ιᵢ = 1 - βᵢ^{t/η + 1}`
(`= 1 - e^{-ρᵢ t} + O(η)`). The SDE therefore starts from the optimizer's own state `(x₀, 0, 0)`
with no singularity: at `t = 0`, `V = 0` but `V⁺ = (1-β₂) E g² > 0`.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from .._optimizers import Adam, RMSprop
from .._problems import AbstractProblem
from .base import (
    AbstractOptimizerSDE,
    embed_noise,
    register_sde,
    require_finite_variance,
)


class AbstractAdaptiveSDE(AbstractOptimizerSDE):
    """Common plumbing of the adaptive SDEs: a stacked state of `n_blocks` vectors of size `d`."""

    n_blocks: eqx.AbstractClassVar[int]
    includes_grad_squared: eqx.AbstractClassVar[bool]

    def __check_init__(self):
        require_finite_variance(type(self.optimizer).__name__, self.problem.noise)

    def initial_state(self, x0):
        return jnp.concatenate([x0, jnp.zeros((self.n_blocks - 1) * x0.shape[0], x0.dtype)])

    def parameters(self, y):
        return y[: y.shape[0] // self.n_blocks]

    def rest_state(self, x):
        grad = self.problem.grad(x)
        target = self.v_target(grad, self.problem.noise_variance(x))
        averages = [grad, target] if self.n_blocks == 3 else [target]
        return jnp.concatenate([x, *averages])

    def blocks(self, y):
        return jnp.reshape(y, (self.n_blocks, -1))

    def v_target(self, grad, variance):
        """What `V` relaxes to: `∇f² + diag Σ` (Compagnoni) or `diag Σ` (Malladi)."""
        return grad**2 + variance if self.includes_grad_squared else variance


class AbstractRMSpropSDE(AbstractAdaptiveSDE):
    """RMSprop(W):

    `dX = -P⁻¹ (∇f dt + √η Σ^{1/2} dW) - θ X dt`,  `dV = ρ (∇f² + diag Σ - V) dt`,
    `P = diag(√V⁺) + ε I`, `V⁺ = V + ηρ (∇f² + diag Σ - V)` (see the module docstring).
    """

    optimizer: RMSprop
    problem: AbstractProblem
    n_blocks: ClassVar[int] = 2

    def _rho(self):
        return (1.0 - self.optimizer.beta) / self.lr

    def _preconditioner(self, y):
        x, v = self.blocks(y)
        grad = self.problem.grad(x)
        target = self.v_target(grad, self.problem.noise_variance(x))
        v_ahead = v + (1.0 - self.optimizer.beta) * (target - v)
        return x, v, grad, target, jnp.sqrt(jnp.clip(v_ahead, 0.0)) + self.optimizer.eps

    def drift(self, t, y, args):
        x, v, grad, target, p = self._preconditioner(y)
        dx = -grad / p - self.optimizer.weight_decay * x
        return jnp.concatenate([dx, self._rho() * (target - v)])

    def diffusion(self, t, y, args):
        x, _, _, _, p = self._preconditioner(y)
        root = self.problem.noise_cov_sqrt(x)
        return embed_noise(root, [jnp.sqrt(self.lr) / p, None])


@register_sde(RMSprop)
class RMSpropSDE(AbstractRMSpropSDE):
    """RMSprop(W) SDE in the Compagnoni et al. (2025) form: `V` tracks `∇f² + diag Σ`."""

    includes_grad_squared: ClassVar[bool] = True


@register_sde(RMSprop, "malladi")
class RMSpropMalladiSDE(AbstractRMSpropSDE):
    """RMSprop(W) SDE in the Malladi et al. (2022) form: `dV = ρ (diag Σ - V) dt`.

    Malladi et al. scale `t = k η²`, `1 - β = c η²` and noise `σ/η`; in that regime `∇f²` is
    negligible against `diag Σ` and drops out of `dV`. Written on the clock `t = k η` for the same
    optimizer run, that is the only difference from the default form.
    """

    includes_grad_squared: ClassVar[bool] = False


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
    n_blocks: ClassVar[int] = 3

    def _rhos(self):
        return (1.0 - self.optimizer.beta1) / self.lr, (1.0 - self.optimizer.beta2) / self.lr

    def _bias_corrections(self, t):
        k = t / self.lr + 1.0
        return 1.0 - self.optimizer.beta1**k, 1.0 - self.optimizer.beta2**k

    def _step_factor(self, t, y):
        """`(x, m, v, ∇f, target, (√ι₂/ι₁) P⁻¹)`: what the X equation multiplies `M⁺` by."""
        opt = self.optimizer
        x, m, v = self.blocks(y)
        grad = self.problem.grad(x)
        target = self.v_target(grad, self.problem.noise_variance(x))
        iota1, iota2 = self._bias_corrections(t)
        v_ahead = v + (1.0 - opt.beta2) * (target - v)
        p = jnp.sqrt(jnp.clip(v_ahead, 0.0)) + opt.eps * jnp.sqrt(iota2)
        return x, m, v, grad, target, jnp.sqrt(iota2) / (iota1 * p)

    def drift(self, t, y, args):
        x, m, v, grad, target, factor = self._step_factor(t, y)
        m_ahead = m + (1.0 - self.optimizer.beta1) * (grad - m)
        dx = -factor * m_ahead - self.optimizer.weight_decay * x
        rho1, rho2 = self._rhos()
        return jnp.concatenate([dx, rho1 * (grad - m), rho2 * (target - v)])

    def diffusion(self, t, y, args):
        x, _, _, _, _, factor = self._step_factor(t, y)
        rho1, _ = self._rhos()
        root = self.problem.noise_cov_sqrt(x)
        m_kick = jnp.full_like(x, jnp.sqrt(self.lr) * rho1)
        # m_{k+1} already holds step k's noise, so x moves with it in the same step.
        return embed_noise(root, [-factor * self.lr * m_kick, m_kick, None])


@register_sde(Adam)
class AdamSDE(AbstractAdamSDE):
    """Adam(W) SDE in the Compagnoni et al. (2025) form: `V` tracks `∇f² + diag Σ`."""

    includes_grad_squared: ClassVar[bool] = True


@register_sde(Adam, "malladi")
class AdamMalladiSDE(AbstractAdamSDE):
    """Adam(W) SDE in the Malladi et al. (2022) form: `dV = ρ₂ (diag Σ - V) dt` (no `∇f²`)."""

    includes_grad_squared: ClassVar[bool] = False
