"""Hyperparameter sensitivity at a fixed gradient budget."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from jaxtyping import PRNGKeyArray

from .. import _progress
from .._optimizers import AbstractOptimizer
from .._problems import AbstractProblem, NetworkProblem
from ._common import resolve_key
from ._compute_fair import compute_fair

__all__ = ["Sensitivity", "sensitivity", "grid_settings"]


def grid_settings(base: AbstractOptimizer, x_name: str, x_values, y_name: str, y_values) -> dict:
    """`{(i, j): base with x_name = x_values[i], y_name = y_values[j]}`, every setting built
    (and so validated) before anything runs."""
    x_values, y_values = list(x_values), list(y_values)
    if not x_values or not y_values:
        raise ValueError("x_values and y_values must each hold at least one value.")
    return {
        (i, j): base.replace(**{x_name: xv, y_name: yv})
        for (i, xv), (j, yv) in itertools.product(enumerate(x_values), enumerate(y_values))
    }


@dataclasses.dataclass(frozen=True, eq=False)
class Sensitivity:
    """Final train loss and test accuracy (means over runs) on a grid of two hyperparameters,
    at a fixed gradient budget: `loss[i, j]` for `x_values[i]`, `y_values[j]`."""

    x_name: str
    x_values: np.ndarray
    y_name: str
    y_values: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray | None
    diverged: np.ndarray

    def metrics(self) -> dict:
        return {
            "x": self.x_name,
            "x_values": self.x_values.tolist(),
            "y": self.y_name,
            "y_values": self.y_values.tolist(),
            "final_loss": self.loss.tolist(),
            "final_test_accuracy": None if self.accuracy is None else self.accuracy.tolist(),
            "diverged": self.diverged.tolist(),
        }


def sensitivity(
    problem: AbstractProblem,
    base: AbstractOptimizer,
    x_name: str,
    x_values,
    y_name: str,
    y_values,
    x0=None,
    *,
    grad_budget: int,
    key: PRNGKeyArray | None = None,
    n_runs: int = 2,
    seed: int | None = None,
) -> Sensitivity:
    """Vary two hyperparameters of `base` (e.g. Entropy-SGD's `gamma` and `inner_steps`) on a
    grid (`base.replace`), each setting trained for `grad_budget` gradient evaluations with the
    same `key` (required; `seed=` is a deprecated alias)."""
    key = resolve_key(key, seed)
    x_values, y_values = list(x_values), list(y_values)
    settings = grid_settings(base, x_name, x_values, y_name, y_values)
    shape = (len(x_values), len(y_values))
    loss, acc, diverged = np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape, bool)
    with _progress.task(f"sensitivity {x_name} x {y_name}", len(settings)) as progress:
        for (i, j), opt in settings.items():
            fair = compute_fair(
                problem, [opt], x0, grad_budget=grad_budget, n_runs=n_runs, n_saves=1, key=key
            )
            row = fair.metrics()[opt.name]
            loss[i, j], diverged[i, j] = row["final_loss"], row["diverged"]
            acc[i, j] = row.get("final_test_accuracy", np.nan)
            progress.advance()
    is_network = isinstance(problem, NetworkProblem)
    return Sensitivity(
        x_name,
        np.asarray(x_values),
        y_name,
        np.asarray(y_values),
        loss,
        acc if is_network else None,
        diverged,
    )
