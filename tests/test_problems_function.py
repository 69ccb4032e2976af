"""`Problem`: any JAX loss with a noise model: its gradient and dimension, bad input, and a
non-quadratic loss run by the optimizer and its SDE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl


def quartic(x):
    return jnp.sum(x**4 / 4 + x**2 / 2)


def test_noise_dimension_mismatch():
    with pytest.raises(ValueError, match="dim=3"):
        sl.Problem(loss=lambda x: jnp.sum(x**2), noise=sl.GaussianNoise(scale=jnp.ones(2)), dim=3)
    with pytest.raises(ValueError, match="loss="):
        sl.Problem(loss=3.0, noise=sl.GaussianNoise(scale=1.0))
    with pytest.raises(ValueError, match="noise="):
        sl.Problem(loss=quartic, noise="gaussian")
    with pytest.raises(ValueError, match="dim=0"):
        sl.Problem(loss=quartic, noise=sl.GaussianNoise(scale=1.0), dim=0)


def test_gradient_dimension_and_start_point():
    prob = sl.Problem(loss=quartic, noise=sl.GaussianNoise(scale=0.5))
    x = jnp.array([1.0, -2.0])
    assert float(prob.loss(x)) == pytest.approx(0.25 + 0.5 + 4.0 + 2.0)
    np.testing.assert_allclose(prob.grad(x), [1.0 + 1.0, -8.0 - 2.0], rtol=1e-6)
    assert prob.dim is None and prob.n_examples is None and prob.name == "problem"
    assert sl.Problem(quartic, sl.GaussianNoise(scale=jnp.ones(4))).dim == 4  # from the noise
    fixed = sl.Problem(quartic, sl.GaussianNoise(scale=0.5), dim=3)
    assert fixed.dim == 3 and fixed.with_noise(sl.GaussianNoise(scale=0.1)).dim == 3
    with pytest.raises(ValueError, match="d=2 .* but the problem has d=3"):
        fixed.check_x0(jnp.ones(2))
    assert prob.check_x0(jnp.ones((5, 7))).shape == (5, 7)  # any d when nothing fixes it
    # One stochastic gradient: ∇f + Z, Z drawn by the noise model from the key.
    key = jax.random.key(3)
    np.testing.assert_allclose(
        prob.stochastic_grad(x, key), prob.grad(x) + 0.5 * jax.random.normal(key, (2,)), rtol=1e-6
    )


def test_problem_with_custom_loss_runs_both_ways():
    """`Problem` with a non-quadratic loss f = Σ x⁴/4 + x²/2: optimizer and SDE agree."""
    prob = sl.Problem(loss=quartic, noise=sl.GaussianNoise(scale=0.5))
    both = sl.optimizer_vs_sde(
        sl.SignSGD(lr=1e-2),
        prob,
        jnp.ones(2),
        n_steps=400,
        n_paths=2000,
        key=jax.random.key(0),
        save_every=20,
    )
    c = both.comparison
    assert np.all(np.abs(c.diff) <= 4 * c.se_diff + 1e-2 * 4 * np.abs(c.mean_loss_a))
    assert both.theory is None
