"""Flatness: Hessian spectra (Lanczos, stochastic Lanczos quadrature, Hutchinson), the local
entropy of Entropy-SGD and the Gaussian-smoothed loss (MATH.md §7-8).

Every function takes a loss `f: ℝᵈ → ℝ` as a JAX callable of a flat vector and a point `x`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
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
    "smoothed_loss",
    "smoothed_loss_integral",
    "two_minima",
]

Loss = Callable[[Float[Array, " d"]], Float[Array, ""]]


def hvp(loss: Loss, x: Float[Array, " d"], v: Float[Array, " d"]) -> Float[Array, " d"]:
    """`∇²f(x) v` by forward-over-reverse differentiation (no `d × d` matrix)."""
    return jax.jvp(jax.grad(loss), (x,), (v,))[1]


def dense_hessian(loss: Loss, x: Float[Array, " d"]) -> Float[Array, "d d"]:
    """`∇²f(x)` as a dense matrix (for checks on small `d`)."""
    return jax.hessian(loss)(x)


def lanczos(
    loss: Loss, x: Float[Array, " d"], n_iter: int, key: PRNGKeyArray
) -> tuple[Float[Array, " m"], Float[Array, " m-1"], Float[Array, "m d"]]:
    """`n_iter` Lanczos steps on `∇²f(x)` from a random unit vector, with **full
    reorthogonalisation** (each new vector is orthogonalised twice against all previous ones,
    so the Ritz values do not repeat). Returns the tridiagonal `(α, β)` and the basis `Q`.

    After a breakdown (`β ≈ 0`: an invariant subspace is exhausted) the next vector is a fresh
    random one orthogonalised against the basis, so `Q` stays orthonormal.
    """
    d = x.shape[0]
    n_iter = _check.positive_int("n_iter", n_iter)
    if n_iter > d:
        raise ValueError(f"n_iter={n_iter} is invalid: at most d={d} Lanczos steps.")
    k0, k_restart = jax.random.split(key)
    q0 = jax.random.normal(k0, (d,), x.dtype)
    basis = jnp.zeros((n_iter, d), x.dtype).at[0].set(q0 / jnp.linalg.norm(q0))

    def orthogonalise(w, basis):
        for _ in range(2):
            w = w - basis.T @ (basis @ w)
        return w

    def step(carry, i):
        basis, beta_prev = carry
        q = basis[i]
        w = hvp(loss, x, q)
        alpha = jnp.dot(w, q)
        w = orthogonalise(w, basis)  # rows > i are still zero
        beta = jnp.linalg.norm(w)
        fresh = orthogonalise(jax.random.normal(jax.random.fold_in(k_restart, i), (d,)), basis)
        broke = beta < 1e-6 * (jnp.abs(alpha) + beta_prev + 1e-30)
        nxt = jnp.where(broke, fresh / jnp.linalg.norm(fresh), w / jnp.where(broke, 1.0, beta))
        basis = jnp.where(i + 1 < n_iter, basis.at[jnp.minimum(i + 1, n_iter - 1)].set(nxt), basis)
        return (basis, jnp.where(broke, 0.0, beta)), (alpha, jnp.where(broke, 0.0, beta))

    (basis, _), (alphas, betas) = jax.lax.scan(
        step, (basis, jnp.zeros((), x.dtype)), jnp.arange(n_iter)
    )
    return alphas, betas[:-1], basis


def _tridiagonal(alphas, betas):
    return jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)


def top_eigenvalues(
    loss: Loss, x: Float[Array, " d"], k: int, key: PRNGKeyArray, n_iter: int | None = None
) -> tuple[Float[Array, " k"], Float[Array, "d k"]]:
    """The `k` largest eigenvalues of `∇²f(x)` (descending) and their Ritz vectors, from
    `n_iter` Lanczos steps (default `min(d, max(2k + 10, 30))`)."""
    k = _check.positive_int("k", k)
    d = x.shape[0]
    n_iter = min(d, max(2 * k + 10, 30)) if n_iter is None else n_iter
    if k > n_iter:
        raise ValueError(f"k={k} is invalid: at most n_iter={n_iter} eigenvalues.")
    alphas, betas, basis = lanczos(loss, x, n_iter, key)
    theta, s = jnp.linalg.eigh(_tridiagonal(alphas, betas))
    order = jnp.argsort(theta)[::-1][:k]
    return theta[order], basis.T @ s[:, order]


class SpectralDensity(NamedTuple):
    """Hessian eigenvalue density by stochastic Lanczos quadrature: `density` on `grid`, and
    per probe the Ritz values (nodes) and quadrature weights."""

    grid: Float[Array, " g"]
    density: Float[Array, " g"]
    nodes: Float[Array, "p m"]
    weights: Float[Array, "p m"]


def spectral_density(
    loss: Loss,
    x: Float[Array, " d"],
    key: PRNGKeyArray,
    n_probes: int = 8,
    n_iter: int = 40,
    grid_size: int = 400,
    sigma: float | None = None,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao, ICML 2019):

    `φ(t) = (1/P) Σₚ Σⱼ τₚⱼ N(t; θₚⱼ, σ²)`, `θₚⱼ` the Ritz values of probe `p`'s Lanczos
    tridiagonal and `τₚⱼ` the squared first components of its eigenvectors (they sum to 1).
    `σ` defaults to 1% of the spectral range (MATH.md's `1e-5` relative resolves single
    eigenvalues only on a very fine grid; pass it explicitly for that).
    """
    n_probes = _check.positive_int("n_probes", n_probes)
    n_iter = min(_check.positive_int("n_iter", n_iter), x.shape[0])

    def one_probe(k):
        alphas, betas, _ = lanczos(loss, x, n_iter, k)
        theta, s = jnp.linalg.eigh(_tridiagonal(alphas, betas))
        return theta, s[0] ** 2

    nodes, weights = jax.vmap(one_probe)(jax.random.split(key, n_probes))
    lo, hi = jnp.min(nodes), jnp.max(nodes)
    width = jnp.maximum(hi - lo, 1e-12)
    if sigma is not None:
        _check.positive_finite("sigma", sigma)
    sig = 0.01 * width if sigma is None else sigma
    grid = jnp.linspace(lo - 5 * sig, hi + 5 * sig, grid_size)
    gauss = jnp.exp(-0.5 * ((grid[:, None, None] - nodes) / sig) ** 2) / (
        math.sqrt(2 * math.pi) * sig
    )
    density = jnp.sum(gauss * weights, axis=(1, 2)) / n_probes
    return SpectralDensity(grid, density, nodes, weights)


