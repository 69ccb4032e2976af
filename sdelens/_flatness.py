"""Flatness of a loss landscape: Hessian spectra and the objectives that reward flat minima.

* Hessian-vector products, Lanczos with full reorthogonalisation, the top Hessian eigenvalues,
  the spectral density by stochastic Lanczos quadrature and Hutchinson's trace (MATH.md §8).
* The local entropy of Entropy-SGD (Chaudhari et al., ICLR 2017) by Laplace's method, by
  quadrature (`d ≤ 2`) and its gradient by stochastic-gradient Langevin dynamics (MATH.md §7).
* The Gaussian-smoothed loss and its gradient, by Monte Carlo and by quadrature (`d ≤ 2`).
* Test landscapes with a narrow deep minimum and a wide shallow one.

Every function takes the loss `f: ℝᵈ → ℝ` as a JAX callable of a flat vector `x` of shape `(d,)`.
Nothing here changes JAX's configuration: the precision is the dtype of `x`.

**The local-entropy loss.** Chaudhari et al. define the local entropy
`F(x; γ, T) = log ∫ exp(-f(x')/T - γ/(2T) |x - x'|²) dx'`. The functions here return the
local-entropy loss

`u(x) = -T log E[exp(-f(x')/T)]`, `x' ~ N(x, (T/γ) I)`,

which is `-T F` with the Gaussian kernel normalised: `u(x) = -T F(x) + (dT/2) log(2πT/γ)`. The
constant does not depend on `x` (gradients and differences are those of `-T F`) and makes `u = f`
for a constant `f`: `u` is in units of the loss and smaller is better, like `f` and the smoothed
loss. Near a minimum with Hessian eigenvalues `lᵢ`, at equal width `s² = T/γ` (MATH.md §7):
local entropy `≈ f* + (T/2) Σ log(1 + lᵢ/γ)` (log-det penalty), smoothing
`≈ f* + (T/(2γ)) Σ lᵢ` (trace penalty). As `T → 0` local entropy becomes the Moreau envelope
`min f(x') + γ/2 |x - x'|²` (no preference for width); as `T` grows it approaches smoothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from . import _check

__all__ = [
    "hvp",
    "dense_hessian",
    "lanczos",
    "top_eigenvalues",
    "SpectralDensity",
    "spectral_density",
    "hutchinson_trace",
    "LangevinEstimate",
    "local_entropy_langevin",
    "local_entropy_laplace",
    "local_entropy_integral",
    "local_entropy_loss",
    "smoothed_loss",
    "smoothed_grad",
    "smoothed_loss_integral",
    "landscape_1d",
    "landscape_2d",
    "two_minima",
]

Loss = Callable[[Float[Array, " d"]], Float[Array, ""]]

# Relative width of the SLQ Gaussian kernel (MATH.md §8, as in PyHessian).
_SLQ_RELATIVE_SIGMA = 1e-5
# A Gaussian kernel is summed over ±8σ and sampled every σ/2: the Riemann sum of a Gaussian at
# that spacing is exact to ~1e-30, so the density integrates to 1 up to rounding.
_KERNEL_REACH = 8.0
_GRID_STEPS_PER_SIGMA = 2
_MAX_GRID_POINTS = 2**21
# Step lengths 1, 1/2, ..., 1/2^11 tried by each Newton step of the Laplace method.
_N_STEP_LENGTHS = 12


def _as_vector(x) -> Float[Array, " d"]:
    x = jnp.asarray(x)
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"x has shape {x.shape}: a flat vector of shape (d,), d >= 1, is needed.")
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(float)


def _check_entropy(gamma, temperature, *, allow_zero_temperature: bool) -> None:
    _check.positive_finite("gamma", gamma)
    _check.positive_finite("temperature", temperature, allow_zero=allow_zero_temperature)


def _at_least(name: str, value, low: int) -> int:
    value = _check.positive_int(name, value)
    if value < low:
        raise ValueError(f"{name}={value!r} is invalid: must be an integer >= {low}.")
    return value


# -- Hessian-vector products and Lanczos ------------------------------------------------------


def hvp(loss: Loss, x: Float[Array, " d"], v: Float[Array, " d"]) -> Float[Array, " d"]:
    """The Hessian-vector product `∇²f(x) v`, by forward-over-reverse differentiation:
    `jax.jvp(jax.grad(f), (x,), (v,))`. Costs about two gradients; no `d × d` matrix."""
    return jax.jvp(jax.grad(loss), (x,), (v,))[1]


@eqx.filter_jit
def dense_hessian(loss: Loss, x: Float[Array, " d"]) -> Float[Array, "d d"]:
    """The dense Hessian `∇²f(x)` (`jax.hessian`, compiled): for checks on small `d` only."""
    return jax.hessian(loss)(x)


def _hvp_operator(loss: Loss, x: Float[Array, " d"]) -> Callable:
    # Linearising once stores the forward pass; every further product is one tangent pass.
    return jax.linearize(jax.grad(loss), x)[1]


def _project_out(w, basis):
    return w - basis.T @ (basis @ w)


def _orthogonalise(w, basis):
    # Classical Gram-Schmidt twice ("twice is enough"): one pass leaves O(ε κ) components along
    # the basis, which Lanczos amplifies into spurious copies of converged eigenvalues.
    return _project_out(_project_out(w, basis), basis)


def _lanczos(matvec: Callable, start, n_iter: int, key: PRNGKeyArray):
    """Lanczos on the symmetric operator `matvec` from `start`; see `lanczos`."""
    d, dtype = start.shape[0], start.dtype
    eps, tiny = jnp.finfo(dtype).eps, jnp.finfo(dtype).tiny
    basis = jnp.zeros((n_iter, d), dtype).at[0].set(start / jnp.linalg.norm(start))

    def step(basis, i):
        q = basis[i]
        hq = matvec(q)
        alpha = jnp.dot(q, hq)
        w = _orthogonalise(hq, basis)  # rows after i are still zero: they do not contribute
        beta = jnp.linalg.norm(w)
        # What is left of Hq at rounding level means the Krylov space is invariant: continue in
        # a fresh random direction, with a zero coupling so T splits into independent blocks.
        broke = beta <= 100 * eps * jnp.linalg.norm(hq)
        fresh = jax.random.normal(jax.random.fold_in(key, i), (d,), dtype)
        # re-orthogonalising an already orthogonal w is harmless and keeps the step branch-free
        nxt = _orthogonalise(jnp.where(broke, fresh, w), basis)
        nxt = nxt / jnp.maximum(jnp.linalg.norm(nxt), tiny)
        row = jnp.minimum(i + 1, n_iter - 1)  # the last step's next vector is not needed
        basis = basis.at[row].set(jnp.where(i + 1 < n_iter, nxt, basis[row]))
        return basis, (alpha, jnp.where(broke, jnp.zeros_like(beta), beta))

    basis, (alphas, betas) = jax.lax.scan(step, basis, jnp.arange(n_iter))
    return alphas, betas[:-1], basis


def lanczos(
    loss: Loss,
    x: Float[Array, " d"],
    n_iter: int,
    key: PRNGKeyArray,
    *,
    start: Float[Array, " d"] | None = None,
) -> tuple[Float[Array, " m"], Float[Array, " m-1"], Float[Array, "m d"]]:
    """`m = n_iter` Lanczos steps on the Hessian `H = ∇²f(x)` (Lanczos 1950), by Hessian-vector
    products only.

    Builds an orthonormal basis `Q = (q₀, …, q_{m-1})` of the Krylov space of `q₀` (`start`
    normalised, else a random unit vector from `key`) in which `H` is tridiagonal:
    `Qᵀ H Q = T`, `T = tridiag(β, α, β)`, `αᵢ = qᵢᵀ H qᵢ`, `βᵢ = qᵢ₊₁ᵀ H qᵢ`. The eigenvalues of
    `T` (Ritz values) approximate the extreme eigenvalues of `H` first; with `m = d` they are
    all of them.

    **Full reorthogonalisation**: every new vector is orthogonalised against all previous ones,
    twice, so `Q` stays orthonormal to rounding and no eigenvalue is found twice.
    **Breakdown** (`βᵢ ≈ 0`: the Krylov space is invariant) sets `βᵢ = 0` and continues from a
    fresh random vector orthogonal to `Q`; `T` is then block-diagonal and no NaN appears.

    Returns `(α, β, Q)` with shapes `(m,)`, `(m-1,)` and `(m, d)` (the vectors are the rows).
    A `jax.lax.scan` over the steps: jit-compatible with `loss` and `n_iter` static.
    Requires `1 ≤ n_iter ≤ d`.
    """
    x = _as_vector(x)
    d = x.shape[0]
    n_iter = _check.positive_int("n_iter", n_iter)
    if n_iter > d:
        raise ValueError(f"n_iter={n_iter} is invalid: at most d={d} Lanczos steps are possible.")
    k_start, k_restart = jax.random.split(key)
    if start is None:
        start = jax.random.normal(k_start, (d,), x.dtype)
    elif jnp.shape(start) != (d,):
        raise ValueError(f"start has shape {jnp.shape(start)}: shape ({d},) is needed.")
    return _lanczos_of_loss(loss, x, jnp.asarray(start, x.dtype), k_restart, n_iter)


@eqx.filter_jit
def _lanczos_of_loss(loss, x, start, key, n_iter):
    # compiled once per loss and n_iter: an eager scan would be traced again on every call
    return _lanczos(_hvp_operator(loss, x), start, n_iter, key)


def _tridiagonal(alphas, betas):
    return jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)


def top_eigenvalues(
    loss: Loss, x: Float[Array, " d"], k: int, key: PRNGKeyArray, n_iter: int | None = None
) -> tuple[Float[Array, " k"], Float[Array, "d k"]]:
    """The `k` largest (algebraic) eigenvalues of `∇²f(x)`, descending, and their unit Ritz
    vectors as the columns of a `(d, k)` array.

    The Ritz values of `n_iter` steps of `lanczos` (default `min(d, max(2k + 10, 30))`; values
    above `d` are reduced to `d`, where the Ritz values are exact up to rounding). The extreme
    eigenvalues converge first; clustered ones may need more steps.
    """
    x = _as_vector(x)
    d = x.shape[0]
    k = _check.positive_int("k", k)
    n_iter = max(2 * k + 10, 30) if n_iter is None else _check.positive_int("n_iter", n_iter)
    n_iter = min(n_iter, d)
    if k > n_iter:
        raise ValueError(f"k={k} is invalid: at most n_iter={n_iter} (and d={d}) eigenvalues.")
    alphas, betas, basis = lanczos(loss, x, n_iter, key)
    theta, vectors = jnp.linalg.eigh(_tridiagonal(alphas, betas))
    order = jnp.argsort(theta)[::-1][:k]
    return theta[order], basis.T @ vectors[:, order]


# -- spectral density and trace ---------------------------------------------------------------


class SpectralDensity(NamedTuple):
    """A Hessian eigenvalue density by stochastic Lanczos quadrature.

    `density[i]` is the smoothed density `φ` at `grid[i]`; `ritz_values[p]` and `weights[p]` are
    probe `p`'s quadrature nodes `θₚⱼ` and weights `τₚⱼ` (each row of weights sums to 1)."""

    grid: Float[Array, " g"]
    density: Float[Array, " g"]
    ritz_values: Float[Array, "p m"]
    weights: Float[Array, "p m"]

    @property
    def nodes(self) -> Float[Array, "p m"]:
        """Alias of `ritz_values`."""
        return self.ritz_values


