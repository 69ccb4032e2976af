"""Optimizer hyperparameters: one object drives both the discrete optimizer and its SDE."""

from __future__ import annotations

import abc
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int

from . import _check

__all__ = ["AbstractOptimizer", "SGD", "SignSGD", "RMSprop", "Adam", "EntropySGD"]


class AbstractOptimizer(eqx.Module):
    """Hyperparameters of a first-order optimizer with learning rate `lr` (`η`).

    `to_optax()` is the discrete optimizer; `sdelens.sde_for` builds its SDE from the same
    fields, so the two never disagree on what the hyperparameters mean. Step `k` sits at time
    `t = k η` on the common clock.
    """

    lr: eqx.AbstractVar[float]

    @abc.abstractmethod
    def to_optax(self) -> optax.GradientTransformation:
        """The discrete optimizer as an optax transformation."""

    @property
    def name(self) -> str:
        """Short lower-case name, as used on the command line (`"adamw"` when decayed)."""
        base = type(self).__name__.lower()
        return base + "w" if getattr(self, "weight_decay", 0.0) > 0 else base

    def hyperparameters(self) -> dict[str, float | int | bool | str]:
        """The fields as plain Python values, for manifests."""
        return {
            k: v if isinstance(v, bool | int | str) else float(v) for k, v in vars(self).items()
        }

    @property
    @abc.abstractmethod
    def grads_per_step(self) -> int:
        """Stochastic-gradient evaluations per optimizer step (the compute-fair clock)."""

    @abc.abstractmethod
    def moments(self, opt_state) -> Float[Array, "k d"] | None:
        """The optimizer's moving averages (`m`, `v`, ...) stacked as rows; None if stateless.

        The row order is the SDE state's after `x`, so `Run.state` of the optimizer and of the
        SDE line up column by column.
        """


class SGD(AbstractOptimizer):
    """Plain SGD, `x ← x - η g(x)` (`optax.sgd`).

    SDE (Li, Tai & E 2019): `dX = -∇f(X) dt + √η Σ^{1/2} dW`.
    """

    lr: float = eqx.field(converter=float)

    def __check_init__(self):
        _check.positive_finite("lr", self.lr)

    def to_optax(self) -> optax.GradientTransformation:
        return optax.sgd(self.lr)

    @property
    def grads_per_step(self) -> int:
        return 1

    def moments(self, opt_state) -> None:
        return None


class SignSGD(AbstractOptimizer):
    """SignSGD, `x ← x - η sign(g(x))` (`optax.sign_sgd`).

    SDE (Compagnoni et al. 2025, Thm 3.2): `dX = -E[sign g(X)] dt + √η Σ̄(X)^{1/2} dW` with
    `E[sign g] = 1 - 2 P[g < 0]` and `Σ̄ = Cov(sign g)`.
    """

    lr: float = eqx.field(converter=float)

    def __check_init__(self):
        _check.positive_finite("lr", self.lr)

    def to_optax(self) -> optax.GradientTransformation:
        return optax.sign_sgd(self.lr)

    @property
    def grads_per_step(self) -> int:
        return 1

    def moments(self, opt_state) -> None:
        return None


def _check_decay(name: str, value: float) -> None:
    _check.in_interval(name, value, 0.0, 1.0)


class RMSprop(AbstractOptimizer):
    """RMSprop, and RMSpropW when `weight_decay > 0` (decoupled, `optax.adamw` semantics):

    `v ← β v + (1-β) g²`,  `x ← x - η (g / (√v + ε) + θ x)`,  `v₀ = 0`.

    `ε` sits **outside** the square root (unlike `optax.rmsprop`'s default `eps_in_sqrt=True`),
    as in the SDE of Compagnoni et al. (2025, §3.2); `to_optax()` builds exactly this update.
    """

    lr: float = eqx.field(converter=float)
    beta: float = eqx.field(converter=float, default=0.999)
    eps: float = eqx.field(converter=float, default=1e-8)
    weight_decay: float = eqx.field(converter=float, default=0.0)

    def __check_init__(self):
        _check.positive_finite("lr", self.lr)
        _check_decay("beta", self.beta)
        _check.positive_finite("eps", self.eps, allow_zero=True)
        _check.positive_finite("weight_decay", self.weight_decay, allow_zero=True)

    def to_optax(self) -> optax.GradientTransformation:
        return optax.chain(
            optax.scale_by_rms(decay=self.beta, eps=self.eps, eps_in_sqrt=False),
            optax.add_decayed_weights(self.weight_decay),
            optax.scale_by_learning_rate(self.lr),
        )

    @property
    def grads_per_step(self) -> int:
        return 1

    def moments(self, opt_state):
        return opt_state[0].nu[None]


