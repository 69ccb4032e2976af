"""`sdelens.flatness` Gaussian smoothing (`_smoothing`) against the closed form on a quadratic,
in float32 and float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import precision_fixture, quadratic

from sdelens import flatness

precision = precision_fixture()

# antithetic pairs make the gradient of a quadratic exact up to rounding
_GRAD_RTOL = {"float32": 1e-5, "float64": 1e-10}


def test_smoothed_loss_and_grad_of_a_quadratic(precision):
    h, width = jnp.array([2.0, 0.5]), 0.3
    loss = quadratic(h)
    x = jnp.array([0.4, -1.0])
    want = 0.5 * jnp.sum(h * (x**2 + width**2))
    value, se = flatness.smoothed_loss(loss, x, width, jax.random.key(0), n_samples=4000)
    assert abs(value - want) < 4 * se and 0 < se < 0.01
    grad, grad_se = flatness.smoothed_grad(loss, x, width, jax.random.key(1), n_samples=100)
    np.testing.assert_allclose(grad, h * x, rtol=_GRAD_RTOL[precision])
    assert np.all(grad_se < 1e-5)
    np.testing.assert_allclose(flatness.smoothed_loss_integral(loss, x, width), want, rtol=1e-5)
    # the trace penalty at the minimum: (s²/2) tr H, i.e. (T/(2γ)) Σ lᵢ at s² = T/γ
    at_minimum = flatness.smoothed_loss_integral(loss, jnp.zeros(2), width)
    np.testing.assert_allclose(at_minimum, 0.5 * width**2 * jnp.sum(h), rtol=1e-5)


_KEY = jax.random.key(0)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda f, x: flatness.smoothed_loss(f, x, 0.0, _KEY), "width"),
        (lambda f, x: flatness.smoothed_grad(f, x, 0.1, _KEY, n_samples=2), "n_samples"),
        (lambda f, x: flatness.smoothed_loss_integral(f, x, 0.1), "d <= 2"),
    ],
)
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call(lambda x: jnp.sum(x**2), jnp.ones(3))
