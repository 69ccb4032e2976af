"""The Langevin chain of the package: SGLD and friction-corrected SGHMC on a potential `U`.

One implementation serves Entropy-SGD's inner loop (Chaudhari et al., "Entropy-SGD: Biasing
Gradient Descent into Wide Valleys", ICLR 2017, Algorithm 1) and the local-entropy estimator
`sdelens.flatness.local_entropy_langevin`: both sample the Gibbs measure
`ρ(x') ∝ exp(-U(x')/T)` of the coupled potential `U(x') = f(x') + γ/2 |x - x'|²`
(docs/math.md §7), and both fold the chain into a statistic as it runs (a running average for
Entropy-SGD, sums of moments for the estimator) instead of storing it.

* **SGLD** (Welling & Teh, ICML 2011): `x' ← x' - η' ∇U + √(2η'T) ξ`.
* **SGHMC** (Chen, Fox & Guestrin, ICML 2014), friction-corrected with friction `c`:
  `p ← (1 - c) p - η' ∇U + √(2 c η' T) ξ`, `x' ← x' + p`.

`ξ ~ N(0, I)`, `η'` = `step_size`, `T` = `temperature`. Both leave `ρ` invariant up to an
`O(η')` discretisation bias. Nothing here changes JAX's configuration.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from . import _check

__all__ = ["ChainState", "SAMPLERS", "langevin_step", "run_chain"]

SAMPLERS = ("sgld", "sghmc")


class ChainState(NamedTuple):
    """Where a Langevin chain is: `position` `x'` and, for SGHMC, `momentum` `p` (zeros and
    unused for SGLD)."""

    position: Float[Array, " d"]
    momentum: Float[Array, " d"]


def _check_sampler(step_size, temperature, sampler: str, friction) -> None:
    _check.choice("sampler", sampler, SAMPLERS)
    _check.positive_finite("step_size", step_size)
    _check.positive_finite("temperature", temperature, allow_zero=True)
    _check.in_interval("friction", friction, 0.0, 1.0, closed_high=True)
    if _check.is_concrete(friction) and float(friction) == 0.0:
        raise ValueError("friction=0.0 is invalid: allowed range is (0, 1].")


def _sqrt(value):
    # A Python scalar (EntropySGD stores its hyperparameters as floats) is rooted in double
    # precision and rounded once when it meets the state, as `math.sqrt` in Entropy-SGD's
    # original inner loop did: a float32 `jnp.sqrt` differs in the last bit for about one value
    # in seven, which would break bit-for-bit reproducibility of its runs.
    if isinstance(value, (int, float)):
        return math.sqrt(value)
    return jnp.sqrt(value)


def langevin_step(
    state: ChainState,
    grad_u: Float[Array, " d"],
    xi: Float[Array, " d"],
    *,
    step_size,
    temperature,
    sampler: str = "sgld",
    friction=0.1,
) -> ChainState:
    """One Langevin step from `state`, given `grad_u = ∇U(state.position)` (already evaluated,
    possibly a stochastic estimate) and `xi ~ N(0, I)` of the position's shape:

    * `sampler="sgld"`: `x' ← x' - η' ∇U + √(2η'T) ξ` (the momentum is passed through).
    * `sampler="sghmc"` (friction-corrected, friction `c` = `friction` in `(0, 1]`):
      `p ← (1 - c) p - η' ∇U + √(2 c η' T) ξ`, `x' ← x' + p`.

    `η'` = `step_size > 0`, `T` = `temperature ≥ 0` (0: no noise, gradient descent for SGLD,
    heavy-ball descent for SGHMC). Checks run on concrete values only; traced ones pass.
    """
    _check_sampler(step_size, temperature, sampler, friction)
    position, momentum = state
    if sampler == "sgld":
        noise_scale = _sqrt(2.0 * step_size * temperature)
        return ChainState(position - step_size * grad_u + noise_scale * xi, momentum)
    noise_scale = _sqrt(2.0 * friction * step_size * temperature)
    momentum = (1.0 - friction) * momentum - step_size * grad_u + noise_scale * xi
    return ChainState(position + momentum, momentum)


def run_chain(
    grad_u: Callable[[Float[Array, " d"], PRNGKeyArray], Float[Array, " d"]],
    start: Float[Array, " d"],
    key: PRNGKeyArray,
    n_steps: int,
    *,
    step_size,
    temperature,
    sampler: str = "sgld",
    friction=0.1,
    observe: Callable[[Any, Float[Array, " d"], Int[Array, ""]], Any],
    init: Any,
    momentum: Float[Array, " d"] | None = None,
) -> tuple[ChainState, Any]:
    """`n_steps` steps of `langevin_step` from position `start` (and SGHMC momentum
    `momentum`, default 0: a chain that continues passes the one it ended with), as one
    `jax.lax.scan`, folding the chain into a statistic instead of storing it.

    Step `i` (from 0) draws its randomness from `kᵢ = jax.random.fold_in(key, i)`, split into
    `key_grad, key_noise`: `g = grad_u(x', key_grad)` (a stochastic gradient uses the key, an
    exact one ignores it), `ξ = jax.random.normal(key_noise, start.shape, start.dtype)`, then the
    step, then `obs = observe(obs, x', i)` with the new position, starting from `obs = init`.
    This is Entropy-SGD's inner-chain scheme: its running average `μ ← (1 - α) μ + α x'` is
    `observe=lambda mu, xp, i: (1 - alpha) * mu + alpha * xp, init=x`.

    `n_steps ≥ 1` is static; the other parameters may be traced (see `langevin_step`).
    Returns `(final ChainState, obs)`.
    """
    n_steps = _check.positive_int("n_steps", n_steps)
    _check_sampler(step_size, temperature, sampler, friction)
    start = jnp.asarray(start)

    def step(carry, i):
        state, obs = carry
        key_grad, key_noise = jax.random.split(jax.random.fold_in(key, i))
        g = grad_u(state.position, key_grad)
        xi = jax.random.normal(key_noise, start.shape, start.dtype)
        state = langevin_step(
            state,
            g,
            xi,
            step_size=step_size,
            temperature=temperature,
            sampler=sampler,
            friction=friction,
        )
        return (state, observe(obs, state.position, i)), None

    first = ChainState(start, jnp.zeros_like(start) if momentum is None else momentum)
    (state, obs), _ = jax.lax.scan(step, (first, init), jnp.arange(n_steps))
    return state, obs
