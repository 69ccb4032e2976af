"""The problems by the names the command line uses, and your own: `"module:function"`."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from pathlib import Path

from jaxtyping import PRNGKeyArray

from .. import _check
from .._noise import COVARIANCES, GaussianNoise, MinibatchNoise
from ..nn import QUICK_TEXT, load_npz, load_text
from ._base import AbstractProblem
from ._network import NETWORK_MODELS, NETWORK_PROBLEMS, network_problem
from ._quadratic import NOISE_KINDS, Quadratic

__all__ = ["PROBLEMS", "NOISES", "problem_by_name"]

PROBLEMS = ("quadratic", *NETWORK_PROBLEMS)
NOISES = (*NOISE_KINDS, "minibatch")
# the problems a user's text (`text=`) can replace the data of: name -> model name
TEXT_MODELS = {"lstm-text": "lstm", "gru-text": "gru", "lstm": "lstm", "gru": "gru"}


def problem_by_name(
    name: str,
    *,
    noise: str = "gaussian",
    scale: float | None = None,
    dim: int = 3,
    cond: float = 4.0,
    df: float = 3.0,
    batch_size: int = 32,
    covariance: str = "exact",
    train_size: int | None = None,
    data: str | os.PathLike | None = None,
    text: str | os.PathLike | None = None,
    key: PRNGKeyArray | None = None,
) -> AbstractProblem:
    """A problem of `PROBLEMS`, a model on your data, or your own problem.

    - `"quadratic"` is `Quadratic.standard(dim, cond, scale, noise=, df=)` (Gaussian or
      Student-t noise, `scale` default 1).
    - A network name is `network_problem(name, ...)` with Gaussian noise of std `scale`
      (default 0.01) on the full-batch gradient or `MinibatchNoise(batch_size, covariance)`,
      initialised from `key` (required for networks).
    - With `data` (an `.npz` file, read by `sdelens.nn.load_npz`, `train_size` applied), `name`
      is a model name of `NETWORK_MODELS` (`"mlp"`, `"cnn"`, `"cnn1d"`, `"resnet"`,
      `"transformer"`, `"lstm"`, `"gru"`), and the problem is that model on your data, named
      `"<model>-<file stem>"`, with the noise options above. A ready-made name
      (`"mlp-digits"`) with `data` is an error: it names a dataset already.
    - With `text` (your UTF-8 text file), `name` is a character language model, `"lstm-text"`
      or `"gru-text"` (or the model name `"lstm"`, `"gru"`), on that text instead of the Python
      documentation, at the same quick size: windows of 32 characters from the first 4 000
      (`sdelens.nn.load_text(text, seq_len=32, max_chars=4000)`, `train_size` applied; the
      vocabulary is the file's characters). The problem is named `"lstm-<file stem>"`; for
      another size pass `data=sdelens.nn.load_text(...)` to `network_problem`.
    - `"module:function"` imports `module` (the current directory first, as `python -m`
      does) and returns `function()`, or `function(key=key)` if it has a `key` parameter: it
      must return an `AbstractProblem` (`Quadratic`, `Problem`, `NetworkProblem`, ...). The
      problem brings its own noise: the other options are not used (`data` is an error).
    """
    if not isinstance(name, str):
        raise ValueError(f"problem={name!r} is invalid: a name (str) is required.")
    if text is not None:
        if data is not None:
            raise ValueError(
                f"text={str(text)!r} is invalid with data={str(data)!r}: give one dataset."
            )
        if name not in TEXT_MODELS:
            raise ValueError(
                f"text={str(text)!r} is invalid with problem={name!r}: a text needs a character "
                f"language model, {', '.join(map(repr, TEXT_MODELS))}."
            )
    if ":" in name:
        if data is not None:
            raise ValueError(
                f"data={str(data)!r} is invalid with problem={name!r}: your function builds "
                f"its own problem (data is for a model name: {_models()})."
            )
        return _from_function(name, key)
    if data is not None and name not in NETWORK_MODELS:
        raise ValueError(
            f"data={str(data)!r} is invalid with problem={name!r}: with data, the problem is a "
            f"model name, {_models()} (the file replaces the dataset)."
        )
    if data is None and text is None and name in NETWORK_MODELS:
        raise ValueError(
            f"problem={name!r} is invalid without data: a model name needs your dataset, e.g. "
            f"data='mine.npz'; ready-made problems are {', '.join(map(repr, PROBLEMS))}."
        )
    if data is None and name not in PROBLEMS:
        raise ValueError(
            f"problem={name!r} is invalid: choose one of {', '.join(map(repr, PROBLEMS))}, a "
            f"model name ({_models()}) with data='file.npz', or 'module:function'."
        )
    _check.choice("noise", noise, NOISES)
    _check.choice("covariance", covariance, COVARIANCES)  # checked even where unused
    if name == "quadratic":
        if noise == "minibatch":
            raise ValueError("noise='minibatch' needs a network problem (it samples data).")
        return Quadratic.standard(dim, cond, 1.0 if scale is None else scale, noise=noise, df=df)
    if noise == "student-t":
        raise ValueError(
            "noise='student-t' is for the quadratic: networks take gaussian or minibatch."
        )
    if key is None:
        raise ValueError(
            "key=None is invalid for a network problem: its initialisation needs a key."
        )
    if noise == "gaussian":
        model = GaussianNoise(0.01 if scale is None else scale)
    else:
        model = MinibatchNoise(batch_size, covariance=covariance)
    if text is not None:
        try:
            dataset = load_text(text, train_size=train_size, **QUICK_TEXT)
        except ValueError as error:
            message = str(error)  # the loader names `source`: the caller passed `text`
            for spelled in {str(text), str(Path(text))}:
                message = message.replace(f"source={spelled!r}", f"text={spelled!r}")
            raise ValueError(message) from error
        return network_problem(TEXT_MODELS[name], model, key=key, data=dataset)
    if data is None:
        return network_problem(name, model, key=key, train_size=train_size)
    try:
        dataset = load_npz(data, train_size=train_size)
    except ValueError as error:
        reason = str(error).removeprefix(f"path={str(Path(data))!r} is invalid: ")
        raise ValueError(f"data={str(data)!r} is invalid: {reason}") from error
    try:
        return network_problem(name, model, key=key, data=dataset)
    except ValueError as error:  # e.g. flat features for an image model
        raise ValueError(f"problem={name!r} with data={str(data)!r}: {error}") from error


def _models() -> str:
    return ", ".join(map(repr, NETWORK_MODELS))


_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
IS_A_PROBLEM = "an sdelens problem (sl.Quadratic, sl.Problem, sl.NetworkProblem, ...)"


def _from_function(spec: str, key: PRNGKeyArray | None) -> AbstractProblem:
    """`module:function` imported and called (`problem_by_name`), every failure a ValueError
    naming `problem`, the value and what is allowed."""
    bad = f"problem={spec!r} is invalid"
    module_name, _, attr = spec.partition(":")
    if not (_DOTTED.fullmatch(module_name) and _DOTTED.fullmatch(attr)):
        raise ValueError(
            f"{bad}: 'module:function' is required (Python names, e.g. "
            "'mymodule:make_problem'), where the function returns a problem."
        )
    target = _import(module_name, bad)
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(
                f"{bad}: module {module_name!r} has no attribute {attr!r}; a function returning "
                f"{IS_A_PROBLEM} is required."
            )
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(
            f"{bad}: {attr} is not callable (an object of type {type(target).__name__}); a "
            f"function returning {IS_A_PROBLEM} is required."
        )
    kwargs = _arguments(target, attr, key, bad)
    call = f"{attr}({'key' if kwargs else ''})"
    try:
        problem = target(**kwargs)
    except Exception as error:  # the user's code: any failure, in one line
        raise ValueError(f"{bad}: {call} raised {_check.error_line(error)}") from error
    if not isinstance(problem, AbstractProblem):
        raise ValueError(
            f"{bad}: {call} returned an object of type {type(problem).__name__}; "
            f"{IS_A_PROBLEM} is required."
        )
    return problem


def _import(module_name: str, bad: str):
    """Import `module_name` with the current directory first on `sys.path`, as `python -m`
    does, and `sys.path` as it was afterwards."""
    cwd = os.getcwd()
    sys.path.insert(0, cwd)
    importlib.invalidate_caches()  # a module written since the last import is found
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ValueError(
                f"{bad}: no module named {missing!r} in the current directory ({cwd}) or on "
                "sys.path; 'module:function' needs an importable module."
            ) from error
        raise ValueError(
            f"{bad}: importing {module_name} raised {_check.error_line(error)}"
        ) from error
    except Exception as error:  # a syntax error, or the module's own code failing
        raise ValueError(
            f"{bad}: importing {module_name} raised {_check.error_line(error)}"
        ) from error
    finally:
        if cwd in sys.path:  # the first occurrence: the one put there above
            sys.path.remove(cwd)


def _arguments(target, attr: str, key, bad: str) -> dict:
    """`{}` or `{"key": key}`: the function is called with no arguments, or with the key if it
    takes a `key` parameter."""
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):  # no signature (some builtins): call it bare
        return {}
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    takes_key = "key" in params and params["key"].kind in named
    required = [
        n
        for n, p in params.items()
        if p.default is p.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        and not (n == "key" and takes_key)
    ]
    if required:
        raise ValueError(
            f"{bad}: {attr} requires {', '.join(required)}; it is called with no arguments, or "
            "with key= only if it has a key parameter."
        )
    if not takes_key or key is None:
        if takes_key and params["key"].default is params["key"].empty:
            raise ValueError(f"{bad}: {attr} takes a key: pass key=jax.random.key(0).")
        return {}
    return {"key": key}
