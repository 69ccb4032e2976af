"""`sdelens._problems._names`: the problems by the names the command line uses."""

import sys

import jax
import numpy as np
import pytest
from helpers import problem_module

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


# -- your own problem: "module:function" ---------------------------------------------------

USER_MODULE = """
    import jax
    import jax.numpy as jnp
    import sdelens as sl

    def make():
        return sl.Quadratic(h=jnp.array([1.0, 3.0]), noise=sl.GaussianNoise(0.5))

    def keyed(key, width=2.0):  # gets the key; `width` keeps its default
        return sl.Quadratic(h=jnp.array([1.0, width]), noise=sl.GaussianNoise(0.5),
                            minimum=jax.random.normal(key, (2,)))

    class Holder:
        make = staticmethod(make)

    def needs(n, key): return make()
    def boom(): raise RuntimeError("no luck\\nsecond line")
    def three(): return 3
    not_a_function = 5
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # imported from the current directory, as `python -m` does
    return problem_module(tmp_path, USER_MODULE)


def test_own_problem_from_module_function(user_module):
    path = list(sys.path)
    prob = sl.problem_by_name(f"{user_module}:make")
    assert isinstance(prob, sl.Quadratic) and prob.dim == 2
    np.testing.assert_array_equal(prob.h, [1.0, 3.0])
    assert float(prob.noise.scale) == 0.5 and prob.minimum is None
    keyed = sl.problem_by_name(f"{user_module}:keyed", key=KEY)  # called with key=KEY
    np.testing.assert_array_equal(keyed.minimum, jax.random.normal(KEY, (2,)))
    np.testing.assert_array_equal(keyed.h, [1.0, 2.0])
    other = sl.problem_by_name(f"{user_module}:keyed", key=jax.random.key(1))
    assert not np.array_equal(other.minimum, keyed.minimum)
    # a dotted attribute; the problem options do not apply to your own problem
    held = sl.problem_by_name(f"{user_module}:Holder.make", noise="minibatch", dim=7)
    np.testing.assert_array_equal(held.h, [1.0, 3.0])
    assert sys.path == path  # the current directory was on it for the import only


@pytest.mark.parametrize(
    "function, message",
    [
        ("nothing", r"module '\w+' has no attribute 'nothing'; a function returning an sdelens"),
        ("not_a_function", r"not_a_function is not callable \(an object of type int\)"),
        ("needs", r"needs requires n; it is called with no arguments"),
        ("boom", r"boom\(\) raised RuntimeError: no luck$"),
        ("three", r"three\(\) returned an object of type int; an sdelens problem"),
        ("keyed", r"keyed takes a key: pass key=jax.random.key\(0\)"),
    ],
)
def test_own_problem_bad_functions(user_module, function, message):
    spec = f"{user_module}:{function}"
    with pytest.raises(ValueError, match=f"^problem='{spec}' is invalid: {message}"):
        sl.problem_by_name(spec)


def test_own_problem_bad_modules(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = list(sys.path)
    broken = problem_module(tmp_path, "import no_such_package_xyz\n")
    syntax = problem_module(tmp_path, "def f(:\n")
    cases = {
        "no_such_module_xyz:make": "no module named 'no_such_module_xyz' in the current directory",
        f"{broken}:make": f"importing {broken} raised ModuleNotFoundError: No module named",
        f"{syntax}:f": f"importing {syntax} raised SyntaxError: ",
        "a:b:c": "'module:function' is required",
        ":make": "'module:function' is required",
        "mod:": "'module:function' is required",
        "my-module:make": "'module:function' is required",
    }
    for spec, message in cases.items():
        with pytest.raises(ValueError, match=f"^problem='{spec}' is invalid: {message}"):
            sl.problem_by_name(spec)
    assert sys.path == path


# -- a model on your data ------------------------------------------------------------------


def _save_split(path, n_train=40, n_test=10, shape=(5,), n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    x_train, x_test = rng.normal(size=(n_train, *shape)), rng.normal(size=(n_test, *shape))
    y_train, y_test = np.arange(n_train) % n_classes, np.arange(n_test) % n_classes
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def test_model_on_your_data(tmp_path):
    _save_split(tmp_path / "mine.npz")
    prob = sl.problem_by_name("mlp", data=tmp_path / "mine.npz", key=KEY)
    assert isinstance(prob, sl.NetworkProblem) and prob.name == "mlp-mine"
    assert prob.dim == 5 * 32 + 32 + 32 * 32 + 32 + 32 * 2 + 2  # the default 2 x 32 MLP
    assert (prob.data.n_train, prob.data.x_test.shape[0], prob.data.n_classes) == (40, 10, 2)
    same = sl.network_problem("mlp", data=sl.nn.load_npz(tmp_path / "mine.npz"), key=KEY)
    np.testing.assert_array_equal(prob.x0, same.x0)
    np.testing.assert_array_equal(prob.data.x_train, same.data.x_train)
    assert float(prob.noise.scale) == pytest.approx(0.01)
    mini = sl.problem_by_name(
        "mlp",
        data=str(tmp_path / "mine.npz"),
        noise="minibatch",
        batch_size=8,
        train_size=24,
        key=KEY,
    )
    assert mini.noise == sl.MinibatchNoise(8) and mini.n_examples == 24


def test_bad_data_combinations(tmp_path):
    mine = tmp_path / "mine.npz"
    _save_split(mine)
    cases = [
        (
            {"name": "mlp-digits"},
            r"data='.*mine.npz' is invalid with problem='mlp-digits': with "
            r"data, the problem is a model name, 'mlp', 'cnn', 'cnn1d', 'resnet', 'transformer'",
        ),
        ({"name": "quadratic"}, r"data='.*mine.npz' is invalid with problem='quadratic'"),
        (
            {"name": "mod:make"},
            r"data='.*mine.npz' is invalid with problem='mod:make': your "
            "function builds its own problem",
        ),
        (
            {"name": "cnn"},
            r"problem='cnn' with data='.*mine.npz': model='lenet' needs square "
            r"images \(S, S\) or \(channels, S, S\); the data has feature shape \(5,\)",
        ),
        (
            {"name": "mlp", "train_size": 100},
            r"data='.*mine.npz' is invalid: train_size=100 is "
            "invalid: the training split has 40 examples",
        ),
        ({"name": "mlp", "noise": "student-t"}, "noise='student-t' is for the quadratic"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            sl.problem_by_name(**kwargs, data=mine, key=KEY)
    with pytest.raises(ValueError, match=r"data='.*nothing.npz' is invalid: no such file\.$"):
        sl.problem_by_name("mlp", data=tmp_path / "nothing.npz", key=KEY)
    (tmp_path / "broken.npz").write_bytes(mine.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"data='.*broken.npz' is invalid: not a readable .npz"):
        sl.problem_by_name("mlp", data=tmp_path / "broken.npz", key=KEY)
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((4, 2)), y_train=np.arange(4) % 2)
    with pytest.raises(
        ValueError, match="data='.*partial.npz' is invalid: partial.npz has no array 'x_test'"
    ):
        sl.problem_by_name("mlp", data=tmp_path / "partial.npz", key=KEY)
    with pytest.raises(
        ValueError,
        match="problem='mlp' is invalid without data: a model name "
        "needs your dataset, e.g. data='mine.npz'",
    ):
        sl.problem_by_name("mlp", key=KEY)
    with pytest.raises(
        ValueError, match="problem='vgg' is invalid: choose one of 'quadratic', .*'module:function'"
    ):
        sl.problem_by_name("vgg", key=KEY)