def hutchinson_trace(
    loss: Loss, x: Float[Array, " d"], key: PRNGKeyArray, n_probes: int = 100
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """`tr ∇²f(x) ≈ (1/P) Σₚ zₚᵀ ∇²f zₚ` with Rademacher probes `zₚ` (Hutchinson 1989);
    returns the estimate and its standard error."""
    n_probes = _check.positive_int("n_probes", n_probes)
    probes = jax.random.rademacher(key, (n_probes, x.shape[0]), x.dtype)
    quad = jax.vmap(lambda z: jnp.dot(z, hvp(loss, x, z)))(probes)
    return jnp.mean(quad), jnp.std(quad, ddof=1) / math.sqrt(n_probes) if n_probes > 1 else 0.0


# -- local entropy ----------------------------------------------------------------------------


def _check_entropy(gamma, temperature):
    _check.positive_finite("gamma", gamma)
    _check.positive_finite("temperature", temperature)


class LangevinEstimate(NamedTuple):
    """`mean`: `⟨x'⟩` under the Gibbs measure; `grad`: the local-entropy loss gradient
    `γ (x - ⟨x'⟩)`; `std_error`: of `mean`, over chains; `variance`: of `x'` per coordinate."""

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
    *,
    n_steps: int = 2000,
    step_size: float = 1e-2,
    n_chains: int = 64,
    burn_in: int = 500,
) -> LangevinEstimate:
    """SGLD estimate of `⟨x'⟩` under `ρₓ(x') ∝ exp(-(f(x') + γ/2 |x - x'|²)/T)` (Chaudhari et
    al. 2017): `x' ← x' - η'(∇f(x') + γ (x' - x)) + √(2η'T) ξ` from `x' = x`, averaged over
    steps after `burn_in` and over `n_chains` independent chains. Then
    `∇(-T F)(x) = γ (x - ⟨x'⟩)` is the gradient of the local-entropy loss. The chain's `O(η')`
    discretisation bias is not removed: choose `step_size ≪ 1/(L + γ)`."""
    _check_entropy(gamma, temperature)
    _check.positive_finite("step_size", step_size)
    n_steps, n_chains = (
        _check.positive_int("n_steps", n_steps),
        _check.positive_int("n_chains", n_chains),
    )
    if not 0 <= burn_in < n_steps:
        raise ValueError(f"burn_in={burn_in} is invalid: allowed range is [0, n_steps={n_steps}).")
    noise = math.sqrt(2.0 * step_size * temperature)
    grad = jax.grad(loss)

    def chain(k):
        def step(xp, i):
            xi = jax.random.normal(jax.random.fold_in(k, i), xp.shape, xp.dtype)
            xp = xp - step_size * (grad(xp) + gamma * (xp - x)) + noise * xi
            return xp, xp

        _, samples = jax.lax.scan(step, x, jnp.arange(n_steps))
        kept = samples[burn_in:]
        return jnp.mean(kept, 0), jnp.mean(kept**2, 0)

    means, second = jax.vmap(chain)(jax.random.split(key, n_chains))
    mean = jnp.mean(means, 0)
    se = jnp.std(means, 0, ddof=1) / math.sqrt(n_chains) if n_chains > 1 else jnp.zeros_like(x)
    # pooled over chains: a within-chain variance would be biased low by autocorrelation
    variance = jnp.mean(second, 0) - mean**2
    return LangevinEstimate(mean, gamma * (x - mean), se, variance)


