"""`StudentTNoise`: the t-CDF sign mean against scipy and Monte Carlo, the variance and phase-3
slope `c_ν`, infinite variance, and bad parameters."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from helpers import assert_sign_mean_close, mc_sign_moments

import sdelens as sl

N_MC = 400_000  # the default sample size of helpers.mc_sign_moments
GRAD = jnp.array([0.4, -0.9, 0.05, 2.0])
SCALE = jnp.array([0.5, 1.0, 0.2, 1.5])


@pytest.mark.parametrize("df", [1.0, 1.5, 3.0, 10.0])
def test_student_t_sign_mean(df):
    noise = sl.StudentTNoise(df=df, scale=SCALE)
    exact = np.asarray(noise.sign_mean(GRAD), dtype=float)
    cdf = 2 * scipy.stats.t.cdf(np.asarray(GRAD) / np.asarray(SCALE), df) - 1
    np.testing.assert_allclose(exact, cdf, atol=2e-6)
    mean, cov = mc_sign_moments(noise, GRAD, seed=2)
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


def test_moments_at_a_point_and_infinite_variance():
    """What the SDEs ask at `x`: the sign moments at `∇f(x)`, the variance `s² ν/(ν-2)`; the
    SDEs that need `Σ` are refused for `ν <= 2`, naming SignSGD."""
    prob = sl.Quadratic(h=jnp.array([1.0, 2.0]), noise=sl.StudentTNoise(df=4.0, scale=[0.5, 1.0]))
    x = jnp.array([0.3, -0.6])
    noise = prob.noise
    np.testing.assert_allclose(noise.variance_at(prob, x), [0.25 * 2.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(
        noise.sign_mean_at(prob, x), noise.sign_mean(prob.grad(x)), rtol=1e-6
    )
    root = noise.sign_cov_sqrt_at(prob, x).as_matrix()
    np.testing.assert_allclose(root @ root.T, noise.sign_cov(prob.grad(x)), atol=1e-6)
    np.testing.assert_allclose(noise.sign_width(2), [0.5, 1.0])
    np.testing.assert_allclose(noise.scaled(2.0).scale, [1.0, 2.0])
    assert float(noise.scaled(2.0).df) == 4.0
    assert noise.label == "StudentTNoise(df=4)"
    heavy = sl.StudentTNoise(df=1.5, scale=1.0)
    with pytest.raises(ValueError, match="use SignSGD"):
        heavy.require_finite_variance("SGD")
    noise.require_finite_variance("SGD")  # df = 4 has a variance


@pytest.mark.parametrize("df", [0.0, -1.0, float("nan")])
def test_student_t_df(df):
    with pytest.raises(ValueError, match="df="):
        sl.StudentTNoise(df=df, scale=1.0)


def test_student_t_matrix_scale():
    with pytest.raises(ValueError, match="scalar or vector"):
        sl.StudentTNoise(df=3.0, scale=jnp.eye(2))
    with pytest.raises(ValueError, match=r"df=\[3, 4\] is invalid: one number is required"):
        sl.StudentTNoise(df=jnp.array([3.0, 4.0]), scale=1.0)
