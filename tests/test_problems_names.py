"""`sdelens._problems._names`: the problems by the names the command line uses."""

import jax
import numpy as np
import pytest

import sdelens as sl
from sdelens._problems import NOISES, PROBLEMS

KEY = jax.random.key(0)


def test_names():
    assert PROBLEMS == ("quadratic", *sl.NETWORK_PROBLEMS)
    assert NOISES == ("gaussian", "student-t", "minibatch")


def test_quadratic_is_the_standard_quadratic():
    prob = sl.problem_by_name("quadratic")
    assert isinstance(prob, sl.Quadratic) and isinstance(prob.noise, sl.GaussianNoise)
    np.testing.assert_allclose(prob.h, [1.0, 2.5, 4.0])
    np.testing.assert_allclose(prob.noise.scale, [1.0, 1.5, 2.0])
    standard = sl.Quadratic.standard()
    np.testing.assert_array_equal(prob.h, standard.h)
    np.testing.assert_array_equal(prob.noise.scale, standard.noise.scale)
    assert prob.minimum is None and standard.minimum is None
    heavy = sl.problem_by_name("quadratic", noise="student-t", dim=5, cond=9.0, scale=0.5, df=2.5)
    want = sl.Quadratic.standard(5, 9.0, 0.5, noise="student-t", df=2.5)
    assert isinstance(heavy.noise, sl.StudentTNoise) and float(heavy.noise.df) == 2.5
    np.testing.assert_allclose(heavy.h, [1.0, 3.0, 5.0, 7.0, 9.0])
    np.testing.assert_allclose(heavy.noise.scale, 0.5 * np.linspace(1.0, 2.0, 5))
    np.testing.assert_array_equal(heavy.h, want.h)
    np.testing.assert_array_equal(heavy.noise.scale, want.noise.scale)
    # the key is not needed (nor used) for the quadratic
    keyed = sl.problem_by_name("quadratic", key=KEY)
    np.testing.assert_array_equal(keyed.h, prob.h)


def test_network_problems_need_a_key_and_take_the_noise_options():
    with pytest.raises(ValueError, match="key=None is invalid for a network problem"):
        sl.problem_by_name("mlp-breast-cancer")
    prob = sl.problem_by_name("mlp-breast-cancer", key=KEY)
    assert isinstance(prob, sl.NetworkProblem) and prob.name == "mlp-breast-cancer"
    assert isinstance(prob.noise, sl.GaussianNoise) and float(prob.noise.scale) == pytest.approx(
        0.01
    )
    same = sl.network_problem("mlp-breast-cancer", sl.GaussianNoise(0.01), key=KEY)
    np.testing.assert_array_equal(prob.x0, same.x0)  # the key initialises the model
    other = sl.problem_by_name("mlp-breast-cancer", key=jax.random.key(1))
    assert not np.array_equal(prob.x0, other.x0)
    wide = sl.problem_by_name("mlp-breast-cancer", scale=0.05, key=KEY)
    assert float(wide.noise.scale) == pytest.approx(0.05)
    mini = sl.problem_by_name(
        "mlp-breast-cancer",
        noise="minibatch",
        batch_size=16,
        covariance="diagonal",
        train_size=100,
        key=KEY,
    )
    assert mini.noise == sl.MinibatchNoise(16, covariance="diagonal")
    assert mini.n_examples == 100 and mini.data.x_test.shape[0] == 114


def test_bad_names():
    with pytest.raises(ValueError, match="problem='rosenbrock' is invalid"):
        sl.problem_by_name("rosenbrock")
    with pytest.raises(ValueError, match="noise='cauchy' is invalid.*'gaussian', 'student-t'"):
        sl.problem_by_name("quadratic", noise="cauchy")
    with pytest.raises(ValueError, match="noise='cauchy' is invalid"):
        sl.problem_by_name("mlp-breast-cancer", noise="cauchy", key=KEY)
    with pytest.raises(ValueError, match="noise='minibatch' needs a network problem"):
        sl.problem_by_name("quadratic", noise="minibatch")
    with pytest.raises(ValueError, match="noise='student-t' is for the quadratic"):
        sl.problem_by_name("mlp-breast-cancer", noise="student-t", key=KEY)
    with pytest.raises(ValueError, match="covariance='full' is invalid"):
        sl.problem_by_name("mlp-breast-cancer", noise="minibatch", covariance="full", key=KEY)
    with pytest.raises(ValueError, match="scale=0.0 is invalid"):
        sl.problem_by_name("quadratic", scale=0.0)
    with pytest.raises(ValueError, match="batch_size=500 is invalid"):
        sl.problem_by_name("mlp-breast-cancer", noise="minibatch", batch_size=500, key=KEY)
    one = sl.problem_by_name("quadratic", dim=1)  # linspace(1, cond, 1) = 1, scale 1
    np.testing.assert_array_equal(one.h, [1.0])
    np.testing.assert_array_equal(one.noise.scale, [1.0])
