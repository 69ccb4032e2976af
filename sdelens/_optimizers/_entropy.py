"""Entropy-SGD (Chaudhari et al., ICLR 2017): gradient descent on the local entropy, its
gradient estimated by an inner Langevin chain."""

from __future__ import annotations

from typing import ClassVar, NamedTuple, final

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int

from .. import _check
from .._langevin import SAMPLERS, ChainState, run_chain
from ._base import AbstractOptimizer, ParamState

__all__ = ["EntropySGD", "RelaxationState", "INNER_SAMPLERS"]

INNER_SAMPLERS = SAMPLERS


class EntropySGDOptState(NamedTuple):
    """Entropy-SGD's optax state between outer steps: the step counter, the outer velocity
    and, with `warm_start=True` only, where the inner chain ended (`chain`: its position `x'`
    and its SGHMC momentum), where the next outer step's chain continues. Without warm start
    `chain` is None: `x'` and `μ` restart from `x` every step."""

    count: Int[Array, ""]
    velocity: Float[Array, " d"]
    chain: ChainState | None = None


class RelaxationState(NamedTuple):
    """The state of Entropy-SGD's continuous-time model: the parameters `x` and the fast
    variable `y` (the inner chain `x'`), docs/math.md §7."""

    x: Float[Array, " d"]
    y: Float[Array, " d"]


