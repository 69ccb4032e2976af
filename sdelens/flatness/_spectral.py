"""The Hessian eigenvalue density by stochastic Lanczos quadrature and Hutchinson's trace
estimator (docs/math.md §8)."""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _check
from ._common import Loss, as_vector, at_least
from ._hessian import hvp_operator, lanczos_operator, tridiagonal

# Relative width of the SLQ Gaussian kernel (docs/math.md §8, as in PyHessian).
_SLQ_RELATIVE_SIGMA = 1e-5
# A Gaussian kernel is summed over ±8σ and sampled every σ/2: the Riemann sum of a Gaussian at
# that spacing is exact to ~1e-30, so the density integrates to 1 up to rounding.
_KERNEL_REACH = 8.0
_GRID_STEPS_PER_SIGMA = 2
_MAX_GRID_POINTS = 2**21


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
    matvec = hvp_operator(loss, x)

    def quadrature(start, k):
        alphas, betas, _ = lanczos_operator(matvec, start, n_iter, k)
        theta, vectors = jnp.linalg.eigh(tridiagonal(alphas, betas))
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

    `sigma` defaults to `1e-5 (θ_max - θ_min)` (docs/math.md §8), which resolves single
    eigenvalues; larger values give a smoother curve. `grid` is an array of points, a number of
    points spanning the Ritz values `± 8σ`, or `None`: points every `σ/2` over that span
    (`2·10⁵` points at the default `sigma`), on which `φ` integrates to 1 up to rounding — a
    coarser grid needs a larger `sigma`. `n_iter` above `d` is reduced to `d`.

    Not jit-compatible as a whole (the default grid's size depends on the spectrum); the Lanczos
    runs are.
    """
    x = as_vector(x)
    d = x.shape[0]
    n_probes = _check.positive_int("n_probes", n_probes)
    n_iter = min(_check.positive_int("n_iter", n_iter), d)
    _check.choice("probe", probe, ("rademacher", "gaussian"))
    if sigma is not None:
        _check.positive_finite("sigma", sigma)
    if grid is not None and not isinstance(grid, (int, np.integer)) and jnp.ndim(grid) != 1:
        raise ValueError(f"grid has shape {jnp.shape(grid)}: a 1-D array or a point count.")
    if isinstance(grid, (int, np.integer)):
        at_least("grid", grid, 2)

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
    x = as_vector(x)
    return _hutchinson(loss, x, key, at_least("n_probes", n_probes, 2))


@eqx.filter_jit
def _hutchinson(loss, x, key, n_probes):
    matvec = hvp_operator(loss, x)
    probes = jax.random.rademacher(key, (n_probes, x.shape[0]), x.dtype)
    terms = jnp.sum(probes * jax.vmap(matvec)(probes), axis=1)
    return jnp.mean(terms), jnp.std(terms, ddof=1) / math.sqrt(n_probes)
