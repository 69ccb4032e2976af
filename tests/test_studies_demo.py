"""`sdelens.studies._demo`: SGD and SignSGD against their SDEs on the 3-d demo quadratic."""

import jax
import numpy as np
import pytest

import sdelens as sl
from sdelens.studies import DEMO_PROBLEM


@pytest.fixture(scope="module")
def demo():
    messages = []
    result = sl.studies.demo(
        n_paths=200, n_steps=400, key=jax.random.key(0), progress=messages.append
    )
    return result, messages


def test_demo_metrics(demo):
    result, messages = demo
    m = result.metrics()
    assert set(result.results) == set(m["optimizers"]) == {"sgd", "signsgd"}
    signsgd = result.results["signsgd"].metrics()
    assert {k: v for k, v in m.items() if k != "optimizers"} == signsgd  # the headline numbers
    assert m["optimizers"]["sgd"] == result.results["sgd"].metrics()
    # the stationary laws: SGD (η/4) Σ sᵢ², SignSGD (η/4) √(π/2) Σ sᵢ (phase 3, Gaussian)
    lr, s = DEMO_PROBLEM["lr"], np.array(DEMO_PROBLEM["scale"])
    theory_sgd = m["optimizers"]["sgd"]["stationary_loss"]["theory"]
    assert theory_sgd == pytest.approx(lr / 4 * np.sum(s**2), rel=1e-6)  # 0.013125
    theory_sign = m["stationary_loss"]["theory"]
    assert theory_sign == pytest.approx(lr / 4 * np.sqrt(np.pi / 2) * np.sum(s), rel=1e-6)
    assert m["diverged"] == {"optimizer": False, "sde": False}
    assert 0 <= m["max_rel_mean_loss_error"] < 0.5
    assert len(messages) == 4 and messages[0].startswith("sgd: optimizer and SDE, 200 paths")


def test_sgd_mean_loss_follows_the_exact_discrete_law(demo):
    """E xᵢ,ₖ² = (1 - ηhᵢ)^{2k} x₀ᵢ² + η² sᵢ² (1 - (1 - ηhᵢ)^{2k}) / (1 - (1 - ηhᵢ)²) for SGD
    (and for Euler at the optimizer's step, equal in law): the mean loss within 4 SE."""
    result, _ = demo
    both = result.results["sgd"]
    lr, h = DEMO_PROBLEM["lr"], np.array(DEMO_PROBLEM["h"])
    s, x0 = np.array(DEMO_PROBLEM["scale"]), np.array(DEMO_PROBLEM["x0"])
    k = both.ref.steps[:, None]
    a = (1 - lr * h) ** 2
    second = a**k * x0**2 + lr**2 * s**2 * (1 - a**k) / (1 - a)
    want = 0.5 * np.sum(h * second, axis=1)
    for run, se in ((both.ref, both.comparison.se_a), (both.run, both.comparison.se_b)):
        mean = run.loss.mean(0)
        assert np.all(np.abs(mean - want) <= 4 * se + 1e-6 * want), (mean, want, se)
    assert both.ref.steps[-1] == 400 and both.ref.steps[1] == 10  # saved every 10 steps


def test_demo_problem_and_key(demo):
    result, _ = demo
    np.testing.assert_array_equal(result.problem.h, DEMO_PROBLEM["h"])
    np.testing.assert_allclose(result.problem.noise.scale, DEMO_PROBLEM["scale"])
    np.testing.assert_array_equal(
        result.results["signsgd"].ref.x[:, 0], np.broadcast_to(DEMO_PROBLEM["x0"], (200, 3))
    )
    with pytest.raises(ValueError, match="key=None is invalid"):
        sl.studies.demo(n_paths=2, n_steps=10, key=None)