class Adam(AbstractOptimizer):
    """Adam with bias correction, and AdamW when `weight_decay > 0` (decoupled):

    `m ← β₁ m + (1-β₁) g`, `v ← β₂ v + (1-β₂) g²`, `m̂ = m/(1-β₁ᵏ)`, `v̂ = v/(1-β₂ᵏ)`,
    `x ← x - η (m̂ / (√v̂ + ε) + θ x)` (`optax.adamw` semantics, `ε` outside the root).
    """

    lr: float = eqx.field(converter=float)
    beta1: float = eqx.field(converter=float, default=0.9)
    beta2: float = eqx.field(converter=float, default=0.999)
    eps: float = eqx.field(converter=float, default=1e-8)
    weight_decay: float = eqx.field(converter=float, default=0.0)

    def __check_init__(self):
        _check.positive_finite("lr", self.lr)
        _check_decay("beta1", self.beta1)
        _check_decay("beta2", self.beta2)
        _check.positive_finite("eps", self.eps, allow_zero=True)
        _check.positive_finite("weight_decay", self.weight_decay, allow_zero=True)

    def to_optax(self) -> optax.GradientTransformation:
        return optax.chain(
            optax.scale_by_adam(b1=self.beta1, b2=self.beta2, eps=self.eps),
            optax.add_decayed_weights(self.weight_decay),
            optax.scale_by_learning_rate(self.lr),
        )

    @property
    def grads_per_step(self) -> int:
        return 1

    def moments(self, opt_state):
        return jnp.stack([opt_state[0].mu, opt_state[0].nu])


INNER_SAMPLERS = ("sgld", "sghmc")


class EntropySGDState(NamedTuple):
    """Entropy-SGD's state between outer steps (`x'` and `μ` restart from `x` every step)."""

    count: Int[Array, ""]
    velocity: Float[Array, " d"]


