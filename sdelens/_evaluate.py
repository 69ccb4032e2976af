"""Test metrics of network runs."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from . import _check
from ._problems import NetworkProblem
from ._run import Run

__all__ = ["evaluate"]


@eqx.filter_jit
def _evaluate_all(problem: NetworkProblem, xs, split: str):
    per_save = jax.vmap(lambda x: problem.metrics(x, split))
    return jax.lax.map(per_save, xs)  # one path at a time: memory O(saves), not O(paths)


def evaluate(problem: NetworkProblem, run: Run, split: str = "test") -> dict[str, Array]:
    """Loss and accuracy of every path of `run` at every save on a split (`"test"` or
    `"train"`): `{"loss": (n_paths, S), "accuracy": (n_paths, S)}`. Needs the paths
    (`keep="paths"`). Non-finite paths give NaN."""
    if not isinstance(problem, NetworkProblem):
        raise ValueError(f"problem={type(problem).__name__} is invalid: a NetworkProblem.")
    _check.choice("split", split, ("train", "test"))
    if run.x is None:
        raise ValueError("run kept statistics only (keep='stats'): evaluate needs the paths.")
    loss, accuracy = _evaluate_all(problem, jnp.asarray(run.x), split)
    finite = jnp.all(jnp.isfinite(jnp.asarray(run.x)), axis=-1)
    return {"loss": loss, "accuracy": jnp.where(finite, accuracy, jnp.nan)}
