"""Input validation shared by every public constructor and function.

Each check raises a `ValueError` naming the parameter, the value it got and what is allowed.
Checks only run on concrete values: under `jax.jit` a traced field cannot be inspected and is
taken as valid (it was validated when the concrete object was built).
"""

from __future__ import annotations

import warnings

import numpy as np
from jax.core import Tracer


def is_concrete(value) -> bool:
    return not isinstance(value, Tracer)


def short(value) -> str:
    """`value` as an error message quotes it: a number, a short list, or an array's shape."""
    arr = np.asarray(value)
    if arr.size <= 6:
        if arr.ndim == 0:
            return repr(arr.item())
        if arr.ndim == 1 and np.issubdtype(arr.dtype, np.number):
            return "[" + ", ".join(f"{v:.4g}" for v in arr.tolist()) + "]"
        return np.array2string(arr, precision=4)
    return f"array of shape {arr.shape}"


def error_line(error: BaseException) -> str:
    """`"TypeName: first line of the message"`: someone else's exception, quoted in one line."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _numbers(name: str, value, *, scalar: bool) -> np.ndarray:
    """`value` as floats: a number (or, unless `scalar`, an array of them), never a string or
    None, which NumPy would convert or reject with a TypeError."""
    if value is None or isinstance(value, (str, bytes)):
        raise ValueError(f"{name}={value!r} is invalid: a number is required.")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is invalid: a number is required.") from None
    if scalar and arr.ndim:
        raise ValueError(
            f"{name}={short(value)} is invalid: one number is required, not an array of shape "
            f"{arr.shape}."
        )
    return arr


def number(name: str):
    """A field converter to `float` that refuses, naming the field, what is not one number
    (a string, None, an array): `lr: float = eqx.field(converter=_check.number("lr"))`."""

    def convert(value) -> float:
        return float(_numbers(name, value, scalar=True))

    return convert


def array(name: str, *, optional: bool = False):
    """A field converter to a JAX array that refuses, naming the field, what is not numbers (a
    string or None, where JAX would raise a TypeError that names nothing):
    `scale: Array = eqx.field(converter=_check.array("scale"))`; `optional` lets None through."""

    def convert(value):
        import jax.numpy as jnp

        if value is None and optional:
            return None
        if not is_concrete(value):
            return jnp.asarray(value)
        given = _numbers(name, value, scalar=False)
        with warnings.catch_warnings():  # the overflow is reported below, by name
            warnings.simplefilter("ignore", RuntimeWarning)
            out = jnp.asarray(value)
        overflow = np.isfinite(given) & ~np.isfinite(np.asarray(out, dtype=float))
        if np.any(overflow):
            raise ValueError(
                f"{name}={short(value)} is invalid: {short(given[overflow])} overflows "
                f"{out.dtype} (largest {float(jnp.finfo(out.dtype).max):.4g}); enable "
                "jax_enable_x64 for larger values."
            )
        return out

    return convert


def positive_finite(name: str, value, *, allow_zero: bool = False, scalar: bool = False) -> None:
    """Every entry of `value` is finite and > 0 (>= 0 with `allow_zero`); one number if
    `scalar` (a hyperparameter)."""
    if not is_concrete(value):
        return
    arr = _numbers(name, value, scalar=scalar)
    bound_ok = arr >= 0 if allow_zero else arr > 0
    if arr.size == 0 or not np.all(np.isfinite(arr)) or not np.all(bound_ok):
        allowed = "finite and >= 0" if allow_zero else "finite and > 0"
        raise ValueError(f"{name}={short(value)} is invalid: every entry must be {allowed}.")


def finite(name: str, value) -> None:
    """Every entry of `value` is a finite number."""
    if is_concrete(value) and not np.all(np.isfinite(_numbers(name, value, scalar=False))):
        raise ValueError(f"{name}={short(value)} is invalid: every entry must be finite.")


def in_interval(name: str, value, low: float, high: float, *, closed_high: bool = False) -> None:
    """`low <= value < high` (or `<= high`)."""
    if not is_concrete(value):
        return
    v = float(_numbers(name, value, scalar=True))
    ok = low <= v <= high if closed_high else low <= v < high
    if not (np.isfinite(v) and ok):
        bracket = "]" if closed_high else ")"
        raise ValueError(f"{name}={v!r} is invalid: allowed range is [{low}, {high}{bracket}.")


def positive_int(name: str, value) -> int:
    """A Python integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid: must be an integer >= 1.")
    return int(value)


def save_grid(n_steps, save_every) -> tuple[int, int]:
    """`n_steps` and `save_every` as integers >= 1, `save_every` dividing `n_steps` (the saves
    are at `0, save_every, ..., n_steps`)."""
    n_steps = positive_int("n_steps", n_steps)
    save_every = positive_int("save_every", save_every)
    if n_steps % save_every:
        raise ValueError(
            f"save_every={save_every} does not divide n_steps={n_steps}: saves are at "
            "0, save_every, ..., n_steps, so n_steps must be a multiple of save_every."
        )
    return n_steps, save_every


def spd_matrix(name: str, value) -> None:
    """A symmetric positive-definite square matrix."""
    if not is_concrete(value):
        return
    arr = np.asarray(value, dtype=float)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} has shape {arr.shape}: a square (d, d) matrix is required.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries: a finite SPD matrix is required.")
    if not np.allclose(arr, arr.T, rtol=1e-5, atol=1e-8 * max(1.0, np.abs(arr).max())):
        raise ValueError(
            f"{name} is not symmetric: a symmetric positive-definite matrix is required."
        )
    smallest = np.linalg.eigvalsh(arr).min()
    if smallest <= 0:
        raise ValueError(
            f"{name} is not positive definite (smallest eigenvalue {smallest:.3g}): "
            "a symmetric positive-definite matrix is required."
        )


def choice(name: str, value: str, allowed) -> str:
    if value not in allowed:
        raise ValueError(
            f"{name}={value!r} is invalid: choose one of {', '.join(map(repr, allowed))}."
        )
    return value