def local_entropy_laplace(
    loss: Loss, x: Float[Array, " d"], gamma: float, temperature: float, newton_steps: int = 20
) -> Float[Array, ""]:
    """The local-entropy loss by Laplace's method around the minimiser `x̂` of
    `f(x') + γ/2 |x - x'|²` (found by damped Newton steps from `x`, dense Hessian: small `d`):

    `u(x) ≈ f(x̂) + γ/2 |x - x̂|² + (T/2) log det(I + ∇²f(x̂)/γ)`.

    `u = -T log E[exp(-f(x')/T)]`, `x' ~ N(x, (T/γ) I)`, is `-T F(x; γ, T)` up to the constant
    `(dT/2) log(2πT/γ)` that makes `u = f` for constant `f` (MATH.md §7: `u = -T log(G *
    e^{-f/T})`), so it compares directly with `f` and with the smoothed loss. Exact for
    quadratics; near a minimum with Hessian eigenvalues `lᵢ` it is
    `f* + (T/2) Σ log(1 + lᵢ/γ)`: a log-det penalty on sharpness."""
    _check_entropy(gamma, temperature)
    d = x.shape[0]

    def inner(xp):
        return loss(xp) + 0.5 * gamma * jnp.sum((xp - x) ** 2)

    def newton(xp, _):
        h = jax.hessian(inner)(xp)
        # Levenberg damping keeps the step a descent step where f is nonconvex
        shift = jnp.maximum(0.0, -jnp.linalg.eigvalsh(h)[0]) + 1e-9
        return xp - jnp.linalg.solve(h + shift * jnp.eye(d), jax.grad(inner)(xp)), None

    x_hat, _ = jax.lax.scan(newton, x, None, length=newton_steps)
    _, logdet = jnp.linalg.slogdet(jnp.eye(d) + jax.hessian(loss)(x_hat) / gamma)
    return inner(x_hat) + 0.5 * temperature * logdet


def _grid(x, half_width, n):
    axes = [jnp.linspace(xi - half_width, xi + half_width, n) for xi in x]
    mesh = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), -1).reshape(-1, x.shape[0])
    return mesh, (2 * half_width / (n - 1)) ** x.shape[0]


def _low_dimension(x, what):
    if x.shape[0] > 2:
        raise ValueError(f"x has d={x.shape[0]}: {what} integrates on a grid, d <= 2 only.")


