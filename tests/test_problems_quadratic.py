"""`Quadratic`: the loss and gradient, the standard test quadratic, and bad curvature, noise
and minimum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

H = jnp.array([1.0, 2.0, 4.0])


@pytest.mark.parametrize(
    "h,needle",
    [
        (jnp.array([1.0, -2.0]), "h="),
        (jnp.array([[1.0, 2.0], [0.0, 1.0]]), "not symmetric"),
        (jnp.array([[1.0, 2.0], [2.0, 1.0]]), "not positive definite"),
        (jnp.ones((2, 2, 2)), "h has shape"),
    ],
)
def test_quadratic_curvature(h, needle):
    with pytest.raises(ValueError, match=needle):
        sl.Quadratic(h=h, noise=sl.GaussianNoise(scale=1.0))


def test_noise_dimension_mismatch():
    with pytest.raises(ValueError, match="dimension"):
        sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=jnp.ones(2)))
    with pytest.raises(ValueError, match="minimum"):
        sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=1.0), minimum=jnp.zeros(2))
    with pytest.raises(ValueError, match="noise="):
        sl.Quadratic(h=H, noise=1.0)


def test_valid_configuration_passes():
    prob = sl.Quadratic(
        h=jnp.array([[2.0, 0.5], [0.5, 1.0]]), noise=sl.StudentTNoise(df=0.5, scale=[1.0, 2.0])
    )
    assert prob.dim == 2 and not prob.noise.has_finite_variance


def test_loss_gradient_and_minimum():
    """Field order `(h, noise, minimum)`; `f = ½ (x - x*)ᵀ H (x - x*)` for vector and matrix `h`."""
    x_star = jnp.array([0.5, -1.0, 2.0])
    prob = sl.Quadratic(H, sl.GaussianNoise(scale=1.0), x_star)
    x = jnp.array([1.0, 1.0, 1.0])
    r = np.asarray(x - x_star)
    assert float(prob.loss(x)) == pytest.approx(0.5 * float(np.sum(np.asarray(H) * r**2)))
    np.testing.assert_allclose(prob.grad(x), np.asarray(H) * r, rtol=1e-6)
    np.testing.assert_allclose(prob.grad(x), jax.grad(prob.loss)(x), rtol=1e-6)
    np.testing.assert_array_equal(prob.x_star, x_star)
    np.testing.assert_array_equal(prob.hessian, np.diag(np.asarray(H)))
    dense = sl.Quadratic(jnp.array([[2.0, 0.5], [0.5, 1.0]]), sl.GaussianNoise(scale=1.0))
    y = jnp.array([1.0, -2.0])
    assert float(dense.loss(y)) == pytest.approx(0.5 * (2.0 - 2 * 0.5 * 2 + 4.0))
    np.testing.assert_allclose(dense.grad(y), [2.0 - 1.0, 0.5 - 2.0], rtol=1e-6)
    np.testing.assert_array_equal(dense.x_star, [0.0, 0.0])
    assert (prob.name, prob.dim, prob.n_examples) == ("quadratic", 3, None)
    other = prob.with_noise(sl.StudentTNoise(df=3.0, scale=1.0))
    assert isinstance(other.noise, sl.StudentTNoise)
    np.testing.assert_array_equal(other.x_star, x_star)
    np.testing.assert_array_equal(other.h, H)


def test_standard_quadratic():
    """`h = linspace(1, cond, d)`, noise scale `scale · linspace(1, 2, d)`."""
    prob = sl.Quadratic.standard()
    np.testing.assert_allclose(prob.h, [1.0, 2.5, 4.0])
    assert isinstance(prob.noise, sl.GaussianNoise)
    np.testing.assert_allclose(prob.noise.scale, [1.0, 1.5, 2.0])
    assert prob.minimum is None
    big = sl.Quadratic.standard(dim=5, cond=9.0, scale=0.5)
    np.testing.assert_allclose(big.h, [1.0, 3.0, 5.0, 7.0, 9.0])
    np.testing.assert_allclose(big.noise.scale, [0.5, 0.625, 0.75, 0.875, 1.0])
    heavy = sl.Quadratic.standard(4, 2.0, 2.0, noise="student-t", df=1.5)
    assert isinstance(heavy.noise, sl.StudentTNoise) and float(heavy.noise.df) == 1.5
    np.testing.assert_allclose(heavy.noise.scale, 2.0 * np.linspace(1.0, 2.0, 4), rtol=1e-6)
    np.testing.assert_allclose(heavy.h, np.linspace(1.0, 2.0, 4), rtol=1e-6)
    one = sl.Quadratic.standard(dim=1, cond=3.0)
    np.testing.assert_allclose(one.h, [1.0])
    np.testing.assert_allclose(one.noise.scale, [1.0])
    # The standard problem is also the command line's "quadratic".
    named = sl.problem_by_name("quadratic", dim=5, cond=9.0, scale=0.5)
    np.testing.assert_array_equal(named.h, big.h)
    np.testing.assert_array_equal(named.noise.scale, big.noise.scale)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"dim": 0}, "dim=0"),
        ({"cond": 0.5}, "cond=0.5"),
        ({"scale": 0.0}, "scale=0.0"),
        ({"noise": "laplace"}, "noise='laplace'"),
        ({"noise": "student-t", "df": -1.0}, "df="),
    ],
)
def test_standard_quadratic_bad_input(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        sl.Quadratic.standard(**kwargs)


def test_minimum_must_be_finite():
    with pytest.raises(ValueError, match=r"minimum=\[nan, 0\] is invalid: every entry must be"):
        sl.Quadratic(h=jnp.ones(2), noise=sl.GaussianNoise(1.0), minimum=jnp.array([jnp.nan, 0.0]))
