"""Noise models: closed-form moments of sign(g) against Monte Carlo of their own samplers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import sdelens as sl

N_MC = 400_000
GRAD = jnp.array([0.4, -0.9, 0.05, 2.0])
SCALE = jnp.array([0.5, 1.0, 0.2, 1.5])


def mc(noise, grad, seed=0, n=N_MC):
    mean, cov = sl.monte_carlo_sign_moments(noise, grad, jax.random.key(seed), n)
    return np.asarray(mean, dtype=float), np.asarray(cov, dtype=float)


def assert_sign_mean_close(exact, est, n=N_MC):
    # sign g is ±1: the SE of its sample mean is sqrt((1 - m²)/n); 5 SE (+ float32 rounding).
    se = np.sqrt(np.clip(1 - exact**2, 0, None) / n)
    assert np.all(np.abs(est - exact) <= 5 * se + 1e-6), (exact, est)


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
    mean, cov = mc(noise, GRAD)
    assert_sign_mean_close(exact, mean)
    cov_exact = np.asarray(noise.sign_cov(GRAD), dtype=float)
    np.testing.assert_allclose(np.diag(cov_exact), 1 - exact**2, rtol=1e-6)
    # Var of a centred ±1 product is ≤ 1: SE of each covariance entry ≤ 1/√n.
    assert np.all(np.abs(cov - cov_exact) <= 5 / math.sqrt(N_MC))


CORR = jnp.array([[1.0, 0.6, 0.2], [0.6, 1.0, -0.3], [0.2, -0.3, 1.0]])


def test_gaussian_matrix_scale_bivariate_formula():
    root = jnp.linalg.cholesky(CORR) * jnp.array([0.5, 1.0, 2.0])[:, None]
    noise = sl.GaussianNoise(scale=root)
    grad = jnp.array([0.3, -0.5, 1.0])
    exact = np.asarray(noise.sign_cov(grad), dtype=float)
    mean, cov = mc(noise, grad, seed=1)
    assert_sign_mean_close(np.asarray(noise.sign_mean(grad), dtype=float), mean)
    assert np.all(np.abs(cov - exact) <= 5 / math.sqrt(N_MC))
    assert abs(exact[0, 1]) > 0.1  # the off-diagonal is really tested
    # At ∇f = 0 the off-diagonal is (2/π) arcsin ρ exactly (Sheppard's theorem).
    zero = np.asarray(noise.sign_cov(jnp.zeros(3)), dtype=float)
    rho = np.asarray(CORR)
    np.testing.assert_allclose(zero, 2 / np.pi * np.arcsin(rho), atol=2e-6)
    root_op = np.asarray(noise.sign_cov_sqrt(grad).as_matrix(), dtype=float)
    np.testing.assert_allclose(root_op @ root_op.T, exact, atol=1e-5)


@pytest.mark.parametrize("df", [1.0, 1.5, 3.0, 10.0])
def test_student_t_sign_mean(df):
    noise = sl.StudentTNoise(df=df, scale=SCALE)
    exact = np.asarray(noise.sign_mean(GRAD), dtype=float)
    cdf = 2 * scipy.stats.t.cdf(np.asarray(GRAD) / np.asarray(SCALE), df) - 1
    np.testing.assert_allclose(exact, cdf, atol=2e-6)
    mean, cov = mc(noise, GRAD, seed=2)
    assert_sign_mean_close(exact, mean)
    assert np.all(np.abs(np.diag(cov) - (1 - exact**2)) <= 5 / math.sqrt(N_MC))
    assert noise.has_finite_variance == (df > 2)


def test_student_t_variance_and_phase3_slope():
    noise = sl.StudentTNoise(df=5.0, scale=2.0)
    np.testing.assert_allclose(noise.cov_sqrt(3).diagonal, 2.0 * math.sqrt(5 / 3), rtol=1e-6)
    z = np.asarray(noise.sample(jax.random.key(3), (400_000,)), dtype=float)
    var = z.var()
    # df = 5 has a finite 4th moment: SE of the sample variance = sqrt((E z⁴ - var²)/n).
    kurt4 = 3 * (2.0**4) * 25 / (3 * 1)  # E z⁴ = 3 s⁴ ν² / ((ν-2)(ν-4))
    se = math.sqrt((kurt4 - (4 * 5 / 3) ** 2) / z.size)
    assert abs(var - 4 * 5 / 3) <= 6 * se
    for df in (1.5, 3.0, 30.0):
        slope = sl.StudentTNoise(df=df, scale=1.0).phase3_slope()
        assert slope == pytest.approx(2 * scipy.stats.t.pdf(0, df), rel=1e-10)
    assert sl.StudentTNoise(df=1e6, scale=1.0).phase3_slope() == pytest.approx(
        math.sqrt(2 / math.pi), rel=1e-5
    )
    with pytest.raises(ValueError, match="infinite variance"):
        sl.StudentTNoise(df=2.0, scale=1.0).cov_sqrt(3)


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


def test_signsgd_sde_with_sampled_noise_tracks_the_optimizer():
    prob = sl.Quadratic(
        h=jnp.array([1.0, 3.0]), noise=sl.SampledNoise(sampler=laplace, n_samples=4096)
    )
    both = sl.optimizer_vs_sde(
        sl.SignSGD(lr=0.01), prob, jnp.array([1.0, -1.0]), n_steps=300, n_paths=1000, save_every=30
    )
    c = both.comparison
    assert np.all(np.abs(c.diff) <= 4 * c.se_diff + 0.01 * 3 * np.abs(c.mean_loss_a))


def test_sign_phase_thresholds():
    noise = sl.GaussianNoise(scale=1.0)
    grad = jnp.sqrt(2.0) * jnp.array([2.0, 1.2, 0.5, -2.0])  # |Y| = 2, 1.2, 0.5, 2
    np.testing.assert_array_equal(sl.sign_phase(noise, grad), [1, 2, 3, 1])
    t = sl.StudentTNoise(df=3.0, scale=1.0)
    np.testing.assert_array_equal(sl.sign_phase(t, grad), [1, 2, 3, 1])
    with pytest.raises(ValueError, match="low"):
        sl.sign_phase(noise, grad, low=2.0, high=1.0)


@pytest.mark.parametrize("rho", [0.3, -0.7, 0.9, 0.99])
def test_bivariate_normal_cdf_against_scipy(rho):
    from sdelens._noise import _bivariate_normal_cdf

    for h, k in [(0.5, -0.3), (1.2, 1.5), (-2.0, 0.4)]:
        exact = scipy.stats.multivariate_normal([0, 0], [[1, rho], [rho, 1]]).cdf([h, k])
        got = float(_bivariate_normal_cdf(jnp.asarray(h), jnp.asarray(k), jnp.asarray(rho)))
        assert got == pytest.approx(exact, abs=2e-7)
