"""Helpers shared by several test modules (imported explicitly, not through conftest)."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def tiny_network():
    """A 2-layer tanh network (3 → 8 → 1) on 40 fixed random points: d = 24 + 8 + 8 + 1 = 41
    parameters, at a random parameter vector (its Hessian is indefinite), in the default
    precision (float64 under `jax.enable_x64`)."""
    inputs = jax.random.normal(jax.random.key(0), (40, 3))
    targets = jnp.sin(inputs[:, 0]) + 0.5 * inputs[:, 1]

    def loss(p):
        w1, b1, w2, b2 = p[:24].reshape(3, 8), p[24:32], p[32:40], p[40]
        return jnp.mean((jnp.tanh(inputs @ w1 + b1) @ w2 + b2 - targets) ** 2)

    return loss, 0.5 * jax.random.normal(jax.random.key(1), (41,))


def quadratic(h):
    """`f(x) = ½ Σ hᵢ xᵢ²`."""
    return lambda x: 0.5 * jnp.sum(h * x**2)


class LinearChain(NamedTuple):
    variance: float
    tau: float
    radius: float


def langevin_on_quadratic(k, step_size, temperature, sampler="sgld", friction=0.1):
    """The Langevin chain of `sdelens._langevin` on `U(x) = ½ k x²` (scalar `k`) is the linear
    Gaussian recurrence `z ← A z + b ξ` in `z = (x, p)`: SGHMC has
    `A = [[1 - ηk, 1 - c], [-ηk, 1 - c]]`, `b = √(2cηT) (1, 1)`, and SGLD is `c = 1`.

    Returns the exact stationary variance of `x`, `Σ₀₀` with `Σ = A Σ Aᵀ + b bᵀ`; the
    integrated autocorrelation time of `x²`, `τ = 1 + 2 Σ_{j≥1} ρⱼ²` (`ρⱼ` the lag-`j`
    autocorrelation of `x`; for a Gaussian, corr(x₀², xⱼ²) = ρⱼ²), so that the mean of `x²` over
    `n` stationary steps has relative standard error `√(2τ/n)`; and the spectral radius of `A`,
    the factor by which the distance to stationarity shrinks per step."""
    c = 1.0 if sampler == "sgld" else friction
    a = step_size * k
    A = np.array([[1 - a, 1 - c], [-a, 1 - c]])
    b = np.sqrt(2 * c * step_size * temperature) * np.ones(2)
    sigma = np.linalg.solve(np.eye(4) - np.kron(A, A), np.outer(b, b).ravel()).reshape(2, 2)
    # Cov(x_j, x_0) = (A^j Σ)₀₀ = Σₘ wₘ λₘʲ with A = V diag(λ) V⁻¹: the sum over j of the
    # squared autocorrelations is then a double geometric series
    lam, vecs = np.linalg.eig(A)
    w = vecs[0] * (np.linalg.solve(vecs, sigma[:, 0]))
    ll = np.outer(lam, lam)
    tail = np.real(np.sum(np.outer(w, w) * ll / (1 - ll))) / sigma[0, 0] ** 2
    return LinearChain(sigma[0, 0], 1.0 + 2.0 * tail, np.max(np.abs(lam)))


def precision_fixture():
    """A fixture running each test that takes it once in float32 and once in float64 (inside
    `jax.enable_x64`), yielding `"float32"` or `"float64"`: the float64 run checks the
    tolerances float32 rounding cannot reach. Use as `precision = precision_fixture()`."""

    @pytest.fixture(params=["float32", "float64"])
    def precision(request):
        with jax.enable_x64(request.param == "float64"):
            yield request.param

    return precision