class EntropySGD(AbstractOptimizer):
    """Entropy-SGD (Chaudhari et al., ICLR 2017, Algorithm 1): gradient descent on the local
    entropy, whose gradient is estimated by an inner Langevin chain.

    One outer step from `x` (MATH.md §7), with `γₖ = γ (1 + scoping)ᵏ` at outer step `k`:

        x' ← x,  μ ← x
        repeat L = inner_steps times:   g' = stochastic gradient at x'
            x' ← x' - η' (g' + γₖ (x' - x)) + √(2 η' T) ξ,   ξ ~ N(0, I)
            μ  ← (1 - α) μ + α x'
        x ← x - η γₖ (x - μ)

    `-T ∇F(x) = γ (x - ⟨x'⟩)` is the gradient of the local-entropy loss, `⟨·⟩` under the Gibbs
    measure `∝ exp(-(f(x') + γ/2 |x - x'|²)/T)`; `μ` is the chain's running estimate of `⟨x'⟩`.
    `η` = `lr`, `η'` = `inner_lr`, `T` = `temperature` (0: no Langevin noise, the inner loop is
    then gradient descent on the proximal problem), `α` = `alpha`.

    **Variants** (never silent; the defaults are the paper's):

    - `gamma_in_outer_step=False`: `x ← x - η (x - μ)`, as in the authors' code.
    - `momentum`, `nesterov`: heavy-ball / Nesterov momentum on the outer direction (the
      authors' code uses Nesterov momentum 0.9): `b ← m b + d`, step `d + m b` (Nesterov) or `b`.
    - The paper writes the noise as `√η' ε ξ` (`T = ε²/2`); the authors' code uses `ε √(2η')`
      (`T = ε²`) and `μ ← 0.75 μ + 0.25 x'`, which is `alpha=0.25` here. Their PyTorch code
      never increments the scoping counter: `scoping=0`.
    - `inner="sghmc"`: a friction-corrected SGHMC inner sampler (momentum `p`, friction
      `c` = `friction`): `p ← (1 - c) p - η' ∇U + √(2 c η' T) ξ`, `x' ← x' + p`, with
      `∇U = g' + γₖ (x' - x)`; it samples the same Gibbs measure.

    **Cost.** Each outer step takes `L` stochastic gradients and none at `x`
    (`grads_per_step = inner_steps`): compare with SGD per gradient evaluation.

    `to_optax()` is an `optax.GradientTransformationExtraArgs` whose `update` needs two extra
    keyword arguments: `grad_fn(x', key)` (one stochastic gradient) and `key` (the inner
    chain's randomness); `run_optimizer` passes both. Parameters are a flat vector.
    """

    lr: float = eqx.field(converter=float)
    gamma: float = eqx.field(converter=float)
    inner_lr: float = eqx.field(converter=float)
    inner_steps: int = eqx.field(static=True)
    temperature: float = eqx.field(converter=float)
    alpha: float = eqx.field(converter=float, default=0.75)
    scoping: float = eqx.field(converter=float, default=0.0)
    momentum: float = eqx.field(converter=float, default=0.0)
    nesterov: bool = eqx.field(static=True, default=False)
    gamma_in_outer_step: bool = eqx.field(static=True, default=True)
    inner: str = eqx.field(static=True, default="sgld")
    friction: float = eqx.field(converter=float, default=0.1)

    def __check_init__(self):
        _check.positive_finite("lr", self.lr)
        _check.positive_finite("gamma", self.gamma)
        _check.positive_finite("inner_lr", self.inner_lr)
        _check.positive_int("inner_steps", self.inner_steps)
        _check.positive_finite("temperature", self.temperature, allow_zero=True)
        _check.in_interval("alpha", self.alpha, 0.0, 1.0, closed_high=True)
        if _check.is_concrete(self.alpha) and self.alpha == 0.0:
            raise ValueError("alpha=0.0 is invalid: allowed range is (0, 1].")
        _check.positive_finite("scoping", self.scoping, allow_zero=True)
        _check.in_interval("momentum", self.momentum, 0.0, 1.0)
        _check.choice("inner", self.inner, INNER_SAMPLERS)
        _check.in_interval("friction", self.friction, 0.0, 1.0, closed_high=True)
        if _check.is_concrete(self.friction) and self.friction == 0.0:
            raise ValueError("friction=0.0 is invalid: allowed range is (0, 1].")

    @property
    def grads_per_step(self) -> int:
        return self.inner_steps

    def moments(self, opt_state) -> None:
        return None

    def gamma_at(self, k) -> Float[Array, ""]:
        """`γₖ = γ (1 + scoping)ᵏ`, the coupling at outer step `k` (scoping)."""
        return self.gamma * (1.0 + self.scoping) ** k

    def inner_chain(self, x, gamma, grad_fn, key) -> Float[Array, " d"]:
        """`μ` after `L` inner steps from `x' = μ = x`: the estimate of `⟨x'⟩`."""
        noise_std = math.sqrt(2.0 * self.inner_lr * self.temperature)
        hmc_noise_std = math.sqrt(2.0 * self.friction * self.inner_lr * self.temperature)

        def inner_step(carry, i):
            xp, mu, p = carry
            key_grad, key_noise = jax.random.split(jax.random.fold_in(key, i))
            grad_u = grad_fn(xp, key_grad) + gamma * (xp - x)
            xi = jax.random.normal(key_noise, xp.shape, xp.dtype)
            if self.inner == "sgld":
                xp = xp - self.inner_lr * grad_u + noise_std * xi
            else:
                p = (1.0 - self.friction) * p - self.inner_lr * grad_u + hmc_noise_std * xi
                xp = xp + p
            mu = (1.0 - self.alpha) * mu + self.alpha * xp
            return (xp, mu, p), None

        (_, mu, _), _ = jax.lax.scan(
            inner_step, (x, x, jnp.zeros_like(x)), jnp.arange(self.inner_steps)
        )
        return mu

    def to_optax(self) -> optax.GradientTransformationExtraArgs:
        def init(params):
            return EntropySGDState(jnp.zeros([], jnp.int32), jnp.zeros_like(params))

        def update(updates, state, params=None, *, grad_fn=None, key=None, **extra_args):
            if params is None or grad_fn is None or key is None:
                raise ValueError(
                    "Entropy-SGD's update needs params, grad_fn=(x, key) -> stochastic "
                    "gradient and key= (run_optimizer passes them)."
                )
            gamma = self.gamma_at(state.count)
            mu = self.inner_chain(params, gamma, grad_fn, key)
            direction = (gamma if self.gamma_in_outer_step else 1.0) * (params - mu)
            velocity = self.momentum * state.velocity + direction
            step = direction + self.momentum * velocity if self.nesterov else velocity
            return -self.lr * step, EntropySGDState(state.count + 1, velocity)

        return optax.GradientTransformationExtraArgs(init, update)
