"""Gaussian variational inference and Gaussian local entropy: the local-entropy loss with the
Gibbs measure restricted to diagonal Gaussians (docs/math.md §7.8).

By the Gibbs variational principle the local-entropy loss of `sdelens.flatness` is

`u(x) = -T log E_{N(x, (T/γ) I)}[e^{-f/T}] = min_q { E_q f + T KL(q ‖ N(x, (T/γ) I)) }`,

attained at the Gibbs measure `ρₓ`. Over `q = N(m, diag s²)` the minimum is an upper bound
`u_G(x) ≥ u(x)`, and minimising over `x` as well (as Entropy-SGD does) puts `x = m`:

`min_x u_G(x) = min_{m,s} E_q f + (γ/2) Σ sᵢ² - (T/2) Σ (1 + log(γ sᵢ²/T))`.

At `γ = 0` this is plain variational inference of the Gibbs posterior `e^{-f/T}` with a flat
prior, `V(m, s) = E_q f - (T/2) Σ log sᵢ² + const`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _check
from ._common import Loss, as_vector, at_least
from ._hessian import dense_hessian
from ._smoothing import _antithetic_means


class VariationalFit(NamedTuple):
    """A diagonal Gaussian `q = N(mean, diag std²)` fitted by `fit_variational`.

    `value`: the objective at `q` (see `variational_loss`), by quadrature or on the fit's fixed
    draws; `std_error`: its Monte Carlo standard error on those draws (0 for quadrature, which
    has no sampling error); `trajectory`: the objective before each Adam step; `grad_norm`: the
    norm of the gradient with respect to `(mean/std, log std)` at the end, in units of the
    loss: `∂/∂ log sᵢ = sᵢ² E_q[∂ᵢ²f] + γ sᵢ² - T` is a difference of terms of size `T`, so
    `grad_norm ≪ T` means the fit reached a stationary point."""

    mean: Float[Array, " d"]
    std: Float[Array, " d"]
    value: Float[Array, ""]
    std_error: Float[Array, ""]
    trajectory: Float[Array, " n_steps"]
    grad_norm: Float[Array, ""]


def _hermite_nodes(d: int, n: int, dtype):
    """Probabilists' Gauss–Hermite nodes, `n` per axis (tensor product for `d = 2`), with
    weights summing to 1: `E g(z) ≈ Σ wₖ g(zₖ)`, `z ~ N(0, I)`, exact for polynomials of
    degree `≤ 2n - 1` in each coordinate."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n)
    weights = weights / weights.sum()
    grids = np.meshgrid(*([nodes] * d), indexing="ij")
    points = np.stack(grids, axis=-1).reshape(-1, d)
    w = np.prod(np.stack(np.meshgrid(*([weights] * d), indexing="ij"), axis=-1), axis=-1)
    return jnp.asarray(points, dtype), jnp.asarray(w.ravel(), dtype)


def _expectation(fn, mean, std, key, n):
    """`E_q fn` for `q = N(mean, diag std²)` and its Monte Carlo standard error (per entry of
    `fn`'s output): Gauss–Hermite quadrature with `n` nodes per axis when `key` is None (error
    0), else `n` antithetic pairs `±z` drawn from `key` (the same draws for the same key, so a
    fit on them optimises a deterministic function)."""
    if key is None:
        z, w = _hermite_nodes(mean.shape[0], n, mean.dtype)
        values = jax.vmap(fn)(mean + std * z)
        return jnp.tensordot(w, values, axes=1), jnp.zeros_like(values[0])
    pairs = _antithetic_means(fn, mean, std, key, n)
    return jnp.mean(pairs, axis=0), jnp.std(pairs, axis=0, ddof=1) / math.sqrt(n)


def _penalty(log_std, temperature, gamma):
    """`(γ/2) Σ s² - (T/2) Σ (1 + log(s²/T)) - (dT/2) log γ`, the last term only for `γ > 0`:
    `T KL(q ‖ N(m, (T/γ) I))` for `γ > 0`; its `γ → 0` limit with the diverging
    `-(dT/2) log γ` dropped for `γ = 0`."""
    d = log_std.shape[0]
    log_gamma = jnp.log(jnp.where(gamma > 0, gamma, 1.0))
    entropy = 0.5 * temperature * jnp.sum(1.0 + 2.0 * log_std - jnp.log(temperature))
    return (
        0.5 * gamma * jnp.sum(jnp.exp(2.0 * log_std)) - entropy - 0.5 * d * temperature * log_gamma
    )


