"""`sdelens.studies._sensitivity`: a grid of two hyperparameters at a fixed gradient budget."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

PROB = sl.Quadratic(h=jnp.array([1.0, 4.0]), noise=sl.GaussianNoise(0.1))
BASE = sl.EntropySGD(lr=0.5, gamma=1.0, inner_lr=0.05, inner_steps=10, temperature=0.01)


def test_grid_equals_compute_fair_at_each_setting_and_flags_divergence():
    """Each cell is `compute_fair` of `base.replace(x=xᵢ, y=yⱼ)` with the same key; lr = 50
    makes the outer step's factor 1 - η γ h/(h + γ) about -39 on h = 4: it diverges."""
    key = jax.random.key(0)
    grid = sl.sensitivity(
        PROB,
        BASE,
        "lr",
        [0.5, 50.0],
        "gamma",
        [1.0, 2.0],
        jnp.ones(2),
        grad_budget=400,
        n_runs=4,
        key=key,
    )
    assert grid.loss.shape == grid.diverged.shape == (2, 2) and grid.accuracy is None
    np.testing.assert_array_equal(grid.diverged, [[False, False], [True, True]])
    for j, gamma in enumerate((1.0, 2.0)):
        fair = sl.compute_fair(
            PROB,
            [BASE.replace(lr=0.5, gamma=gamma)],
            jnp.ones(2),
            grad_budget=400,
            n_runs=4,
            n_saves=1,
            key=key,
        )
        assert grid.loss[0, j] == pytest.approx(
            fair.metrics()["entropysgd"]["final_loss"], rel=1e-6
        )
        assert grid.loss[0, j] < 0.01  # at the floor, as in compute_fair
    m = grid.metrics()
    assert m["x"] == "lr" and m["y"] == "gamma" and m["x_values"] == [0.5, 50.0]
    assert m["y_values"] == [1.0, 2.0] and m["final_test_accuracy"] is None
    assert m["diverged"] == [[False, False], [True, True]]
    assert m["final_loss"][0] == grid.loss[0].tolist()


def test_settings_are_validated_before_running():
    key = jax.random.key(0)
    kwargs = {"grad_budget": 40, "key": key}
    with pytest.raises(ValueError, match="beta is not a hyperparameter of EntropySGD"):
        sl.sensitivity(PROB, BASE, "beta", [0.9], "gamma", [1.0], jnp.ones(2), **kwargs)
    with pytest.raises(ValueError, match="gamma=0.0"):
        sl.sensitivity(PROB, BASE, "lr", [0.5], "gamma", [1.0, 0.0], jnp.ones(2), **kwargs)
    with pytest.raises(ValueError, match="must each hold at least one value"):
        sl.sensitivity(PROB, BASE, "lr", [], "gamma", [1.0], jnp.ones(2), **kwargs)
    with pytest.raises(ValueError, match="key=None is invalid"):
        sl.sensitivity(PROB, BASE, "lr", [0.5], "gamma", [1.0], jnp.ones(2), grad_budget=40)
    with pytest.warns(DeprecationWarning, match="seed= is deprecated"):
        old = sl.sensitivity(
            PROB, BASE, "lr", [0.5], "gamma", [1.0], jnp.ones(2), grad_budget=40, seed=1
        )
    new = sl.sensitivity(
        PROB, BASE, "lr", [0.5], "gamma", [1.0], jnp.ones(2), grad_budget=40, key=jax.random.key(1)
    )
    np.testing.assert_array_equal(old.loss, new.loss)