def local_entropy_integral(
    loss: Loss,
    x: Float[Array, " d"],
    gamma: float,
    temperature: float,
    n: int = 801,
    half_width: float | None = None,
) -> Float[Array, ""]:
    """The local-entropy loss `u(x) = -T log E[exp(-f(x')/T)]`, `x' ~ N(x, (T/γ) I)` (`-T F`
    normalised as in `local_entropy_laplace`) by quadrature on a grid (`d ≤ 2`, log-sum-exp
    for stability), `n` points per axis. The grid spans `± half_width` around `x` (default
    `8 √(T/γ)`, where the
    Gaussian factor is below `e^{-32}`). A much deeper well just outside that window can still
    dominate (`e^{-f/T}` is large): on a landscape, pass a `half_width` that covers it."""
    _check_entropy(gamma, temperature)
    _low_dimension(x, "local_entropy_integral")
    half_width = 8.0 * math.sqrt(temperature / gamma) if half_width is None else half_width
    pts, cell = _grid(x, half_width, n)
    log_w = -(jax.vmap(loss)(pts) + 0.5 * gamma * jnp.sum((pts - x) ** 2, -1)) / temperature
    log_normaliser = 0.5 * x.shape[0] * jnp.log(gamma / (2 * jnp.pi * temperature))
    return -temperature * (jax.scipy.special.logsumexp(log_w) + jnp.log(cell) + log_normaliser)


# -- Gaussian smoothing -----------------------------------------------------------------------


def smoothed_loss(
    loss: Loss, x: Float[Array, " d"], width: float, key: PRNGKeyArray, n_samples: int = 1000
) -> tuple[Float[Array, ""], Float[Array, ""], Float[Array, " d"]]:
    """`(G_s * f)(x) = E f(x + s z)`, `z ~ N(0, I)`, `s` = `width`, by Monte Carlo with
    antithetic pairs `±z`; returns `(estimate, standard error, gradient estimate E ∇f(x + s z))`.

    At equal width `s² = T/γ`, near a minimum with Hessian eigenvalues `lᵢ` this is
    `f* + (T/(2γ)) Σ lᵢ` (a trace penalty), against the local entropy's log-det penalty."""
    _check.positive_finite("width", width)
    n_pairs = max(_check.positive_int("n_samples", n_samples) // 2, 1)
    z = jax.random.normal(key, (n_pairs, x.shape[0]), x.dtype)
    value_and_grad = jax.vmap(jax.value_and_grad(loss))
    (f_plus, g_plus), (f_minus, g_minus) = (
        value_and_grad(x + width * z),
        value_and_grad(x - width * z),
    )
    pairs = 0.5 * (f_plus + f_minus)
    se = jnp.std(pairs, ddof=1) / math.sqrt(n_pairs) if n_pairs > 1 else jnp.nan
    return jnp.mean(pairs), se, 0.5 * jnp.mean(g_plus + g_minus, 0)


def smoothed_loss_integral(
    loss: Loss, x: Float[Array, " d"], width: float, n: int = 801
) -> Float[Array, ""]:
    """`E f(x + s z)` by quadrature on a `± 8 s` grid of `n` points per axis (`d ≤ 2`)."""
    _check.positive_finite("width", width)
    _low_dimension(x, "smoothed_loss_integral")
    pts, cell = _grid(x, 8.0 * width, n)
    weights = jnp.exp(-0.5 * jnp.sum((pts - x) ** 2, -1) / width**2)
    weights = weights / jnp.sum(weights)
    del cell  # normalised weights: the cell volume cancels
    return jnp.sum(weights * jax.vmap(loss)(pts))


def two_minima(dim: int = 1):
    """A landscape with a **narrow deep** minimum and a **wide shallow** one:
    `f(x) = -exp(-|x - n|²/(2·0.05²)) - 0.8 exp(-|x - w|²/(2·0.5²))`, `n = -1`, `w = 1.5` on the
    first axis (`dim` 1 or 2). Hessians `≈ 400 I` and `3.2 I`. Returns `(loss, narrow, wide)`.

    With `γ = 1` the local-entropy loss prefers the narrow minimum below `T ≈ 0.09` (its
    log-det penalty `(T/2) log(1 + l/γ)` then loses to the depth difference 0.2) and the wide
    one above it."""
    if dim not in (1, 2):
        raise ValueError(f"dim={dim!r} is invalid: 1 or 2.")
    narrow = jnp.zeros(dim).at[0].set(-1.0)
    wide = jnp.zeros(dim).at[0].set(1.5)

    def loss(x):
        deep = jnp.exp(-0.5 * jnp.sum((x - narrow) ** 2) / 0.05**2)
        shallow = 0.8 * jnp.exp(-0.5 * jnp.sum((x - wide) ** 2) / 0.5**2)
        return -(deep + shallow)

    return loss, narrow, wide