def _check_common(mean, std, temperature, gamma, key):
    """The validated `(mean, std)`, `std` broadcast to `mean`'s shape; `ValueError` before any
    computation otherwise."""
    if jnp.ndim(mean) != 1 or jnp.size(mean) == 0:
        raise ValueError(
            f"mean has shape {jnp.shape(mean)}: a flat vector of shape (d,), d >= 1, is needed."
        )
    mean = as_vector(mean)
    _check.positive_finite("std", std)
    std = jnp.asarray(std, mean.dtype)
    if std.shape not in ((), mean.shape):
        raise ValueError(
            f"std has shape {std.shape}: a number or an array of mean's shape {mean.shape}."
        )
    _check.positive_finite("temperature", temperature, scalar=True)
    _check.positive_finite("gamma", gamma, allow_zero=True, scalar=True)
    if key is None and mean.shape[0] > 2:
        raise ValueError(
            f"key=None is invalid for d={mean.shape[0]}: Gauss–Hermite quadrature is for "
            "d <= 2; pass key= for Monte Carlo."
        )
    return mean, jnp.broadcast_to(std, mean.shape)


def _rule_size(key, n_samples, n_nodes) -> int:
    """Nodes per axis (quadrature) or antithetic pairs (Monte Carlo)."""
    if key is None:
        return at_least("n_nodes", n_nodes, 2)
    return at_least("n_samples", n_samples, 4) // 2


