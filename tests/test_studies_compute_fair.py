"""`sdelens.studies._compute_fair`: optimizers at the same number of gradient evaluations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

PROB = sl.Quadratic(h=jnp.array([1.0, 4.0]), noise=sl.GaussianNoise(0.1))
ENTROPY = sl.EntropySGD(lr=0.5, gamma=1.0, inner_lr=0.05, inner_steps=10, temperature=0.01)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def test_compute_fair_gives_every_optimizer_the_same_gradient_budget(x64):
    prob = sl.Quadratic(h=jnp.array([1.0, 4.0]), noise=sl.GaussianNoise(0.1))  # float64
    fair = sl.compute_fair(
        prob,
        [sl.SGD(0.05), ENTROPY],
        jnp.ones(2),
        grad_budget=400,
        n_runs=8,
        n_saves=4,
        key=jax.random.key(0),
    )
    metrics = fair.metrics()
    assert metrics["sgd"]["grad_evals"] == metrics["entropysgd"]["grad_evals"] == 400
    np.testing.assert_array_equal(fair.runs["entropysgd"].steps, [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(fair.grad_evals["entropysgd"], [0, 100, 200, 300, 400])
    np.testing.assert_array_equal(fair.runs["sgd"].steps, [0, 100, 200, 300, 400])
    assert np.all(np.diff(fair.seconds["sgd"]) > 0) and fair.accuracy is None
    # SGD after 400 steps of 0.05 and Entropy-SGD after 40 outer steps both reach the floor
    for row in metrics.values():
        assert row["final_loss"] < 0.01
    with pytest.raises(ValueError, match="grad_budget=5 is too small"):
        sl.compute_fair(prob, [ENTROPY], jnp.ones(2), grad_budget=5, key=jax.random.key(0))
    # the closed forms of the other metrics
    for name, row in metrics.items():
        loss = fair.runs[name].loss[:, -1]
        assert row["final_loss"] == pytest.approx(float(loss.mean()), rel=1e-6)
        assert row["final_loss_se"] == pytest.approx(float(loss.std(ddof=1) / np.sqrt(8)), rel=1e-5)
        assert row["effective_epochs"] == 400.0  # no training set: one epoch per gradient
        assert row["seconds_per_grad_eval"] == pytest.approx(row["seconds"] / 400)
        assert row["seconds"] == fair.seconds[name][-1] and row["diverged"] is False
        assert "final_test_accuracy" not in row
    assert fair.optimizers == {"sgd": sl.SGD(0.05), "entropysgd": ENTROPY}


def test_key_seed_and_bad_input():
    kwargs = {"grad_budget": 40, "n_runs": 2, "n_saves": 2}
    with pytest.raises(ValueError, match="key=None is invalid"):
        sl.compute_fair(PROB, [sl.SGD(0.05)], jnp.ones(2), **kwargs)
    with pytest.warns(DeprecationWarning, match="seed= is deprecated"):
        old = sl.compute_fair(PROB, [sl.SGD(0.05)], jnp.ones(2), seed=2, **kwargs)
    new = sl.compute_fair(PROB, [sl.SGD(0.05)], jnp.ones(2), key=jax.random.key(2), **kwargs)
    np.testing.assert_array_equal(old.runs["sgd"].x, new.runs["sgd"].x)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="x0 is required for problems other than NetworkProblem"):
        sl.compute_fair(PROB, [sl.SGD(0.05)], key=key, **kwargs)
    with pytest.raises(ValueError, match="optimizers is empty"):
        sl.compute_fair(PROB, [], jnp.ones(2), key=key, **kwargs)
    with pytest.raises(ValueError, match="grad_budget=0"):
        sl.compute_fair(PROB, [sl.SGD(0.05)], jnp.ones(2), grad_budget=0, key=key)
    # one name twice: numbered, the same key for both
    twice = sl.compute_fair(PROB, [sl.SGD(0.05), sl.SGD(0.1)], jnp.ones(2), key=key, **kwargs)
    assert list(twice.runs) == ["sgd-0", "sgd-1"]
    assert twice.optimizers["sgd-1"] == sl.SGD(0.1)


def test_network_accuracy_and_effective_epochs():
    """Minibatches of 32 of 128 training examples: 4 gradient evaluations are one epoch;
    test accuracy of every run at every save."""
    prob = sl.network_problem(
        "mlp-breast-cancer",
        sl.MinibatchNoise(32),
        key=jax.random.key(0),
        train_size=128,
        width=4,
        depth=1,
    )
    fair = sl.compute_fair(
        prob, [sl.SGD(0.1)], grad_budget=20, n_runs=2, n_saves=2, key=jax.random.key(0)
    )
    np.testing.assert_allclose(fair.epochs["sgd"], [0.0, 2.5, 5.0])
    np.testing.assert_array_equal(fair.runs["sgd"].x[:, 0], np.broadcast_to(prob.x0, (2, prob.dim)))
    accuracy = fair.accuracy["sgd"]
    assert accuracy.shape == (2, 3)
    np.testing.assert_array_equal(
        accuracy, np.asarray(sl.evaluate(prob, fair.runs["sgd"])["accuracy"])
    )
    row = fair.metrics()["sgd"]
    assert row["effective_epochs"] == 5.0
    assert row["final_test_accuracy"] == pytest.approx(float(accuracy[:, -1].mean()))
    se = np.asarray(accuracy[:, -1], float).std(ddof=1) / np.sqrt(2)  # as metrics(): float64
    assert row["final_test_accuracy_se"] == pytest.approx(float(se), abs=1e-12)
