"""`sign_phase`: SignSGD's three phases (Compagnoni et al. 2025, Lemma 3.4) from the
signal-to-noise ratio `|∂ᵢf| / (√2 wᵢ)`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl


def test_sign_phase_thresholds():
    noise = sl.GaussianNoise(scale=1.0)
    grad = jnp.sqrt(2.0) * jnp.array([2.0, 1.2, 0.5, -2.0])  # |Y| = 2, 1.2, 0.5, 2
    np.testing.assert_array_equal(sl.sign_phase(noise, grad), [1, 2, 3, 1])
    t = sl.StudentTNoise(df=3.0, scale=1.0)
    np.testing.assert_array_equal(sl.sign_phase(t, grad), [1, 2, 3, 1])
    with pytest.raises(ValueError, match="low"):
        sl.sign_phase(noise, grad, low=2.0, high=1.0)


def test_sign_phase_uses_the_width_and_custom_thresholds():
    # Width per coordinate: the Gaussian std (matrix scale: √Σᵢᵢ), the Student-t scale.
    grad = jnp.sqrt(2.0) * jnp.array([1.2, 1.2, 1.2])
    noise = sl.GaussianNoise(scale=jnp.array([0.5, 1.0, 2.0]))  # |Y| = 2.4, 1.2, 0.6
    np.testing.assert_array_equal(sl.sign_phase(noise, grad), [1, 2, 3])
    np.testing.assert_array_equal(sl.sign_phase(noise, grad, low=0.5, high=3.0), [2, 2, 2])
    matrix = sl.GaussianNoise(
        scale=jnp.array([[0.3, 0.0], [0.0, 2.0]]) @ jnp.array([[0.6, 0.8], [-0.8, 0.6]])
    )  # rows of norm 0.3 and 2: std 0.3, 2
    np.testing.assert_array_equal(sl.sign_phase(matrix, grad[:2]), [1, 3])


def test_sign_phase_refuses_noise_without_a_width():
    sampled = sl.SampledNoise(sampler=lambda key, shape: jax.random.normal(key, shape))
    with pytest.raises(ValueError, match="GaussianNoise and StudentTNoise"):
        sl.sign_phase(sampled, jnp.ones(2))
    with pytest.raises(ValueError, match="GaussianNoise and StudentTNoise"):
        sl.sign_phase(sl.MinibatchNoise(batch_size=4), jnp.ones(2))
