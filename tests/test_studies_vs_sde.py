"""`sdelens.studies._vs_sde`: the optimizer and its SDE side by side, its key, its metrics
against the stationary law, and test accuracy on a network."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

PROB = sl.Quadratic.standard()  # h = (1, 2.5, 4), s = (1, 1.5, 2)
X0 = jnp.array([1.5, -1.0, 0.5])
SIZES = {"n_steps": 2000, "n_paths": 200, "save_every": 10}  # one compilation for all


def test_key_is_required_and_seed_is_a_deprecated_alias():
    opt = sl.SGD(0.01)
    with pytest.raises(ValueError, match="key=None is invalid"):
        sl.optimizer_vs_sde(opt, PROB, X0, **SIZES)
    with pytest.warns(DeprecationWarning, match="seed= is deprecated"):
        old = sl.optimizer_vs_sde(opt, PROB, X0, seed=3, **SIZES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # key= alone warns of nothing
        new = sl.optimizer_vs_sde(opt, PROB, X0, key=jax.random.key(3), **SIZES)
    np.testing.assert_array_equal(old.ref.x, new.ref.x)
    np.testing.assert_array_equal(old.run.x, new.run.x)
    other = sl.optimizer_vs_sde(opt, PROB, X0, key=jax.random.key(4), **SIZES)
    assert not np.array_equal(other.ref.x, new.ref.x)
    # the optimizer and the SDE draw independent noise: no shared key
    assert not np.allclose(new.ref.x[:, 1], new.run.x[:, 1])
    with pytest.raises(ValueError, match="seed= and key= were both given"):
        with pytest.warns(DeprecationWarning):
            sl.optimizer_vs_sde(opt, PROB, X0, seed=3, key=jax.random.key(3), **SIZES)


def test_a_bad_form_fails_before_any_run():
    with pytest.raises(ValueError, match="form='malladi' is invalid for SGD"):
        sl.optimizer_vs_sde(sl.SGD(0.01), PROB, X0, form="malladi", key=jax.random.key(0), **SIZES)


def test_substeps_follow_the_gradient_evaluations():
    both = sl.optimizer_vs_sde(sl.SGD(0.01), PROB, X0, key=jax.random.key(0), **SIZES)
    assert both.run.config["substeps"] == 1 and both.run.grad_evals == both.ref.grad_evals == 2000
    finer = sl.optimizer_vs_sde(sl.SGD(0.01), PROB, X0, key=jax.random.key(0), substeps=4, **SIZES)
    assert finer.run.config["substeps"] == 4 and finer.run.grad_evals == 8000
    assert finer.comparison.labels == ("optimizer", "sde")
    assert finer.optimizer == sl.SGD(0.01) and finer.problem is PROB


def test_stationary_metrics_match_the_exact_laws():
    """SGD from the minimum, η = 0.01: the SDE's stationary loss is (η/4) tr Σ = 0.018125; the
    discrete SGD's is Σᵢ η sᵢ² / (4 (1 - η hᵢ/2)) (its exact stationary variance), which Euler
    with the optimizer's own step reproduces in law. Both estimates within 4 SE of it."""
    lr = 0.01
    both = sl.optimizer_vs_sde(
        sl.SGD(lr),
        PROB,
        jnp.zeros(3),
        key=jax.random.key(0),
        **SIZES,
    )
    m = both.metrics()
    h, s2 = np.array([1.0, 2.5, 4.0]), np.array([1.0, 1.5, 2.0]) ** 2
    assert m["stationary_loss"]["theory"] == pytest.approx(lr / 4 * s2.sum(), rel=1e-6)
    assert both.theory.expected_loss == m["stationary_loss"]["theory"]
    discrete = float(np.sum(lr * s2 / (4 * (1 - lr * h / 2))))
    for kind in ("optimizer", "sde"):
        est, se = m["stationary_loss"][kind], m["stationary_loss_se"][kind]
        assert abs(est - discrete) < 4 * se, (kind, est, discrete, se)
        assert se < 0.02 * discrete  # the check has teeth: 4 SE < 8%, the gap to theory 1.8%
    assert set(m) >= {"max_rel_mean_loss_error", "max_z", "final_mean_loss", "diverged"}
    assert m["diverged"] == {"optimizer": False, "sde": False}
    assert "final_test_accuracy" not in m and both.test_accuracy is None


def test_network_results_carry_test_accuracy():
    prob = sl.network_problem(
        "mlp-breast-cancer", sl.GaussianNoise(0.05), key=jax.random.key(0), width=4, depth=1
    )
    both = sl.optimizer_vs_sde(
        sl.SignSGD(0.002),
        prob,
        prob.x0,
        n_steps=40,
        n_paths=4,
        save_every=20,
        key=jax.random.key(0),
    )
    assert set(both.test_accuracy) == {"optimizer", "sde"} and both.theory is None
    for label, run in (("optimizer", both.ref), ("sde", both.run)):
        accuracy = both.test_accuracy[label]
        assert accuracy.shape == (4, 3)
        np.testing.assert_array_equal(accuracy, np.asarray(sl.evaluate(prob, run)["accuracy"]))
    m = both.metrics()
    want = {k: float(np.nanmean(v[:, -1])) for k, v in both.test_accuracy.items()}
    assert m["final_test_accuracy"] == want
    assert 0.85 < want["optimizer"] <= 1.0 and 0.85 < want["sde"] <= 1.0
    assert "stationary_loss" not in m  # training curves are not stationary
