"""`noise_sweep`: the stationary loss of SGD and SignSGD, optimizer and SDE, reaches the
closed-form floor (docs/math.md §5) and grows like `s²` and `s` with the noise scale `s`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

H = jnp.array([1.0, 2.0, 4.0])
BASE = jnp.array([0.5, 1.0, 2.0])
LR = 2e-3
SCALES = [0.25, 0.5, 1.0, 2.0]


@pytest.fixture(scope="module")
def sweep():
    """Stationary loss of SGD and SignSGD, optimizer and SDE, as the noise scale grows."""
    return sl.noise_sweep(
        [sl.SGD(lr=LR), sl.SignSGD(lr=LR)],
        lambda s: sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=s * BASE)),
        SCALES,
        jnp.zeros(3),
        n_steps=10_000,
        n_paths=400,
        key=jax.random.key(0),
        save_every=50,
    )


def test_floor_and_noise_level_slopes(sweep):
    """Each estimate within 4 SE plus the O(η) bias, η·max(h)·E f, of the closed form; the
    slopes in the noise scale are 2 for SGD and 1 for SignSGD. (One test, so that the sweep
    runs once even when pytest-xdist spreads a module's tests over workers.)"""
    for name, by_kind in sweep.loss.items():
        theory = by_kind["theory"]
        for kind in ("optimizer", "sde"):
            tol = 4 * sweep.se[name][kind] + LR * float(H.max()) * theory
            assert np.all(np.abs(by_kind[kind] - theory) <= tol), (name, kind)
    for kind in ("optimizer", "sde"):
        assert abs(sweep.slopes["sgd"][kind] - 2.0) < 0.05
        assert abs(sweep.slopes["signsgd"][kind] - 1.0) < 0.05
    assert sweep.slopes["sgd"]["theory"] == pytest.approx(2.0)
    assert sweep.slopes["signsgd"]["theory"] == pytest.approx(1.0)
    # The theory column is the closed form at each scale; metrics and arrays hold the curves.
    assert sweep.parameter == "noise scale"
    np.testing.assert_array_equal(sweep.values, SCALES)
    sgd_floor = LR / 4 * float(jnp.sum(BASE**2)) * np.asarray(SCALES) ** 2
    np.testing.assert_allclose(sweep.loss["sgd"]["theory"], sgd_floor, rtol=1e-6)
    np.testing.assert_array_equal(sweep.se["sgd"]["theory"], 0.0)
    assert sweep.diverged == {n: {"optimizer": False, "sde": False} for n in ("sgd", "signsgd")}
    m = sweep.metrics()
    assert m["values"] == SCALES and m["slopes"] == sweep.slopes
    np.testing.assert_array_equal(
        m["stationary_loss"]["signsgd"]["sde"], sweep.loss["signsgd"]["sde"]
    )
    arrays = sweep.arrays()
    np.testing.assert_array_equal(arrays["sgd/optimizer/loss"], sweep.loss["sgd"]["optimizer"])
    np.testing.assert_array_equal(arrays["signsgd/sde/se"], sweep.se["signsgd"]["sde"])


def test_sweeps_refuse_bad_input_before_running():
    problem_at = lambda s: sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=s * BASE))  # noqa: E731
    sizes = dict(n_steps=100, n_paths=4)
    with pytest.raises(ValueError, match="key=None"):
        sl.noise_sweep([sl.SGD(lr=LR)], problem_at, SCALES, jnp.zeros(3), **sizes)
    with pytest.raises(ValueError, match="scales="):
        sl.noise_sweep(
            [sl.SGD(lr=LR)], problem_at, [1.0, 0.0], jnp.zeros(3), key=jax.random.key(0), **sizes
        )
    # Only optimizers with a decoupled weight decay can be swept over it.
    with pytest.raises(ValueError, match="weight_decay is not a hyperparameter of SGD"):
        sl.weight_decay_sweep(
            [sl.SGD(lr=LR)],
            problem_at(1.0),
            [0.1, 1.0],
            jnp.zeros(3),
            key=jax.random.key(0),
            **sizes,
        )