def variational_loss(
    loss: Loss,
    mean: Float[Array, " d"],
    std: float | Float[Array, " d"],
    temperature: float,
    *,
    gamma: float = 0.0,
    key: PRNGKeyArray | None = None,
    n_samples: int = 1000,
    n_nodes: int = 48,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """The Gaussian variational objective of `q = N(mean, diag std²)` (docs/math.md §7.8),

    `E_q f + (γ/2) Σ sᵢ² - (T/2) Σ (1 + log(γ sᵢ²/T))`      (`γ > 0`),

    which is `E_q f + T KL(q ‖ N(m, (T/γ) I))`: by the Gibbs variational principle an upper
    bound on the local-entropy loss `u(m)` of `local_entropy_integral` (Chaudhari et al.,
    ICLR 2017), equal to it when the Gibbs measure is Gaussian (a quadratic `f`). Its minimum
    over `(m, s)` is the "Gaussian local entropy" `min_x u_G(x) ≥ min_x u(x)`.

    `gamma = 0` (default) is plain variational inference (Blundell et al. 2015, "Weight
    Uncertainty in Neural Networks", with a flat prior) of the Gibbs posterior `e^{-f/T}`:
    `E_q f - (T/2) Σ (1 + log(sᵢ²/T))`, the `γ → 0` limit of the above with its diverging
    constant `-(dT/2) log γ` dropped. Differences between two `q` at one `(d, T)` are unchanged
    by it; on a quadratic `f = f* + ½ Σ hᵢ (xᵢ - cᵢ)²` the minimum is at `m = c`,
    `sᵢ² = T/(hᵢ + γ)`, with value `f* + (T/2) Σ log(1 + hᵢ/γ)` (`γ > 0`, the local entropy's
    log-det penalty) or `f* + (T/2) Σ log hᵢ` (`γ = 0`).

    `E_q f` is computed by Gauss–Hermite quadrature with `n_nodes` nodes per axis when
    `key` is None (`d ≤ 2` only; deterministic; exact for polynomials of degree
    `≤ 2 n_nodes - 1`), else by reparameterised Monte Carlo, `m + s ⊙ z` with `n_samples`
    draws in antithetic pairs `±z` from `key`. `std` is a number or a vector of shape `(d,)`.

    Returns `(value, standard error)`; the standard error is 0 for quadrature.
    """
    mean, std = _check_common(mean, std, temperature, gamma, key)
    n = _rule_size(key, n_samples, n_nodes)
    temperature, gamma = (jnp.asarray(v, mean.dtype) for v in (temperature, gamma))
    return _loss_value(loss, mean, jnp.log(std), temperature, gamma, key, n)


@eqx.filter_jit
def _loss_value(loss, mean, log_std, temperature, gamma, key, n):
    expected, std_error = _expectation(loss, mean, jnp.exp(log_std), key, n)
    return expected + _penalty(log_std, temperature, gamma), std_error


def fit_variational(
    loss: Loss,
    mean: Float[Array, " d"],
    std: float | Float[Array, " d"],
    temperature: float,
    *,
    gamma: float = 0.0,
    key: PRNGKeyArray | None = None,
    n_steps: int = 1000,
    lr: float = 0.05,
    n_samples: int = 256,
    n_nodes: int = 48,
) -> VariationalFit:
    """Fit `q = N(m, diag s²)` to the objective of `variational_loss` (plain variational
    inference at `gamma = 0`, Gaussian local entropy for `γ > 0`; docs/math.md §7.8), from the
    start `(mean, std)`.

    Adam (optax) with a cosine decay of `lr` to 0 over `n_steps` steps, in one jitted
    `lax.scan`, on `(u, log s)` with `m = mean + std ⊙ u`: the mean moves in units of the start
    width, so a narrow minimum is not overshot by steps sized for a wide one. The objective is
    a deterministic function during the fit: Gauss–Hermite quadrature (`key` None, `d ≤ 2`,
    `n_nodes` per axis), or Monte Carlo on `n_samples` fixed draws (antithetic pairs from
    `key`, common random numbers for every step; `value` is then on those draws, biased low by
    `O(1/n_samples)` by the fit).

    At a stationary point, by Stein's lemma `∂/∂sᵢ E_q f = sᵢ E_q[∂ᵢ²f]`, so

    `sᵢ² = T / (E_q[∂ᵢ²f] + γ)`:

    the learned variance is the temperature over the Hessian diagonal averaged over `q` (plus
    the coupling); `expected_hessian_diagonal` computes that average. `temperature` and `gamma`
    are traced: a sweep over them compiles once.
    """
    mean, std = _check_common(mean, std, temperature, gamma, key)
    n = _rule_size(key, n_samples, n_nodes)
    n_steps = _check.positive_int("n_steps", n_steps)
    _check.positive_finite("lr", lr, scalar=True)
    scalars = (jnp.asarray(v, mean.dtype) for v in (temperature, gamma, lr))
    return _fit(loss, mean, std, *scalars, key, n, n_steps)


@eqx.filter_jit
def _fit(loss, mean0, std0, temperature, gamma, lr, key, n, n_steps):
    def objective(params):
        u, log_std = params
        expected, std_error = _expectation(loss, mean0 + std0 * u, jnp.exp(log_std), key, n)
        return expected + _penalty(log_std, temperature, gamma), std_error

    value_and_grad = jax.value_and_grad(objective, has_aux=True)
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, n_steps))
    params = (jnp.zeros_like(mean0), jnp.log(std0))

    def step(carry, _):
        params, state = carry
        (value, std_error), (grad_u, grad_log_std) = value_and_grad(params)
        # ∂/∂u = s₀ ∂/∂m, rescaled to s ∂/∂m: the change per relative move of the mean
        scale = jnp.exp(params[1]) / std0
        grad_norm = jnp.sqrt(jnp.sum((grad_u * scale) ** 2) + jnp.sum(grad_log_std**2))
        updates, state = optimizer.update((grad_u, grad_log_std), state, params)
        return (optax.apply_updates(params, updates), state), (value, std_error, grad_norm)

    # one step more than asked: the schedule is 0 there, so it only evaluates the final point
    # (a second copy of the objective outside the loop would double the compilation)
    (params, _), (values, std_errors, grad_norms) = jax.lax.scan(
        step, (params, optimizer.init(params)), None, length=n_steps + 1
    )
    return VariationalFit(
        mean0 + std0 * params[0],
        jnp.exp(params[1]),
        values[-1],
        std_errors[-1],
        values[:-1],
        grad_norms[-1],
    )


def expected_hessian_diagonal(
    loss: Loss,
    mean: Float[Array, " d"],
    std: float | Float[Array, " d"],
    *,
    key: PRNGKeyArray | None = None,
    n_samples: int = 32,
    n_nodes: int = 48,
) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
    """`E_q[diag ∇²f]` under `q = N(mean, diag std²)` and its standard error per coordinate:
    the curvature that sets a fitted variational `q`'s variance, `sᵢ² = T/(E_q[∂ᵢ²f] + γ)`
    (docs/math.md §7.8).

    Gauss–Hermite quadrature (`key` None, `d ≤ 2`, `n_nodes` per axis; error 0) or Monte Carlo
    with `n_samples` draws in antithetic pairs from `key`. Each point costs a dense Hessian
    (`dense_hessian`, `d` Hessian-vector products): for small `d`.
    """
    mean, std = _check_common(mean, std, 1.0, 0.0, key)
    n = _rule_size(key, n_samples, n_nodes)
    return _hessian_diagonal(loss, mean, std, key, n)


@eqx.filter_jit
def _hessian_diagonal(loss, mean, std, key, n):
    return _expectation(lambda x: jnp.diag(dense_hessian(loss, x)), mean, std, key, n)
