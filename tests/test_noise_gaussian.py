"""`GaussianNoise`: closed-form moments of sign(g) against Monte Carlo of its own sampler, the
bivariate normal CDF, the moments the SDEs ask for at a point, and bad scales."""

import math

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.stats
from helpers import assert_sign_mean_close, mc_sign_moments

import sdelens as sl
from sdelens._noise._gaussian import bivariate_normal_cdf

GRAD = jnp.array([0.4, -0.9, 0.05, 2.0])
SCALE = jnp.array([0.5, 1.0, 0.2, 1.5])
N_MC = 400_000  # the default sample size of helpers.mc_sign_moments
CORR = jnp.array([[1.0, 0.6, 0.2], [0.6, 1.0, -0.3], [0.2, -0.3, 1.0]])


def test_gaussian_vector_scale_erf_and_monte_carlo():
    noise = sl.GaussianNoise(scale=SCALE)
    exact = np.asarray(noise.sign_mean(GRAD), dtype=float)
    np.testing.assert_allclose(
        exact,
        [
            math.erf(g / (math.sqrt(2) * s))
            for g, s in zip(GRAD.tolist(), SCALE.tolist(), strict=True)
        ],
        rtol=1e-5,
    )
    mean, cov = mc_sign_moments(noise, GRAD)
    assert_sign_mean_close(exact, mean)
    cov_exact = np.asarray(noise.sign_cov(GRAD), dtype=float)
    np.testing.assert_allclose(np.diag(cov_exact), 1 - exact**2, rtol=1e-6)
    # Var of a centred ±1 product is ≤ 1: SE of each covariance entry ≤ 1/√n.
    assert np.all(np.abs(cov - cov_exact) <= 5 / math.sqrt(N_MC))


def test_gaussian_matrix_scale_bivariate_formula():
    root = jnp.linalg.cholesky(CORR) * jnp.array([0.5, 1.0, 2.0])[:, None]
    noise = sl.GaussianNoise(scale=root)
    grad = jnp.array([0.3, -0.5, 1.0])
    exact = np.asarray(noise.sign_cov(grad), dtype=float)
    mean, cov = mc_sign_moments(noise, grad, seed=1)
    assert_sign_mean_close(np.asarray(noise.sign_mean(grad), dtype=float), mean)
    assert np.all(np.abs(cov - exact) <= 5 / math.sqrt(N_MC))
    assert abs(exact[0, 1]) > 0.1  # the off-diagonal is really tested
    # At ∇f = 0 the off-diagonal is (2/π) arcsin ρ exactly (Sheppard's theorem).
    zero = np.asarray(noise.sign_cov(jnp.zeros(3)), dtype=float)
    rho = np.asarray(CORR)
    np.testing.assert_allclose(zero, 2 / np.pi * np.arcsin(rho), atol=2e-6)
    root_op = np.asarray(noise.sign_cov_sqrt(grad).as_matrix(), dtype=float)
    np.testing.assert_allclose(root_op @ root_op.T, exact, atol=1e-5)


@pytest.mark.parametrize("rho", [0.3, -0.7, 0.9, 0.99])
def test_bivariate_normal_cdf_against_scipy(rho):
    for h, k in [(0.5, -0.3), (1.2, 1.5), (-2.0, 0.4)]:
        exact = scipy.stats.multivariate_normal([0, 0], [[1, rho], [rho, 1]]).cdf([h, k])
        got = float(bivariate_normal_cdf(jnp.asarray(h), jnp.asarray(k), jnp.asarray(rho)))
        assert got == pytest.approx(exact, abs=2e-7)


def test_moments_at_a_point_are_those_of_the_gradient():
    """Additive noise: what the SDEs ask at `x` is the closed form at `∇f(x)`; `Σ` is `S Sᵀ`."""
    root = jnp.linalg.cholesky(CORR) * jnp.array([0.5, 1.0, 2.0])[:, None]
    noise = sl.GaussianNoise(scale=root)
    prob = sl.Quadratic(h=jnp.array([1.0, 2.0, 4.0]), noise=noise)
    x = jnp.array([0.3, -0.2, 0.1])
    grad = prob.grad(x)
    sigma = np.asarray(root @ root.T)
    np.testing.assert_allclose(noise.covariance(3), sigma, rtol=1e-6)
    np.testing.assert_allclose(noise.variance_at(prob, x), np.diag(sigma), rtol=1e-6)
    np.testing.assert_allclose(noise.std(3), np.sqrt(np.diag(sigma)), rtol=1e-6)
    cov_root = noise.cov_sqrt_at(prob, x).as_matrix()
    np.testing.assert_allclose(cov_root @ cov_root.T, sigma, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(noise.sign_mean_at(prob, x), noise.sign_mean(grad), rtol=1e-6)
    sign_root = noise.sign_cov_sqrt_at(prob, x).as_matrix()
    np.testing.assert_allclose(sign_root @ sign_root.T, noise.sign_cov(grad), atol=1e-5)
    assert not noise.is_diagonal and noise.dim == 3
    # The stochastic gradient is ∇f + Z with Z = S ξ drawn from the key.
    key = jax.random.key(4)
    np.testing.assert_allclose(
        noise.stochastic_grad(prob, x, key), grad + root @ jax.random.normal(key, (3,)), rtol=1e-6
    )


def test_diagonal_scale_operators_and_scaling():
    noise = sl.GaussianNoise(scale=0.5)
    assert noise.dim is None and noise.is_diagonal and noise.has_finite_variance
    root = noise.cov_sqrt(3)
    assert isinstance(root, lx.DiagonalLinearOperator)
    np.testing.assert_allclose(root.diagonal, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(
        noise.sign_cov(GRAD[:3]), np.diag(1 - noise.sign_mean(GRAD[:3]) ** 2)
    )
    np.testing.assert_allclose(noise.scaled(0.5).std(2), [0.25, 0.25])
    assert noise.phase3_slope() == pytest.approx(math.sqrt(2 / math.pi), rel=1e-12)
    np.testing.assert_allclose(noise.sign_width(2), [0.5, 0.5])
    z = np.asarray(noise.sample(jax.random.key(0), (200_000,)), dtype=float)
    # Var of the sample variance of N(0, s²) is 2 s⁴/n.
    assert abs(z.var() - 0.25) <= 5 * math.sqrt(2 * 0.25**2 / z.size)


@pytest.mark.parametrize(
    "scale", [-1.0, 0.0, float("nan"), jnp.array([1.0, -1.0]), jnp.array([1.0, 0.0])]
)
def test_gaussian_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        sl.GaussianNoise(scale=scale)


def test_singular_and_nonsquare_matrix_scale():
    with pytest.raises(ValueError, match="positive definite"):
        sl.GaussianNoise(scale=jnp.array([[1.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        sl.GaussianNoise(scale=jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="scalar, a vector or a square matrix"):
        sl.GaussianNoise(scale=jnp.ones((2, 2, 2)))
