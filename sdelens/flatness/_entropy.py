"""The local entropy of Entropy-SGD (Chaudhari et al., "Entropy-SGD: Biasing Gradient Descent
into Wide Valleys", ICLR 2017) by Laplace's method, by quadrature (`d ≤ 2`) and its gradient by
Langevin dynamics (docs/math.md §7).

Chaudhari et al. define `F(x; γ, T) = log ∫ exp(-f(x')/T - γ/(2T) |x - x'|²) dx'`. The functions
here return the local-entropy loss

`u(x) = -T log E[exp(-f(x')/T)]`, `x' ~ N(x, (T/γ) I)`,

which is `-T F` with the Gaussian kernel normalised: `u(x) = -T F(x) + (dT/2) log(2πT/γ)`. The
constant does not depend on `x` and makes `u = f` for a constant `f`: `u` is in units of the
loss and smaller is better.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _check, _langevin
from ._common import Loss, as_vector, at_least, grid_points, low_dimension

# Step lengths 1, 1/2, ..., 1/2^11 tried by each Newton step of the Laplace method.
_N_STEP_LENGTHS = 12


def _check_entropy(gamma, temperature, *, allow_zero_temperature: bool) -> None:
    _check.positive_finite("gamma", gamma)
    _check.positive_finite("temperature", temperature, allow_zero=allow_zero_temperature)


class LangevinEstimate(NamedTuple):
    """The Gibbs measure `ρₓ` at a point `x`, estimated by Langevin chains.

    `mean`: `⟨x'⟩`; `grad`: the gradient of the local-entropy loss, `∇(-T F)(x) = γ (x - ⟨x'⟩)`;
    `std_error`: the standard error of `mean` (of `grad`: `γ · std_error`) over the chains;
    `variance`: of `x'` per coordinate, pooled over chains and kept steps."""

    mean: Float[Array, " d"]
    grad: Float[Array, " d"]
    std_error: Float[Array, " d"]
    variance: Float[Array, " d"]


def local_entropy_langevin(
    loss: Loss,
    x: Float[Array, " d"],
    gamma: float,
    temperature: float,
    key: PRNGKeyArray,
    n_steps: int = 2000,
    step_size: float = 1e-2,
    n_chains: int = 64,
    burn_in: int = 500,
    *,
    sampler: str = "sgld",
    friction: float = 0.1,
) -> LangevinEstimate:
    """The gradient of the local-entropy loss by Langevin dynamics, as in Entropy-SGD's inner
    loop (Chaudhari et al., ICLR 2017; the same chain, `sdelens._langevin.run_chain`).

    `-T ∇F(x) = γ (x - ⟨x'⟩)`, `⟨·⟩` under the Gibbs measure
    `ρₓ(x') ∝ exp(-U(x')/T)`, `U(x') = f(x') + γ/2 |x - x'|²`, which the chain samples:
    SGLD (`sampler="sgld"`) `x' ← x' - η' ∇U + √(2η'T) ξ`, `ξ ~ N(0, I)`, `η'` = `step_size`,
    or friction-corrected SGHMC (`sampler="sghmc"`, friction `c` = `friction` in `(0, 1]`)
    `p ← (1 - c) p - η' ∇U + √(2 c η' T) ξ`, `x' ← x' + p`. Each of `n_chains` independent
    chains starts at `x`, runs `n_steps` steps and averages the iterates after the first
    `burn_in`.

    The chain's `O(η')` discretisation bias is not removed (on `f = ½ h x'²`, `k = h + γ`:
    `⟨x'⟩` is exact, the variance is `T/k` times `1/(1 - η'k/(2(2 - c)))`, SGLD being `c = 1`):
    take `η' ≪ 1/(L + γ)`, `L` the largest curvature. `temperature = 0` is allowed: the chains
    are then (heavy-ball) gradient descent to the proximal point `argmin f(x') + γ/2 |x - x'|²`
    and `grad` is the gradient of the Moreau envelope.
    """
    x = as_vector(x)
    _check_entropy(gamma, temperature, allow_zero_temperature=True)
    # checked here, while they are concrete: inside the compiled chain they are traced
    _langevin._check_sampler(step_size, temperature, sampler, friction)
    n_steps = _check.positive_int("n_steps", n_steps)
    n_chains = _check.positive_int("n_chains", n_chains)
    if isinstance(burn_in, bool) or not isinstance(burn_in, (int, np.integer)):
        raise ValueError(f"burn_in={burn_in!r} is invalid: must be an integer in [0, n_steps).")
    if not 0 <= burn_in < n_steps:
        raise ValueError(f"burn_in={burn_in!r} is invalid: allowed range is [0, {n_steps}).")
    # the scalars are traced: a sweep over them reuses one compilation
    gamma, temperature, step_size, friction = (
        jnp.asarray(v, x.dtype) for v in (gamma, temperature, step_size, friction)
    )
    return _gibbs_moments(
        loss,
        x,
        key,
        n_steps,
        n_chains,
        int(burn_in),
        sampler,
        gamma=gamma,
        temperature=temperature,
        step_size=step_size,
        friction=friction,
    )


@eqx.filter_jit
def _gibbs_moments(
    loss, x, key, n_steps, n_chains, burn_in, sampler, *, gamma, temperature, step_size, friction
):
    grad_f = jax.grad(loss)
    n_kept = n_steps - burn_in

    def grad_u(xp, _):
        return grad_f(xp) + gamma * (xp - x)

    # accumulate δ = x' - x, not x': δ is of the size of the Gibbs width and of the pull towards
    # the wells, not of |x|, so E[δ²] - E[δ]² cancels fewer digits
    def observe(sums, xp, i):
        total, total_sq = sums
        kept = jnp.where(i >= burn_in, xp - x, 0.0)
        return total + kept, total_sq + kept**2

    def chain(key):
        _, (total, total_sq) = _langevin.run_chain(
            grad_u,
            x,
            key,
            n_steps,
            step_size=step_size,
            temperature=temperature,
            sampler=sampler,
            friction=friction,
            observe=observe,
            init=(jnp.zeros_like(x), jnp.zeros_like(x)),
        )
        return total / n_kept, total_sq / n_kept

    shifts, second_moments = jax.vmap(chain)(jax.random.split(key, n_chains))
    shift = jnp.mean(shifts, axis=0)
    std_error = (
        jnp.std(shifts, axis=0, ddof=1) / math.sqrt(n_chains)
        if n_chains > 1
        else jnp.full_like(x, jnp.nan)
    )
    variance = jnp.mean(second_moments, axis=0) - shift**2
    return LangevinEstimate(x + shift, -gamma * shift, std_error, variance)


def _proximal_point(loss: Loss, x, gamma, newton_steps: int):
    """The minimiser `x̂` of `g(x') = f(x') + γ/2 |x' - x|²` by safeguarded Newton steps from
    `x`, and `g(x̂)`."""

    def coupled(xp):
        return loss(xp) + 0.5 * gamma * jnp.sum((xp - x) ** 2)

    grad, hessian = jax.grad(coupled), jax.hessian(coupled)
    lengths = 0.5 ** jnp.arange(_N_STEP_LENGTHS, dtype=x.dtype)

    def newton_step(xp, _):
        curvature, axes = jnp.linalg.eigh(hessian(xp))
        # |curvature| (saddle-free Newton) keeps the step downhill where f bends down faster
        # than the coupling γ; the floor bounds it near an inflection point
        curvature = jnp.maximum(jnp.abs(curvature), 1e-3 * gamma)
        direction = -axes @ ((axes.T @ grad(xp)) / curvature)
        trials = xp + lengths[:, None] * direction
        values = jax.vmap(coupled)(trials)
        # the best of a fixed set of step lengths, or no step: g never increases and the loop
        # has no data-dependent length
        best = jnp.argmin(values)
        return jnp.where(values[best] < coupled(xp), trials[best], xp), None

    x_hat, _ = jax.lax.scan(newton_step, x, None, length=newton_steps)
    return x_hat, coupled(x_hat)


def local_entropy_laplace(
    loss: Loss,
    x: Float[Array, " d"],
    gamma: float,
    temperature: float,
    newton_steps: int = 20,
) -> Float[Array, ""]:
    """The local-entropy loss `u(x) = -T F(x; γ, T) + (dT/2) log(2πT/γ)` (Chaudhari et al.,
    ICLR 2017; see `sdelens.flatness`) by Laplace's method.

    `x̂ = argmin f(x') + γ/2 |x - x'|²` is found by `newton_steps` Newton steps from `x` with the
    dense Hessian (small `d`; each step tries 12 step lengths and never increases the
    objective). Expanding the exponent to second order around `x̂`,

    `F ≈ -(f(x̂) + γ/2 |x - x̂|²)/T + (d/2) log(2πT) - ½ log det(∇²f(x̂) + γ I)`, so
    `u(x) ≈ f(x̂) + γ/2 |x - x̂|² + (T/2) log det(I + ∇²f(x̂)/γ)`.

    Exact for quadratics: for `f = ½ xᵀ diag(h) x`, `u = ½ Σ hᵢγ/(hᵢ+γ) xᵢ² + (T/2) Σ log(1 +
    hᵢ/γ)`. Near a minimum with Hessian eigenvalues `lᵢ`, `u ≈ f* + (T/2) Σ log(1 + lᵢ/γ)`: a
    log-det penalty on sharpness (docs/math.md §7). `temperature = 0` is allowed and gives the
    Moreau envelope `min f(x') + γ/2 |x - x'|²`, which has no preference for width. NaN if
    Newton did not reach a minimum (`∇²f(x̂) + γ I` not positive definite).
    """
    x = as_vector(x)
    _check_entropy(gamma, temperature, allow_zero_temperature=True)
    newton_steps = _check.positive_int("newton_steps", newton_steps)
    gamma, temperature = jnp.asarray(gamma, x.dtype), jnp.asarray(temperature, x.dtype)
    return _laplace(loss, x, gamma, temperature, newton_steps)


@eqx.filter_jit
def _laplace(loss, x, gamma, temperature, newton_steps):
    x_hat, envelope = _proximal_point(loss, x, gamma, newton_steps)
    eye = jnp.eye(x.shape[0], dtype=x.dtype)
    sign, logdet = jnp.linalg.slogdet(eye + jax.hessian(loss)(x_hat) / gamma)
    penalty = jnp.where(sign > 0, 0.5 * temperature * logdet, jnp.nan)
    return envelope + jnp.where(temperature == 0, 0.0, penalty)


def local_entropy_integral(
    loss: Loss,
    x: Float[Array, " d"],
    gamma: float,
    temperature: float,
    n: int = 801,
    half_width: float | None = None,
    reach: float = 0.0,
) -> Float[Array, ""]:
    """The local-entropy loss `u(x) = -T log ∫ N(x'; x, (T/γ) I) exp(-f(x')/T) dx'`
    (`= -T F(x; γ, T) + (dT/2) log(2πT/γ)`, see `sdelens.flatness`) by quadrature,
    for `d = 1` or `2` (`ValueError` otherwise) and `temperature > 0`.

    The integrand is summed over `n` points per axis on the cube `x ± half_width`, with
    log-sum-exp so that `exp(-f/T)` cannot overflow at small `T`. `half_width` defaults to
    `6 √(T/γ) + reach`: six kernel widths (the kernel is below `e^{-18}` beyond) plus the loss's
    own scale `reach`. The kernel does not make a far well negligible on its own: a well deeper
    by `Δ` at a distance `r` still counts when `Δ ≳ γ r²/2`, so pass `reach ≳ √(2Δ/γ)` (or a
    `half_width` holding every such well) when `f` has one.
    """
    x = as_vector(x)
    _check_entropy(gamma, temperature, allow_zero_temperature=False)
    low_dimension(x, "local_entropy_integral")
    n = at_least("n", n, 3)
    _check.positive_finite("reach", reach, allow_zero=True)
    if half_width is None:
        half_width = 6.0 * math.sqrt(temperature / gamma) + reach
    _check.positive_finite("half_width", half_width)
    scalars = (jnp.asarray(v, x.dtype) for v in (gamma, temperature, half_width))
    return _entropy_quadrature(loss, x, *scalars, n)


@eqx.filter_jit
def _entropy_quadrature(loss, x, gamma, temperature, half_width, n):
    points, log_cell = grid_points(x, half_width, n)
    coupling = 0.5 * gamma * jnp.sum((points - x) ** 2, axis=-1)
    log_integrand = -(jax.vmap(loss)(points) + coupling) / temperature
    log_normaliser = 0.5 * x.shape[0] * jnp.log(gamma / (2 * jnp.pi * temperature))
    # one axis at a time: float32 rounding then grows with n, not with the n² points in 2-D
    per_row = jax.scipy.special.logsumexp(log_integrand.reshape(n, -1), axis=1)
    log_mean = jax.scipy.special.logsumexp(per_row) + log_cell + log_normaliser
    return -temperature * log_mean


def local_entropy_loss(
    loss: Loss,
    x: Float[Array, " d"],
    gamma: float,
    temperature: float,
    method: str = "laplace",
    **options,
) -> Float[Array, ""]:
    """The local-entropy loss `u(x) = -T F(x; γ, T) + (dT/2) log(2πT/γ)` (smaller is better,
    in units of `f`; see `sdelens.flatness`).

    `method="laplace"`: `local_entropy_laplace` (any small `d`, exact for quadratics,
    `temperature = 0` allowed). `method="integral"`: `local_entropy_integral` (quadrature,
    `d ≤ 2`, `temperature > 0`). `options` go to the chosen function (`newton_steps`; `n`,
    `half_width`, `reach`). For the gradient alone in high dimension use
    `local_entropy_langevin`.
    """
    _check.choice("method", method, ("laplace", "integral"))
    if method == "laplace":
        return local_entropy_laplace(loss, x, gamma, temperature, **options)
    return local_entropy_integral(loss, x, gamma, temperature, **options)
