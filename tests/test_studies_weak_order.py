"""`weak_order`: the SDEs are weak order 1 in the learning rate (docs/math.md §1)."""

import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

H = jnp.array([1.0, 2.0, 4.0])
S = jnp.array([0.5, 1.0, 2.0])
X0 = jnp.array([1.5, -1.0, 0.5])
PROB = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S))


@pytest.mark.parametrize(
    "opt", [sl.SGD(lr=0.1), sl.SignSGD(lr=0.1), sl.Adam(lr=0.1, beta1=0.9, beta2=0.99)]
)
def test_weak_order_is_one(opt):
    # `key` omitted: weak_order alone defaults to jax.random.key(0).
    w = sl.weak_order(
        opt, PROB, [0.0125, 0.025, 0.05, 0.1], 2.0, X0, n_paths=20000, n_saves=10, substeps=4
    )
    assert np.all(w.error > 3 * w.se)  # errors are measured, not Monte Carlo noise
    assert 0.7 <= w.slope <= 1.3, w.metrics()
    np.testing.assert_array_equal(w.lrs, [0.0125, 0.025, 0.05, 0.1])
    assert w.metrics()["slope"] == w.slope


def test_bad_grid_fails_before_running():
    with pytest.raises(ValueError, match=r"horizon/lr = 15 at lr=0.1 must be a whole multiple"):
        sl.weak_order(sl.SGD(lr=0.1), PROB, [0.1], 1.5, X0, n_saves=10)
    with pytest.raises(ValueError, match="lrs="):
        sl.weak_order(sl.SGD(lr=0.1), PROB, [0.1, -0.1], 2.0, X0)
    with pytest.raises(ValueError, match="horizon="):
        sl.weak_order(sl.SGD(lr=0.1), PROB, [0.1], 0.0, X0)


def test_second_order_form_is_weak_order_two_with_extrapolation():
    """SGD's second-order SDE with Talay–Tubaro extrapolation (`2 E_{dt/2} - E_{dt}`) shows slope
    2 where the first-order SDE shows 1 (Monte Carlo through `weak_order`; start far from the
    minimum, little noise, so that the errors stand well above the SE). Measured with 40k paths:
    slopes 1.07 / 2.03, errors 0.0133...0.124 / 0.00041...0.028, SE <= 2e-4."""
    prob = sl.Quadratic(h=jnp.array([1.0, 2.0]), noise=sl.GaussianNoise(scale=0.05))
    x0, lrs = jnp.array([1.5, -1.0]), [0.025, 0.05, 0.1, 0.2]
    args = dict(n_paths=20000, n_saves=5, substeps=4)
    first = sl.weak_order(sl.SGD(lr=0.1), prob, lrs, 1.0, x0, **args)
    second = sl.weak_order(
        sl.SGD(lr=0.1), prob, lrs, 1.0, x0, form="second_order", extrapolate=True, **args
    )
    for w in (first, second):
        assert np.all(w.error > 3 * w.se), w.metrics()
    assert 0.7 < first.slope < 1.3, first.metrics()
    assert second.slope > 1.6, second.metrics()


def test_bad_extrapolate():
    with pytest.raises(ValueError, match="extrapolate="):
        sl.weak_order(sl.SGD(lr=0.1), PROB, [0.1], 2.0, X0, n_saves=10, extrapolate="yes")