def _unit_probes(key, n_probes, d, dtype, probe):
    if probe == "rademacher":
        return jax.random.rademacher(key, (n_probes, d), dtype) / math.sqrt(d)
    z = jax.random.normal(key, (n_probes, d), dtype)
    return z / jnp.linalg.norm(z, axis=1, keepdims=True)


def _gaussian(t, mean, sigma):
    return jnp.exp(-0.5 * ((t - mean) / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)


@jax.jit
def _density_on(grid, ritz, weights, sigma):
    """`φ` at arbitrary grid points: one probe at a time keeps memory at `g × m`."""

    def add_probe(total, probe):
        theta, tau = probe
        return total + _gaussian(grid[:, None], theta, sigma) @ tau, None

    total, _ = jax.lax.scan(add_probe, jnp.zeros_like(grid), (ritz, weights))
    return total / ritz.shape[0]


@eqx.filter_jit
def _density_on_uniform_grid(start, spacing, n, half, ritz, weights, sigma):
    """`φ` on `start + spacing·(0..n-1)`: each kernel only touches the `2·half + 1` points
    around its node, so a grid fine enough for a narrow kernel stays cheap."""
    nearest = jnp.round((ritz - start) / spacing).astype(jnp.int32)
    index = nearest[..., None] + jnp.arange(-half, half + 1)
    values = weights[..., None] * _gaussian(start + index * spacing, ritz[..., None], sigma)
    total = jnp.zeros(n, ritz.dtype).at[index.ravel()].add(values.ravel(), mode="drop")
    return total / ritz.shape[0]


@eqx.filter_jit
def _quadrature_nodes(loss, x, probes, key, n_iter):
    """Per probe (row of `probes`): the Ritz values and the squared first components of the
    eigenvectors of its tridiagonal `T`."""
    matvec = _hvp_operator(loss, x)

    def quadrature(start, k):
        alphas, betas, _ = _lanczos(matvec, start, n_iter, k)
        theta, vectors = jnp.linalg.eigh(_tridiagonal(alphas, betas))
        return theta, vectors[0] ** 2

    return jax.vmap(quadrature)(probes, jax.random.split(key, probes.shape[0]))


def spectral_density(
    loss: Loss,
    x: Float[Array, " d"],
    key: PRNGKeyArray,
    n_probes: int = 8,
    n_iter: int = 40,
    grid: int | Float[Array, " g"] | None = None,
    sigma: float | None = None,
    probe: str = "rademacher",
) -> SpectralDensity:
    """The eigenvalue density of `H = ∇²f(x)` by stochastic Lanczos quadrature (Ghorbani,
    Krishnan & Xiao, "An Investigation into Neural Net Optimization via Hessian Eigenvalue
    Density", ICML 2019):

    `φ(t) = (1/P) Σₚ Σⱼ τₚⱼ N(t; θₚⱼ, σ²)`,

    where for each of the `P = n_probes` unit probes `vₚ` (normalised Rademacher or Gaussian,
    `probe`) Lanczos from `vₚ` gives the tridiagonal `T = S diag(θ) Sᵀ`, the Ritz values
    `θₚⱼ` and the weights `τₚⱼ = S₀ⱼ²`. Then `Σⱼ τₚⱼ g(θₚⱼ)` is the Gauss quadrature of
    `vₚᵀ g(H) vₚ`, whose expectation is `tr g(H)/d`: `φ` estimates the smoothed spectral density
    `(1/d) Σᵢ N(t; λᵢ, σ²)`, and integrates to 1.

    `sigma` defaults to `1e-5 (θ_max - θ_min)` (MATH.md §8), which resolves single eigenvalues;
    larger values give a smoother curve. `grid` is an array of points, a number of points
    spanning the Ritz values `± 8σ`, or `None`: points every `σ/2` over that span (`2·10⁵`
    points at the default `sigma`), on which `φ` integrates to 1 up to rounding — a coarser grid
    needs a larger `sigma`. `n_iter` above `d` is reduced to `d`.

    Not jit-compatible as a whole (the default grid's size depends on the spectrum); the Lanczos
    runs are.
    """
    x = _as_vector(x)
    d = x.shape[0]
    n_probes = _check.positive_int("n_probes", n_probes)
    n_iter = min(_check.positive_int("n_iter", n_iter), d)
    _check.choice("probe", probe, ("rademacher", "gaussian"))
    if sigma is not None:
        _check.positive_finite("sigma", sigma)
    if grid is not None and not isinstance(grid, (int, np.integer)) and jnp.ndim(grid) != 1:
        raise ValueError(f"grid has shape {jnp.shape(grid)}: a 1-D array or a point count.")
    if isinstance(grid, (int, np.integer)):
        _at_least("grid", grid, 2)

    k_probes, k_restarts = jax.random.split(key)
    probes = _unit_probes(k_probes, n_probes, d, x.dtype, probe)
    ritz, weights = _quadrature_nodes(loss, x, probes, k_restarts, n_iter)
    lo, hi = float(jnp.min(ritz)), float(jnp.max(ritz))
    # a single eigenvalue (H ∝ I) has no range: fall back on its magnitude for the width
    scale = hi - lo if hi > lo else max(abs(lo), abs(hi), 1.0)
    sigma = _SLQ_RELATIVE_SIGMA * scale if sigma is None else float(sigma)
    low, high = lo - _KERNEL_REACH * sigma, hi + _KERNEL_REACH * sigma
    if grid is None:
        n = math.ceil((high - low) * _GRID_STEPS_PER_SIGMA / sigma) + 1
        if n > _MAX_GRID_POINTS:
            raise ValueError(
                f"sigma={sigma!r} is invalid: resolving it over the spectrum [{lo:.4g}, {hi:.4g}] "
                f"needs {n} grid points (at most {_MAX_GRID_POINTS}); pass a larger sigma or a "
                "grid."
            )
        spacing = (high - low) / (n - 1)
        points = low + spacing * jnp.arange(n, dtype=x.dtype)
        half = math.ceil(_KERNEL_REACH * sigma / spacing)
        start, spacing, sigma = (jnp.asarray(v, x.dtype) for v in (low, spacing, sigma))
        density = _density_on_uniform_grid(start, spacing, n, half, ritz, weights, sigma)
        return SpectralDensity(points, density, ritz, weights)
    points = (
        jnp.linspace(low, high, int(grid), dtype=x.dtype)
        if isinstance(grid, (int, np.integer))
        else jnp.asarray(grid, x.dtype)
    )
    density = _density_on(points, ritz, weights, jnp.asarray(sigma, x.dtype))
    return SpectralDensity(points, density, ritz, weights)


def hutchinson_trace(
    loss: Loss, x: Float[Array, " d"], key: PRNGKeyArray, n_probes: int = 100
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """`tr ∇²f(x)` by Hutchinson's estimator (Hutchinson 1989): `(1/P) Σₚ zₚᵀ ∇²f(x) zₚ` with
    `P = n_probes ≥ 2` Rademacher probes `zₚ` (unbiased: `E zzᵀ = I`).

    Returns `(estimate, standard error)`, the error from the spread of the `P` terms; for
    Rademacher probes `Var zᵀHz = 2 Σ_{i≠j} Hᵢⱼ²`, so a diagonal Hessian is estimated exactly.
    """
    x = _as_vector(x)
    return _hutchinson(loss, x, key, _at_least("n_probes", n_probes, 2))


@eqx.filter_jit
def _hutchinson(loss, x, key, n_probes):
    matvec = _hvp_operator(loss, x)
    probes = jax.random.rademacher(key, (n_probes, x.shape[0]), x.dtype)
    terms = jnp.sum(probes * jax.vmap(matvec)(probes), axis=1)
    return jnp.mean(terms), jnp.std(terms, ddof=1) / math.sqrt(n_probes)


# -- local entropy ----------------------------------------------------------------------------


class LangevinEstimate(NamedTuple):
    """The Gibbs measure `ρₓ` at a point `x`, estimated by SGLD chains.

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
) -> LangevinEstimate:
    """The gradient of the local-entropy loss by stochastic-gradient Langevin dynamics, as in
    Entropy-SGD's inner loop (Chaudhari et al., "Entropy-SGD: Biasing Gradient Descent into
    Wide Valleys", ICLR 2017).

    `-T ∇F(x) = γ (x - ⟨x'⟩)`, `⟨·⟩` under the Gibbs measure
    `ρₓ(x') ∝ exp(-(f(x') + γ/2 |x - x'|²)/T)`, which the chain
    `x' ← x' - η'(∇f(x') + γ (x' - x)) + √(2η'T) ξ`, `ξ ~ N(0, I)`, `η'` = `step_size`, samples.
    Each of `n_chains` independent chains starts at `x`, runs `n_steps` steps and averages the
    iterates after the first `burn_in`.

    The chain's `O(η')` discretisation bias is not removed (on `f = ½ h x'²`: `⟨x'⟩` is exact,
    the variance is `T/(h+γ)` times `1/(1 - η'(h+γ)/2)`): take `η' ≪ 1/(L + γ)`, `L` the largest
    curvature. `temperature = 0` is allowed: the chains are then gradient descent to the proximal
    point `argmin f(x') + γ/2 |x - x'|²` and `grad` is the gradient of the Moreau envelope.
    """
    x = _as_vector(x)
    _check_entropy(gamma, temperature, allow_zero_temperature=True)
    _check.positive_finite("step_size", step_size)
    n_steps = _check.positive_int("n_steps", n_steps)
    n_chains = _check.positive_int("n_chains", n_chains)
    if isinstance(burn_in, bool) or not isinstance(burn_in, (int, np.integer)):
        raise ValueError(f"burn_in={burn_in!r} is invalid: must be an integer in [0, n_steps).")
    if not 0 <= burn_in < n_steps:
        raise ValueError(f"burn_in={burn_in!r} is invalid: allowed range is [0, {n_steps}).")
    # the scalars are traced: a sweep over them reuses one compilation
    gamma, temperature, step_size = (
        jnp.asarray(v, x.dtype) for v in (gamma, temperature, step_size)
    )
    return _langevin(loss, x, gamma, temperature, key, n_steps, step_size, n_chains, int(burn_in))


@eqx.filter_jit
def _langevin(loss, x, gamma, temperature, key, n_steps, step_size, n_chains, burn_in):
    grad_f = jax.grad(loss)
    noise_scale = jnp.sqrt(2.0 * step_size * temperature)
    n_kept = n_steps - burn_in

    def chain(key):
        # accumulate δ = x' - x, not x': δ is of the size of the Gibbs width and of the pull
        # towards the wells, not of |x|, so E[δ²] - E[δ]² cancels fewer digits
        def step(carry, i):
            xp, total, total_sq = carry
            xi = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
            xp = xp - step_size * (grad_f(xp) + gamma * (xp - x)) + noise_scale * xi
            kept = jnp.where(i >= burn_in, xp - x, 0.0)
            return (xp, total + kept, total_sq + kept**2), None

        zeros = jnp.zeros_like(x)
        (_, total, total_sq), _ = jax.lax.scan(step, (x, zeros, zeros), jnp.arange(n_steps))
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
    ICLR 2017; see the module docstring) by Laplace's method.

    `x̂ = argmin f(x') + γ/2 |x - x'|²` is found by `newton_steps` Newton steps from `x` with the
    dense Hessian (small `d`; each step tries 12 step lengths and never increases the
    objective). Expanding the exponent to second order around `x̂`,

    `F ≈ -(f(x̂) + γ/2 |x - x̂|²)/T + (d/2) log(2πT) - ½ log det(∇²f(x̂) + γ I)`, so
    `u(x) ≈ f(x̂) + γ/2 |x - x̂|² + (T/2) log det(I + ∇²f(x̂)/γ)`.

    Exact for quadratics: for `f = ½ xᵀ diag(h) x`, `u = ½ Σ hᵢγ/(hᵢ+γ) xᵢ² + (T/2) Σ log(1 +
    hᵢ/γ)`. Near a minimum with Hessian eigenvalues `lᵢ`, `u ≈ f* + (T/2) Σ log(1 + lᵢ/γ)`: a
    log-det penalty on sharpness (MATH.md §7). `temperature = 0` is allowed and gives the Moreau
    envelope `min f(x') + γ/2 |x - x'|²`, which has no preference for width. NaN if Newton did
    not reach a minimum (`∇²f(x̂) + γ I` not positive definite).
    """
    x = _as_vector(x)
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


def _low_dimension(x, what: str) -> None:
    if x.shape[0] > 2:
        raise ValueError(f"x has d={x.shape[0]}: {what} integrates on a grid, d <= 2 only.")


def _grid_points(x, half_width, n):
    """An `n`-per-axis grid on the cube `x ± half_width` (`d ≤ 2`) and its log cell volume."""
    offsets = jnp.linspace(-half_width, half_width, n, dtype=x.dtype)
    axes = x[:, None] + offsets
    points = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, x.shape[0])
    return points, x.shape[0] * jnp.log(offsets[1] - offsets[0])


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
    (`= -T F(x; γ, T) + (dT/2) log(2πT/γ)`, see the module docstring) by quadrature,
    for `d = 1` or `2` (`ValueError` otherwise) and `temperature > 0`.

    The integrand is summed over `n` points per axis on the cube `x ± half_width`, with
    log-sum-exp so that `exp(-f/T)` cannot overflow at small `T`. `half_width` defaults to
    `6 √(T/γ) + reach`: six kernel widths (the kernel is below `e^{-18}` beyond) plus the loss's
    own scale `reach`. The kernel does not make a far well negligible on its own: a well deeper
    by `Δ` at a distance `r` still counts when `Δ ≳ γ r²/2`, so pass `reach ≳ √(2Δ/γ)` (or a
    `half_width` holding every such well) when `f` has one.
    """
    x = _as_vector(x)
    _check_entropy(gamma, temperature, allow_zero_temperature=False)
    _low_dimension(x, "local_entropy_integral")
    n = _at_least("n", n, 3)
    _check.positive_finite("reach", reach, allow_zero=True)
    if half_width is None:
        half_width = 6.0 * math.sqrt(temperature / gamma) + reach
    _check.positive_finite("half_width", half_width)
    scalars = (jnp.asarray(v, x.dtype) for v in (gamma, temperature, half_width))
    return _entropy_quadrature(loss, x, *scalars, n)


@eqx.filter_jit
def _entropy_quadrature(loss, x, gamma, temperature, half_width, n):
    points, log_cell = _grid_points(x, half_width, n)
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
    in units of `f`; see the module docstring).

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


# -- Gaussian smoothing -----------------------------------------------------------------------


@eqx.filter_jit
def _antithetic_means(fn, x, width, key, n_pairs):
    """`½(fn(x + s z) + fn(x - s z))` for `n_pairs` draws `z ~ N(0, I)`: the pair mean cancels
    every odd term of the expansion of `fn` around `x`."""
    z = jax.random.normal(key, (n_pairs, x.shape[0]), x.dtype)
    batched = jax.vmap(fn)
    return 0.5 * (batched(x + width * z) + batched(x - width * z))


def smoothed_loss(
    loss: Loss, x: Float[Array, " d"], width: float, key: PRNGKeyArray, n_samples: int = 1000
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """The Gaussian-smoothed loss `(G_s * f)(x) = E f(x + z)`, `z ~ N(0, s² I)`, `s` = `width`,
    by Monte Carlo with antithetic pairs `±z` (`n_samples ≥ 4` evaluations, rounded down to
    even). Returns `(estimate, standard error)`.

    At equal width `s² = T/γ`, near a minimum with Hessian eigenvalues `lᵢ`, this is
    `f* + (T/(2γ)) Σ lᵢ` (exactly `f(x) + (s²/2) tr H` on a quadratic): a trace penalty on
    sharpness, against the log-det penalty `(T/2) Σ log(1 + lᵢ/γ)` of the local entropy, which
    it approaches as `T` grows (MATH.md §7).
    """
    x = _as_vector(x)
    _check.positive_finite("width", width)
    n_pairs = _at_least("n_samples", n_samples, 4) // 2
    pairs = _antithetic_means(loss, x, jnp.asarray(width, x.dtype), key, n_pairs)
    return jnp.mean(pairs), jnp.std(pairs, ddof=1) / math.sqrt(pairs.shape[0])


def smoothed_grad(
    loss: Loss, x: Float[Array, " d"], width: float, key: PRNGKeyArray, n_samples: int = 1000
) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
    """The gradient of the smoothed loss, `∇(G_s * f)(x) = E ∇f(x + z)`, `z ~ N(0, s² I)`, by
    Monte Carlo with antithetic pairs (exact for a quadratic `f`, whose gradient is linear).
    Returns `(estimate, standard error)`, per coordinate."""
    x = _as_vector(x)
    _check.positive_finite("width", width)
    n_pairs = _at_least("n_samples", n_samples, 4) // 2
    pairs = _antithetic_means(jax.grad(loss), x, jnp.asarray(width, x.dtype), key, n_pairs)
    return jnp.mean(pairs, axis=0), jnp.std(pairs, axis=0, ddof=1) / math.sqrt(pairs.shape[0])


def smoothed_loss_integral(
    loss: Loss, x: Float[Array, " d"], width: float, n: int = 801
) -> Float[Array, ""]:
    """`(G_s * f)(x) = E f(x + z)`, `z ~ N(0, s² I)`, by quadrature on `n` points per axis over
    `x ± 8s`, for `d = 1` or `2` (`ValueError` otherwise). The kernel weights are normalised on
    the grid, so truncation and cell volume cancel."""
    x = _as_vector(x)
    _check.positive_finite("width", width)
    _low_dimension(x, "smoothed_loss_integral")
    return _smoothing_quadrature(loss, x, jnp.asarray(width, x.dtype), _at_least("n", n, 3))


@eqx.filter_jit
def _smoothing_quadrature(loss, x, width, n):
    points, _ = _grid_points(x, 8.0 * width, n)
    log_kernel = -0.5 * jnp.sum((points - x) ** 2, axis=-1) / width**2
    weights = jax.nn.softmax(log_kernel)
    return jnp.sum(weights * jax.vmap(loss)(points))


# -- test landscapes --------------------------------------------------------------------------


def _two_wells(dim, narrow, wide, narrow_depth, wide_depth, narrow_width, wide_width):
    for name, value in (
        ("narrow_depth", narrow_depth),
        ("wide_depth", wide_depth),
        ("narrow_width", narrow_width),
        ("wide_width", wide_width),
    ):
        _check.positive_finite(name, value)
    narrow_at = jnp.zeros(dim).at[0].set(narrow)
    wide_at = jnp.zeros(dim).at[0].set(wide)

    def loss(x):
        deep = narrow_depth * jnp.exp(-0.5 * jnp.sum((x - narrow_at) ** 2) / narrow_width**2)
        shallow = wide_depth * jnp.exp(-0.5 * jnp.sum((x - wide_at) ** 2) / wide_width**2)
        return -(deep + shallow)

    return loss, narrow_at, wide_at


def landscape_1d(
    *,
    narrow: float = -1.0,
    wide: float = 1.5,
    narrow_depth: float = 1.0,
    wide_depth: float = 0.8,
    narrow_width: float = 0.05,
    wide_width: float = 0.5,
) -> tuple[Loss, Float[Array, " 1"], Float[Array, " 1"]]:
    """A 1-D loss with a **narrow deep** and a **wide shallow** minimum:

    `f(x) = -a exp(-(x - x_n)²/(2 w_n²)) - b exp(-(x - x_w)²/(2 w_w²))`

    (`a`, `w_n`, `x_n` = `narrow_depth`, `narrow_width`, `narrow`; `b`, `w_w`, `x_w` the wide
    ones). Returns `(loss, narrow minimum, wide minimum)` as arrays of shape `(1,)`.

    Defaults: curvatures `a/w_n² = 400` and `b/w_w² = 3.2`, depth gap 0.2. With `γ = 1` the
    local-entropy loss prefers the narrow minimum below `T ≈ 0.09`, where the log-det penalty
    difference `(T/2) log((1 + 400)/(1 + 3.2))` reaches the depth gap, and the wide one above;
    smoothing at the same width `√(T/γ)` already prefers the wide one at `T = 0.002`.
    """
    return _two_wells(1, narrow, wide, narrow_depth, wide_depth, narrow_width, wide_width)


def landscape_2d(
    *,
    narrow: float = -1.0,
    wide: float = 1.5,
    narrow_depth: float = 1.0,
    wide_depth: float = 0.8,
    narrow_width: float = 0.05,
    wide_width: float = 0.5,
) -> tuple[Loss, Float[Array, " 2"], Float[Array, " 2"]]:
    """`landscape_1d` with isotropic wells in 2-D, centred on the first axis at `(narrow, 0)`
    and `(wide, 0)`. Both curvatures count twice in the log-det penalty: with `γ = 1` the
    local-entropy preference flips near `T ≈ 0.044`."""
    return _two_wells(2, narrow, wide, narrow_depth, wide_depth, narrow_width, wide_width)


def two_minima(dim: int = 1) -> tuple[Loss, Float[Array, " dim"], Float[Array, " dim"]]:
    """`landscape_1d()` (`dim=1`) or `landscape_2d()` (`dim=2`) with default parameters:
    `(loss, narrow minimum, wide minimum)`."""
    if dim not in (1, 2):
        raise ValueError(f"dim={dim!r} is invalid: choose 1 or 2.")
    return landscape_1d() if dim == 1 else landscape_2d()
