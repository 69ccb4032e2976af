"""`sdelens._evaluate`: loss and accuracy of every path of a network run at every save."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def trained():
    """A run of 3 paths and 4 saves around the initialisation, as `run_optimizer` returns it
    (evaluate reads the saved parameters, whatever produced them)."""
    prob = sl.network_problem(
        "mlp-breast-cancer", sl.GaussianNoise(0.05), key=KEY, width=4, depth=1
    )
    xs = prob.x0 + 0.3 * jax.random.normal(jax.random.key(1), (3, 4, prob.dim))
    loss = np.asarray(jax.jit(jax.vmap(jax.vmap(prob.loss)))(xs))
    steps = np.arange(0, 61, 20)
    run = sl.Run(
        "optimizer", steps, 0.1 * steps, loss, sl.ParamState(np.asarray(xs)), {}, False, None, 0
    )
    return prob, run


def test_evaluate_equals_the_problem_metrics_at_every_save(trained):
    prob, run = trained
    for split in ("test", "train"):
        out = sl.evaluate(prob, run, split)
        assert set(out) == {"loss", "accuracy"}
        assert out["loss"].shape == out["accuracy"].shape == (3, 4)
        for i, s in ((0, 0), (1, 2), (2, 3)):
            loss, accuracy = prob.metrics(jnp.asarray(run.x[i, s]), split)
            np.testing.assert_allclose(out["loss"][i, s], loss, rtol=1e-5)
            assert float(out["accuracy"][i, s]) == pytest.approx(float(accuracy))
    train = sl.evaluate(prob, run, "train")
    np.testing.assert_allclose(train["loss"], run.loss, rtol=1e-5)  # the train loss is f
    test = np.asarray(sl.evaluate(prob, run)["accuracy"])
    assert np.all((test >= 0) & (test <= 1))
    np.testing.assert_allclose(test * 114, np.round(test * 114), atol=1e-4)  # k of 114 examples
    assert len(np.unique(test)) > 1  # the paths differ


def test_non_finite_paths_give_nan(trained):
    prob, run = trained
    x = run.x.copy()
    x[1, 2:] = np.nan
    bad = dataclasses.replace(run, state=sl.ParamState(x))
    out = sl.evaluate(prob, bad)
    assert np.all(np.isnan(out["accuracy"][1, 2:])) and np.all(np.isfinite(out["accuracy"][1, :2]))
    np.testing.assert_array_equal(
        np.asarray(out["accuracy"])[[0, 2]], np.asarray(sl.evaluate(prob, run)["accuracy"])[[0, 2]]
    )


def test_evaluate_bad_input(trained):
    prob, run = trained
    quadratic = sl.Quadratic.standard()
    with pytest.raises(ValueError, match="problem=Quadratic is invalid: a NetworkProblem"):
        sl.evaluate(quadratic, run)
    with pytest.raises(ValueError, match="split='val'"):
        sl.evaluate(prob, run, "val")
    stats = dataclasses.replace(run, state=None, loss=None, stats=run.statistics())  # keep="stats"
    with pytest.raises(ValueError, match="keep='stats'"):
        sl.evaluate(prob, stats)
