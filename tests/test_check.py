"""`sdelens._check`: each check raises a ValueError naming the parameter, the value and what is
allowed, and takes traced values (under `jax.jit`) as valid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdelens import _check


@pytest.mark.parametrize("value", [0.0, -0.1, float("nan"), float("inf"), [1.0, 0.0], []])
def test_positive_finite_rejects(value):
    with pytest.raises(ValueError, match=r"lr=.* is invalid: every entry must be finite and > 0"):
        _check.positive_finite("lr", value)


def test_positive_finite_accepts_and_allow_zero():
    _check.positive_finite("lr", 1e-3)
    _check.positive_finite("scale", np.array([0.5, 2.0]))
    _check.positive_finite("eps", 0.0, allow_zero=True)
    with pytest.raises(
        ValueError, match=r"eps=-1.0 is invalid: every entry must be finite and >= 0"
    ):
        _check.positive_finite("eps", -1.0, allow_zero=True)
    # Long arrays are summarised by their shape, not printed.
    with pytest.raises(ValueError, match=r"array of shape \(10,\)"):
        _check.positive_finite("h", -np.ones(10))


def test_in_interval_half_open_and_closed():
    _check.in_interval("beta", 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"beta=1.0 is invalid: allowed range is \[0.0, 1.0\)"):
        _check.in_interval("beta", 1.0, 0.0, 1.0)
    _check.in_interval("window", 1.0, 0.0, 1.0, closed_high=True)
    with pytest.raises(ValueError, match=r"allowed range is \[0.0, 1.0\]"):
        _check.in_interval("window", 1.5, 0.0, 1.0, closed_high=True)
    with pytest.raises(ValueError, match="beta=nan"):
        _check.in_interval("beta", float("nan"), 0.0, 1.0)


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "4", None])
def test_positive_int_rejects(value):
    with pytest.raises(ValueError, match=r"n_steps=.* is invalid: must be an integer >= 1"):
        _check.positive_int("n_steps", value)


def test_positive_int_returns_a_python_int():
    out = _check.positive_int("n_paths", np.int64(7))
    assert out == 7 and type(out) is int


@pytest.mark.parametrize(
    "value,needle",
    [
        (np.ones((2, 3)), "square"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), "non-finite"),
        (np.array([[1.0, 2.0], [0.0, 1.0]]), "not symmetric"),
        (np.array([[1.0, 2.0], [2.0, 1.0]]), r"not positive definite \(smallest eigenvalue -1\)"),
    ],
)
def test_spd_matrix(value, needle):
    with pytest.raises(ValueError, match=needle):
        _check.spd_matrix("h", value)


def test_choice_lists_what_is_allowed():
    assert _check.choice("keep", "stats", ("paths", "stats")) == "stats"
    with pytest.raises(ValueError, match=r"keep='all' is invalid: choose one of 'paths', 'stats'"):
        _check.choice("keep", "all", ("paths", "stats"))


def test_traced_values_are_taken_as_valid():
    @jax.jit
    def f(lr):
        _check.positive_finite("lr", lr)
        _check.in_interval("beta", lr, 0.0, 1.0)
        _check.spd_matrix("h", lr * jnp.eye(2))
        return lr

    # -1 would fail every check if it were concrete.
    assert float(f(-1.0)) == -1.0
    seen = []
    jax.jit(lambda x: seen.append(_check.is_concrete(x)) or x)(1.0)
    assert seen == [False] and _check.is_concrete(jnp.ones(2))


@pytest.mark.parametrize(
    "value, message",
    [
        ("0.01", r"lr='0.01' is invalid: a number is required"),
        (None, r"lr=None is invalid: a number is required"),
        (b"1", r"lr=b'1' is invalid: a number is required"),
        ({"a": 1}, r"lr=\{'a': 1\} is invalid: a number is required"),
        (np.ones(2), r"lr=\[1, 1\] is invalid: one number is required, not an array of shape"),
    ],
)
def test_one_number_is_required(value, message):
    with pytest.raises(ValueError, match=message):
        _check.number("lr")(value)
    with pytest.raises(ValueError, match=message):
        _check.positive_finite("lr", value, scalar=True)


def test_number_converts_numbers_and_finite_checks_entries():
    assert _check.number("lr")(np.float32(0.5)) == 0.5 and _check.number("lr")(2) == 2.0
    _check.finite("minimum", [0.0, -3.0])
    with pytest.raises(ValueError, match=r"minimum=\[nan, 0\] is invalid: every entry must be"):
        _check.finite("minimum", [np.nan, 0.0])
    with pytest.raises(ValueError, match=r"beta=None is invalid"):
        _check.in_interval("beta", None, 0.0, 1.0)
