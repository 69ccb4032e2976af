"""`SampledNoise`: noise known only by its sampler, every moment by Monte Carlo (Laplace noise,
whose sign mean has a closed form to check against), and the SignSGD SDE it drives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_sign_mean_close

import sdelens as sl


def laplace(key, shape, b=0.7):
    return b * jax.random.laplace(key, shape)


def test_sampled_noise_falls_back_to_monte_carlo():
    n = 20_000
    noise = sl.SampledNoise(sampler=laplace, n_samples=n)
    grad = jnp.array([0.2, -1.0, 0.0])
    exact = np.sign(np.asarray(grad)) * (1 - np.exp(-np.abs(np.asarray(grad)) / 0.7))
    est = np.asarray(noise.sign_mean(grad), dtype=float)
    assert_sign_mean_close(exact, est, n=n)
    np.testing.assert_array_equal(est, np.asarray(noise.sign_mean(grad)))  # common random numbers
    with pytest.raises(ValueError, match="covariance_sqrt"):
        noise.cov_sqrt(3)
    with pytest.raises(ValueError, match="n_samples=0"):
        sl.SampledNoise(sampler=laplace, n_samples=0)


def test_sign_covariance_and_known_covariance():
    """`Cov(sign g)` is the sample covariance of the same draws (independent coordinates: the
    diagonal is `1 - m²` of the estimated mean, off-diagonals within Monte Carlo error of 0);
    with `covariance_sqrt` the SGD moments exist."""
    n = 20_000
    noise = sl.SampledNoise(sampler=laplace, n_samples=n)
    grad = jnp.array([0.2, -1.0, 0.0])
    mean = np.asarray(noise.sign_mean(grad), dtype=float)
    cov = np.asarray(noise.sign_cov(grad), dtype=float)
    np.testing.assert_allclose(np.diag(cov), 1 - mean**2, rtol=1e-4, atol=1e-5)
    off = cov[~np.eye(3, dtype=bool)]
    assert np.all(np.abs(off) <= 5 / np.sqrt(n))
    root = np.asarray(noise.sign_cov_sqrt(grad).as_matrix(), dtype=float)
    np.testing.assert_allclose(root @ root.T, cov, atol=1e-5)
    assert not noise.has_finite_variance and noise.dim is None
    # Laplace(b) has variance 2 b²: give its root and the variance is known.
    known = sl.SampledNoise(sampler=laplace, covariance_sqrt=0.7 * np.sqrt(2) * jnp.eye(3))
    assert known.has_finite_variance and known.dim == 3
    prob = sl.Quadratic(h=jnp.ones(3), noise=known)
    np.testing.assert_allclose(
        known.variance_at(prob, jnp.zeros(3)), 2 * 0.49 * np.ones(3), rtol=1e-6
    )


def test_what_sampled_noise_cannot_do():
    noise = sl.SampledNoise(sampler=laplace)
    with pytest.raises(NotImplementedError, match="phase-3 slope"):
        noise.phase3_slope()
    with pytest.raises(NotImplementedError, match="sign width"):
        noise.sign_width(3)
    with pytest.raises(ValueError, match="cannot be rescaled"):
        noise.scaled(0.5)
    with pytest.raises(ValueError, match="sampler="):
        sl.SampledNoise(sampler=3.0)
    with pytest.raises(ValueError, match="n_samples="):
        sl.monte_carlo_sign_moments(noise, jnp.zeros(2), jax.random.key(0), 0)
    with pytest.raises(ValueError, match="SignSGD"):
        sl.sde_for(sl.SGD(lr=0.1), sl.Quadratic(h=jnp.ones(2), noise=noise))


def test_signsgd_sde_with_sampled_noise_tracks_the_optimizer():
    prob = sl.Quadratic(
        h=jnp.array([1.0, 3.0]), noise=sl.SampledNoise(sampler=laplace, n_samples=4096)
    )
    both = sl.optimizer_vs_sde(
        sl.SignSGD(lr=0.01),
        prob,
        jnp.array([1.0, -1.0]),
        n_steps=300,
        n_paths=1000,
        key=jax.random.key(0),
        save_every=30,
    )
    c = both.comparison
    assert np.all(np.abs(c.diff) <= 4 * c.se_diff + 0.01 * 3 * np.abs(c.mean_loss_a))