@final
class EntropySGD(AbstractOptimizer):
    """Entropy-SGD (Chaudhari et al., ICLR 2017, Algorithm 1): gradient descent on the local
    entropy, whose gradient is estimated by an inner Langevin chain.

    One outer step from `x` (docs/math.md §7), with `γₖ = γ (1 + scoping)ᵏ` at outer step `k`:

        x' ← x,  μ ← x
        repeat L = inner_steps times:   g' = stochastic gradient at x'
            x' ← x' - η' (g' + γₖ (x' - x)) + √(2 η' T) ξ,   ξ ~ N(0, I)
            μ  ← (1 - α) μ + α x'
        x ← x - η γₖ (x - μ)

    `-T ∇F(x) = γ (x - ⟨x'⟩)` is the gradient of the local-entropy loss, `⟨·⟩` under the Gibbs
    measure `∝ exp(-(f(x') + γ/2 |x - x'|²)/T)`; `μ` is the chain's running estimate of `⟨x'⟩`.
    `η` = `lr`, `η'` = `inner_lr`, `T` = `temperature` (0: no Langevin noise, the inner loop is
    then gradient descent on the proximal problem), `α` = `alpha`. The inner chain is
    `sdelens`'s one Langevin chain (the one `sdelens.flatness.local_entropy_langevin` runs).

    **Variants** (never silent): the defaults are the paper's algorithm with `alpha=0.75` and no
    scoping (`scoping=0`, as the authors' PyTorch code, which never increments the scoping
    counter; the paper's `scoping` is `γ₁`):

    - `gamma_in_outer_step=False`: `x ← x - η (x - μ)`, as in the authors' code.
    - `momentum`, `nesterov`: heavy-ball / Nesterov momentum on the outer direction (the
      authors' code uses Nesterov momentum 0.9): `b ← m b + d`, step `d + m b` (Nesterov) or `b`.
    - The paper writes the noise as `√η' ε ξ` (`T = ε²/2`); the authors' code uses `ε √(2η')`
      (`T = ε²`) and `μ ← 0.75 μ + 0.25 x'`, which is `alpha=0.25` here.
    - `inner="sghmc"`: a friction-corrected SGHMC inner sampler (momentum `p`, friction
      `c` = `friction`): `p ← (1 - c) p - η' ∇U + √(2 c η' T) ξ`, `x' ← x' + p`, with
      `∇U = g' + γₖ (x' - x)`; it samples the same Gibbs measure.

    **Cheaper inner loops** (docs/math.md §7.9; off by default, each an explicit option):

    - `warm_start=True`: the chain is not restarted at `x`: it continues where the previous
      outer step's chain ended (position `x'` and, for SGHMC, momentum), so that over the
      outer steps it is one long chain, the fast variable of the two-timescale model
      (docs/math.md §7.4); `μ` restarts at the chain's start point (a draw of the chain)
      instead of at `x`. The first outer step starts at `x`. The chain is not moved with `x`:
      moving it by the outer step was measured worse on directions with `h > γ`, and the
      model has no such jump (docs/math.md §7.9).
    - `control_variate=True`: the inner gradient is SVRG's anchored estimate (Dubey et al.
      2016; Baker et al. 2019 for SGLD) `g_B(x') - g_B(x) + G`, both `g_B` with the same
      minibatch or noise draw, `G` the mean of `anchor_batches` fresh stochastic gradients at
      `x`, drawn once per outer step: unbiased for `∇f(x')`, its noise mostly the anchor's,
      common to every inner step.

    **Cost.** Each outer step takes `L` stochastic gradients and none at `x`
    (`grads_per_step = inner_steps`): compare with SGD per gradient evaluation. The control
    variate takes `2L + anchor_batches` (`L` extra at `x`, and the anchor).

    `to_optax()` is an `optax.GradientTransformationExtraArgs` whose `update` needs two extra
    keyword arguments: `grad_fn(x', key)` (one stochastic gradient) and `key` (the inner
    chain's randomness); `run_optimizer` passes both. Parameters are a flat vector.
    """

    lr: float = eqx.field(converter=_check.number("lr"))
    gamma: float = eqx.field(converter=_check.number("gamma"))
    inner_lr: float = eqx.field(converter=_check.number("inner_lr"))
    inner_steps: int = eqx.field(static=True)
    temperature: float = eqx.field(converter=_check.number("temperature"))
    alpha: float = eqx.field(converter=_check.number("alpha"), default=0.75)
    scoping: float = eqx.field(converter=_check.number("scoping"), default=0.0)
    momentum: float = eqx.field(converter=_check.number("momentum"), default=0.0)
    nesterov: bool = eqx.field(static=True, default=False)
    gamma_in_outer_step: bool = eqx.field(static=True, default=True)
    inner: str = eqx.field(static=True, default="sgld")
    friction: float = eqx.field(converter=_check.number("friction"), default=0.1)
    warm_start: bool = eqx.field(static=True, default=False)
    control_variate: bool = eqx.field(static=True, default=False)
    anchor_batches: int = eqx.field(static=True, default=1)
    decay_names: ClassVar[tuple[str, ...]] = ()
    scaling_rules: ClassVar[tuple[str, ...]] = ()
    coordinatewise: ClassVar[bool] = False  # the inner chain's gradients mix coordinates

    def __check_init__(self):
        _check.positive_finite("lr", self.lr, scalar=True)
        _check.positive_finite("gamma", self.gamma, scalar=True)
        _check.positive_finite("inner_lr", self.inner_lr, scalar=True)
        _check.positive_int("inner_steps", self.inner_steps)
        _check.positive_finite("temperature", self.temperature, allow_zero=True, scalar=True)
        _check.in_interval("alpha", self.alpha, 0.0, 1.0, closed_high=True)
        if _check.is_concrete(self.alpha) and self.alpha == 0.0:
            raise ValueError("alpha=0.0 is invalid: allowed range is (0, 1].")
        _check.positive_finite("scoping", self.scoping, allow_zero=True, scalar=True)
        _check.in_interval("momentum", self.momentum, 0.0, 1.0)
        _check.choice("inner", self.inner, INNER_SAMPLERS)
        _check.in_interval("friction", self.friction, 0.0, 1.0, closed_high=True)
        if _check.is_concrete(self.friction) and self.friction == 0.0:
            raise ValueError("friction=0.0 is invalid: allowed range is (0, 1].")
        for flag in ("nesterov", "gamma_in_outer_step", "warm_start", "control_variate"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(
                    f"{flag}={getattr(self, flag)!r} is invalid: True or False is required."
                )
        _check.positive_int("anchor_batches", self.anchor_batches)

    @property
    def name(self) -> str:
        return "entropysgd"

    @property
    def weight_decay(self) -> float:
        return 0.0

    @property
    def grads_per_step(self) -> int:
        if self.control_variate:
            return 2 * self.inner_steps + self.anchor_batches
        return self.inner_steps

    def initial_state(self, x0):
        return ParamState(x0)

    def state(self, x, opt_state):
        return ParamState(x)

    def default_scaling_rule(self) -> str:
        raise ValueError(
            "opt=EntropySGD has no batch-size scaling rule in sdelens: pass rule='linear' or "
            "'sqrt' to rescale its learning rate only."
        )

    def stationary_cov(self, problem):
        raise NotImplementedError("Entropy-SGD has no closed-form stationary law in sdelens.")

    def gamma_at(self, k) -> Float[Array, ""]:
        """`γₖ = γ (1 + scoping)ᵏ`, the coupling at outer step `k` (scoping)."""
        return self.gamma * (1.0 + self.scoping) ** k

    def inner_chain(self, x, gamma, grad_fn, key) -> Float[Array, " d"]:
        """`μ` after `L` inner steps from `x' = μ = x`: the estimate of `⟨x'⟩`."""
        _, mu = self._chain(x, gamma, grad_fn, key, ChainState(x, jnp.zeros_like(x)))
        return mu

    def _chain(self, x, gamma, grad_fn, key, start: ChainState) -> tuple[ChainState, Array]:
        """The inner chain from `start` (position and SGHMC momentum), `μ` starting there:
        `(final chain state, μ)`."""
        alpha, steps = self.alpha, self.inner_steps
        if self.control_variate:
            # The anchor's keys come from index L, past the chain's own (`run_chain` uses 0 … L-1).
            anchor_keys = jax.random.split(jax.random.fold_in(key, steps), self.anchor_batches)
            anchor = jnp.mean(jax.vmap(lambda k: grad_fn(x, k))(anchor_keys), axis=0)

            def stochastic(xp, k):
                return grad_fn(xp, k) - grad_fn(x, k) + anchor
        else:
            stochastic = grad_fn
        return run_chain(
            lambda xp, k: stochastic(xp, k) + gamma * (xp - x),
            start.position,
            key,
            steps,
            step_size=self.inner_lr,
            temperature=self.temperature,
            sampler=self.inner,
            friction=self.friction,
            observe=lambda mu, xp, i: (1.0 - alpha) * mu + alpha * xp,
            init=start.position,
            momentum=start.momentum,
        )

    def to_optax(self) -> optax.GradientTransformationExtraArgs:
        def init(params):
            # The first outer step's chain starts at x, as without warm start.
            chain = ChainState(params, jnp.zeros_like(params)) if self.warm_start else None
            return EntropySGDOptState(jnp.zeros([], jnp.int32), jnp.zeros_like(params), chain)

        def update(updates, state, params=None, *, grad_fn=None, key=None, **extra_args):
            if params is None or grad_fn is None or key is None:
                raise ValueError(
                    "Entropy-SGD's update needs params, grad_fn=(x, key) -> stochastic "
                    "gradient and key= (run_optimizer passes them)."
                )
            gamma = self.gamma_at(state.count)
            start = state.chain if self.warm_start else ChainState(params, jnp.zeros_like(params))
            end, mu = self._chain(params, gamma, grad_fn, key, start)
            chain = end if self.warm_start else None
            direction = (gamma if self.gamma_in_outer_step else 1.0) * (params - mu)
            velocity = self.momentum * state.velocity + direction
            step = direction + self.momentum * velocity if self.nesterov else velocity
            return -self.lr * step, EntropySGDOptState(state.count + 1, velocity, chain)

        return optax.GradientTransformationExtraArgs(init, update)
