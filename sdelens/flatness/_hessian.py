"""Hessian-vector products, Lanczos with full reorthogonalisation and the top Hessian
eigenvalues (docs/math.md §8)."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _check
from ._common import Loss, as_vector


def hvp(loss: Loss, x: Float[Array, " d"], v: Float[Array, " d"]) -> Float[Array, " d"]:
    """The Hessian-vector product `∇²f(x) v`, by forward-over-reverse differentiation:
    `jax.jvp(jax.grad(f), (x,), (v,))`. Costs about two gradients; no `d × d` matrix."""
    return jax.jvp(jax.grad(loss), (x,), (v,))[1]


@eqx.filter_jit
def dense_hessian(loss: Loss, x: Float[Array, " d"]) -> Float[Array, "d d"]:
    """The dense Hessian `∇²f(x)` (`jax.hessian`, compiled): for checks on small `d` only."""
    return jax.hessian(loss)(x)


def hvp_operator(loss: Loss, x: Float[Array, " d"]) -> Callable:
    """`v ↦ ∇²f(x) v`, for many products at one `x`."""
    # Linearising once stores the forward pass; every further product is one tangent pass.
    return jax.linearize(jax.grad(loss), x)[1]


def _project_out(w, basis):
    return w - basis.T @ (basis @ w)


def _orthogonalise(w, basis):
    # Classical Gram-Schmidt twice ("twice is enough"): one pass leaves O(ε κ) components along
    # the basis, which Lanczos amplifies into spurious copies of converged eigenvalues.
    return _project_out(_project_out(w, basis), basis)


def lanczos_operator(matvec: Callable, start, n_iter: int, key: PRNGKeyArray):
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
    x = as_vector(x)
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
    return lanczos_operator(hvp_operator(loss, x), start, n_iter, key)


def tridiagonal(alphas, betas):
    """The symmetric tridiagonal `T` with diagonal `alphas` and off-diagonals `betas`."""
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
    x = as_vector(x)
    d = x.shape[0]
    k = _check.positive_int("k", k)
    n_iter = max(2 * k + 10, 30) if n_iter is None else _check.positive_int("n_iter", n_iter)
    n_iter = min(n_iter, d)
    if k > n_iter:
        raise ValueError(f"k={k} is invalid: at most n_iter={n_iter} (and d={d}) eigenvalues.")
    alphas, betas, basis = lanczos(loss, x, n_iter, key)
    theta, vectors = jnp.linalg.eigh(tridiagonal(alphas, betas))
    order = jnp.argsort(theta)[::-1][:k]
    return theta[order], basis.T @ vectors[:, order]
