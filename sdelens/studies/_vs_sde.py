"""The discrete optimizer and its SDE on one problem, side by side."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jaxtyping import PRNGKeyArray

from .._compare import Comparison, compare
from .._evaluate import evaluate
from .._optimizers import AbstractOptimizer
from .._problems import AbstractProblem, NetworkProblem
from .._run import Run
from .._sde import EntropySGDSDE, sde_for
from .._simulate import run_optimizer, simulate
from .._theory import Stationary, empirical_stationary, stationary
from ._common import resolve_key

__all__ = ["OptimizerVsSDE", "optimizer_vs_sde"]


def _try_stationary(opt, prob) -> Stationary | None:
    """The closed form, or None where there is none or no stationary law exists."""
    try:
        return stationary(opt, prob)
    except (NotImplementedError, ValueError):
        return None


@dataclasses.dataclass(frozen=True, eq=False)
class OptimizerVsSDE:
    """The discrete optimizer (`ref`) and its SDE (`run`) on one problem, side by side.

    `comparison` is `compare(ref, run)`; `theory` the closed-form stationary law (None where
    none exists); `test_accuracy` (network problems with stored paths) `{"optimizer": (n, S),
    "sde": (n, S)}` of every path at every save; `model_validity` how well the optimizer meets
    the SDE's assumptions where the model states them (Entropy-SGD's two-timescale model:
    `EntropySGDSDE.validity`; None otherwise). Figures: `sdelens.plot.figures(result)`.
    """

    optimizer: AbstractOptimizer
    problem: AbstractProblem
    ref: Run
    run: Run
    comparison: Comparison
    theory: Stationary | None
    test_accuracy: dict[str, np.ndarray] | None = None
    model_validity: dict | None = None

    def metrics(self, burn_in: float = 0.5) -> dict:
        """`compare` metrics plus the stationary loss of both runs and of the theory (for
        network problems the final test accuracy instead: training curves are not
        stationary)."""
        out = self.comparison.metrics()
        if self.model_validity is not None:
            out["model_validity"] = dict(self.model_validity)
        if self.test_accuracy is not None:
            out["final_test_accuracy"] = {
                k: float(np.nanmean(v[:, -1])) for k, v in self.test_accuracy.items()
            }
            return out
        for name, r in (("optimizer", self.ref), ("sde", self.run)):
            if not r.diverged:
                est = empirical_stationary(r, burn_in=burn_in)
                out.setdefault("stationary_loss", {})[name] = est.expected_loss
                out.setdefault("stationary_loss_se", {})[name] = est.expected_loss_se
        if self.theory is not None:
            out.setdefault("stationary_loss", {})["theory"] = self.theory.expected_loss
        return out


def optimizer_vs_sde(
    opt: AbstractOptimizer,
    prob: AbstractProblem,
    x0,
    *,
    n_steps: int,
    n_paths: int,
    key: PRNGKeyArray | None = None,
    save_every: int = 1,
    solver=None,
    form: str = "default",
    keep: str = "paths",
    chunk_size: int | None = None,
    substeps: int | None = None,
    nodes: int | None = None,
    seed: int | None = None,
    coupled: bool = False,
) -> OptimizerVsSDE:
    """Run `opt` and integrate its SDE (`form`) from `x0`, with independent keys split from
    `key` (required; `seed=` is a deprecated alias).

    `keep`, `chunk_size`, `substeps`, `nodes`: as in `simulate` (`keep="stats"` for very many
    paths);
    `substeps` defaults to `opt.grads_per_step`, one SDE step per gradient evaluation (1 for
    SGD, SignSGD, RMSprop and Adam; `inner_steps` for Entropy-SGD, whose fast variable moves
    `inner_steps` times per outer step).

    `coupled=True` (docs/math.md §13): both runs use `key`, and the optimizer's noise at step
    `k` is driven by the SDE's Brownian increment over the step (`run_optimizer(...,
    coupled=True)`). Each run keeps its law, so every weak statement stands; the comparison
    is then paired (`compare(..., paired=True)`): the weak error's standard error comes from
    the per-path differences, and the strong error `E‖x_opt - X_sde‖` is reported per save.
    Needs `keep="paths"`.
    """
    key = resolve_key(key, seed)
    if not isinstance(coupled, bool):
        raise ValueError(f"coupled={coupled!r} is invalid: True or False.")
    if coupled and keep != "paths":
        raise ValueError(
            f"keep={keep!r} is invalid with coupled=True: the coupled comparison pairs the paths "
            "one by one, so keep='paths' is required."
        )
    substeps = opt.grads_per_step if substeps is None else substeps
    sde = sde_for(opt, prob, form=form, nodes=nodes)  # a bad pair fails before any run
    key_opt, key_sde = (key, key) if coupled else jax.random.split(key)
    scale = {"keep": keep, "chunk_size": chunk_size}
    if coupled:  # run_optimizer checks the pair before running
        scale.update(coupled=True, solver=solver, form=form, substeps=substeps, nodes=nodes)
    ref = run_optimizer(
        opt, prob, x0, n_steps=n_steps, n_runs=n_paths, key=key_opt, save_every=save_every, **scale
    )
    scale = {"keep": keep, "chunk_size": chunk_size}
    run = simulate(
        opt,
        prob,
        x0,
        n_steps=n_steps,
        n_paths=n_paths,
        key=key_sde,
        save_every=save_every,
        solver=solver,
        form=form,
        substeps=substeps,
        nodes=nodes,
        **scale,
    )
    accuracy = None
    if isinstance(prob, NetworkProblem) and ref.x is not None:
        accuracy = {
            label: np.asarray(evaluate(prob, r)["accuracy"])
            for label, r in (("optimizer", ref), ("sde", run))
        }
    theory = _try_stationary(opt, prob)
    validity = sde.validity() if isinstance(sde, EntropySGDSDE) else None
    comparison = compare(ref, run, paired=coupled)
    return OptimizerVsSDE(opt, prob, ref, run, comparison, theory, accuracy, validity)
