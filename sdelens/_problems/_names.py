"""The problems by the names the command line uses."""

from __future__ import annotations

from jaxtyping import PRNGKeyArray

from .. import _check
from .._noise import COVARIANCES, GaussianNoise, MinibatchNoise
from ._base import AbstractProblem
from ._network import NETWORK_PROBLEMS, network_problem
from ._quadratic import NOISE_KINDS, Quadratic

__all__ = ["PROBLEMS", "NOISES", "problem_by_name"]

PROBLEMS = ("quadratic", *NETWORK_PROBLEMS)
NOISES = (*NOISE_KINDS, "minibatch")


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
    key: PRNGKeyArray | None = None,
) -> AbstractProblem:
    """A problem of `PROBLEMS`: `"quadratic"` is `Quadratic.standard(dim, cond, scale, noise=,
    df=)` (Gaussian or Student-t noise, `scale` default 1); a network name is
    `network_problem(name, ...)` with Gaussian noise of std `scale` (default 0.01) on the
    full-batch gradient or `MinibatchNoise(batch_size, covariance)`, initialised from `key`
    (required for networks)."""
    _check.choice("problem", name, PROBLEMS)
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
    return network_problem(name, model, key=key, train_size=train_size)
