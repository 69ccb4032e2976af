"""Entropy-SGD's inner loop made cheaper: the restarted SGLD chain against a warm-started one,
a control variate with fewer steps, and SGHMC, at equal gradient evaluations (docs/math.md
§7.9)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np
from jaxtyping import PRNGKeyArray

from .. import _check, _progress
from .._optimizers import AbstractOptimizer, EntropySGD
from .._problems import AbstractProblem, Quadratic
from .._simulate import check_key, run_optimizer
from .._stats import mean_se
from ._common import Progress, say
from ._compute_fair import ComputeFair, compute_fair

__all__ = ["InnerLoops", "inner_loops", "inner_loop_variants", "INNER_LOOP_VARIANTS"]

# name: the options that make the variant (docs/math.md §7.9)
_FLAGS = {
    "restart": {},
    "warm": {"warm_start": True},
    "cv": {"control_variate": True},
    "sghmc": {"inner": "sghmc"},
    "warm-sghmc": {"warm_start": True, "inner": "sghmc"},
}
INNER_LOOP_VARIANTS = tuple(_FLAGS)


def _variant(plain: EntropySGD, name: str, anchor_batches: int) -> EntropySGD:
    flags = dict(_FLAGS[name])
    if flags.get("control_variate"):
        flags["anchor_batches"] = anchor_batches
    return plain.replace(**flags)


def _plain(base: EntropySGD) -> EntropySGD:
    if not isinstance(base, EntropySGD):
        raise ValueError(f"base={base!r} is invalid: an sl.EntropySGD is required.")
    return base.replace(inner="sgld", warm_start=False, control_variate=False)


def _names(variants) -> tuple[str, ...]:
    if isinstance(variants, str):
        variants = (variants,)
    names = tuple(variants)
    if not names:
        raise ValueError(f"variants=() is invalid: give at least one of {INNER_LOOP_VARIANTS}.")
    for name in names:
        _check.choice("variants", name, INNER_LOOP_VARIANTS)
    if len(set(names)) != len(names):
        raise ValueError(f"variants={names!r} is invalid: each variant at most once.")
    return names


def inner_loop_variants(
    base: EntropySGD, variants: Sequence[str] = INNER_LOOP_VARIANTS, *, anchor_batches: int = 1
) -> dict[str, EntropySGD]:
    """Entropy-SGD's inner-loop variants built from `base`, each at `base`'s cost per outer step
    (`L = base.inner_steps` gradients), so that a gradient budget buys each the same number of
    outer steps (docs/math.md §7.9):

    - `"restart"`: the SGLD chain restarted at `x` every outer step (Algorithm 1);
    - `"warm"`: the SGLD chain continued from the previous outer step (`warm_start=True`);
    - `"cv"`: the control variate (`control_variate=True`) with `anchor_batches = m` anchor
      gradients and `(L - m) // 2` inner steps, which cost `2 ((L - m) // 2) + m ≤ L`;
    - `"sghmc"`, `"warm-sghmc"`: the SGHMC chain (`base.friction`), restarted or continued.

    Every other hyperparameter is `base`'s. `base`'s own `inner`, `warm_start` and
    `control_variate` are replaced."""
    plain = _plain(base)
    names = _names(variants)
    anchor_batches = _check.positive_int("anchor_batches", anchor_batches)
    out = {}
    for name in names:
        opt = _variant(plain, name, anchor_batches)
        if name == "cv":
            steps = (base.inner_steps - anchor_batches) // 2
            if steps < 1:
                raise ValueError(
                    f"inner_steps={base.inner_steps} is too small for the control variate with "
                    f"anchor_batches={anchor_batches} at equal cost: inner_steps >= "
                    f"anchor_batches + 2 = {anchor_batches + 2} is required."
                )
            opt = opt.replace(inner_steps=steps)
        out[name] = opt
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class InnerLoops:
    """What `inner_loops` measured.

    `variants` (name → `EntropySGD`) are the variants at the base's cost per outer step, run
    for the same gradient budget in `fair` (a `ComputeFair`, with any baselines).

    On a quadratic, the estimator sweep (None otherwise): for each variant and each number of
    inner steps `inner_steps[j]`, `grads_per_step[name][j]` gradients per outer step and the
    error `e = d̂ - d` of the local-entropy direction `d̂ = γ_out (x - μ)` against the exact
    `d = γ_out H (H + γ)⁻¹ (x - x*)` (the Gibbs mean `⟨x'⟩ = (H + γ)⁻¹ (γ x + H x*)`), over
    `n_steps` outer steps of `n_paths` paths: `bias2[name][j]` the squared norm of its mean
    (debiased by `variance/n_paths`), `variance[name][j]` the trace of its covariance (both
    averaged over the outer steps), `mse = bias2 + variance` = the mean of `|e|²` and `mse_se`
    its standard error over paths. `scale` is the mean of `|d|²` along the first variant's
    paths at the largest `L` (a yardstick for the errors). NaN where a run diverged.
    """

    problem: AbstractProblem
    base: EntropySGD
    variants: dict[str, EntropySGD]
    fair: ComputeFair
    inner_steps: np.ndarray | None = None
    grads_per_step: dict[str, np.ndarray] | None = None
    bias2: dict[str, np.ndarray] | None = None
    variance: dict[str, np.ndarray] | None = None
    mse: dict[str, np.ndarray] | None = None
    mse_se: dict[str, np.ndarray] | None = None
    scale: float | None = None
    n_steps: int | None = None
    n_paths: int | None = None

    def metrics(self) -> dict:
        """Per variant its inner steps and gradients per outer step; the estimator sweep (on a
        quadratic); and the equal-budget results (`compute_fair`)."""
        out = {
            "variants": {
                name: {
                    "inner_steps": int(opt.inner_steps),
                    "grads_per_step": int(opt.grads_per_step),
                    "inner": opt.inner,
                    "warm_start": opt.warm_start,
                    "control_variate": opt.control_variate,
                    "anchor_batches": int(opt.anchor_batches),
                }
                for name, opt in self.variants.items()
            },
            "compute_fair": self.fair.metrics(),
        }
        if self.inner_steps is not None:
            out["estimator"] = {
                "inner_steps": self.inner_steps.tolist(),
                "n_steps": self.n_steps,
                "n_paths": self.n_paths,
                "scale": self.scale,
                **{
                    name: {
                        "grads_per_step": self.grads_per_step[name].tolist(),
                        "bias2": self.bias2[name].tolist(),
                        "variance": self.variance[name].tolist(),
                        "mse": self.mse[name].tolist(),
                        "mse_se": self.mse_se[name].tolist(),
                    }
                    for name in self.mse
                },
            }
        return out


def _baseline_labels(baselines) -> list[str]:
    names = [opt.name for opt in baselines]
    return [n if names.count(n) == 1 else f"{n}-{i}" for i, n in enumerate(names)]


def _relabelled(fair: ComputeFair, labels: dict[str, str]) -> ComputeFair:
    """`fair` with its runs named `labels[name]` (the variants' names, not `entropysgd-i`)."""

    def relabel(table):
        return None if table is None else {labels[k]: v for k, v in table.items()}

    fields = ("optimizers", "runs", "grad_evals", "epochs", "seconds", "accuracy", "test_loss")
    return dataclasses.replace(fair, **{f: relabel(getattr(fair, f)) for f in fields})


def _estimator_errors(opt: EntropySGD, prob: Quadratic, x0, n_steps, n_paths, key) -> tuple:
    """`(bias², variance, mse, mse_se, mean |d|²)` of the local-entropy direction over
    `n_steps` outer steps. Without outer momentum each step is `x_{k+1} = x_k - η d̂_k`, so the
    saved trajectory gives every direction the optimizer used, with no access to its state."""
    run = run_optimizer(opt, prob, x0, n_steps=n_steps, n_runs=n_paths, key=key, save_every=1)
    x = np.asarray(run.x, float)
    if not np.all(np.isfinite(x)):
        return (np.nan,) * 5
    used = (x[:, :-1] - x[:, 1:]) / opt.lr
    curvature, basis = np.linalg.eigh(np.asarray(prob.hessian, float))
    gamma = np.asarray(opt.gamma_at(np.arange(n_steps)), float)[:, None]  # scoping, per step
    gamma_out = gamma if opt.gamma_in_outer_step else 1.0
    offset = (x[:, :-1] - np.asarray(prob.x_star, float)) @ basis
    exact = (gamma_out * curvature / (curvature + gamma) * offset) @ basis.T
    error = used - exact
    variance = error.var(axis=0, ddof=1).sum(-1)  # (K,)
    bias2 = (error.mean(axis=0) ** 2).sum(-1) - variance / n_paths
    per_path = (error**2).sum(-1).mean(-1)  # each path's mean |e|² over the steps
    mse, mse_se, _ = mean_se(per_path)
    scale = float(np.mean((exact**2).sum(-1)))
    return float(bias2.mean()), float(variance.mean()), float(mse), float(mse_se), scale


def inner_loops(
    problem: AbstractProblem,
    base: EntropySGD,
    x0=None,
    *,
    grad_budget: int,
    key: PRNGKeyArray,
    variants: Sequence[str] = INNER_LOOP_VARIANTS,
    baselines: Sequence[AbstractOptimizer] = (),
    anchor_batches: int = 1,
    n_runs: int = 4,
    n_saves: int = 10,
    inner_steps: Sequence[int] = (1, 2, 5, 10, 20),
    n_steps: int = 50,
    n_paths: int = 400,
    progress: Progress = None,
) -> InnerLoops:
    """Which inner loop of Entropy-SGD keeps its accuracy at lower cost (docs/math.md §7.9).

    1. **Equal budget.** The variants of `inner_loop_variants(base, variants, anchor_batches)`
       (each at `base`'s cost per outer step) and `baselines` run for `grad_budget` gradient
       evaluations each (`compute_fair`, `n_runs` runs from `x0`, `n_saves` saves): final
       train loss, and test loss and accuracy (bits per character for text) on networks.
       `x0` of shape `(n_runs, d)` starts every run elsewhere (e.g. several initialisations
       of a network); by default a network problem's initialisation.
    2. **The estimator** (a `Quadratic` only, where the Gibbs mean is exact): for each variant
       with `L` in `inner_steps` inner steps (the control variate's cost is `2L + m`), the
       bias², variance and mean squared error of the direction `γ_out (x - μ)` the optimizer
       takes, against the exact `γ_out (x - ⟨x'⟩)`, along `n_steps` outer steps of `n_paths`
       paths from `x0`, without outer momentum (`base.momentum` is set to 0 there, so that
       each step reveals its direction).

    `key` (required) drives both, shared by the variants (common random numbers).
    """
    key = check_key(key)
    names = _names(variants)
    opts = inner_loop_variants(base, names, anchor_batches=anchor_batches)
    grad_budget = _check.positive_int("grad_budget", grad_budget)
    quadratic = isinstance(problem, Quadratic)
    if quadratic:
        if x0 is None:
            raise ValueError("x0 is required for a Quadratic (the estimator's start point).")
        steps_grid = [_check.positive_int("inner_steps", v) for v in np.atleast_1d(inner_steps)]
        if not steps_grid:
            raise ValueError("inner_steps=() is invalid: at least one value is required.")
        n_steps = _check.positive_int("n_steps", n_steps)
        n_paths = _check.positive_int("n_paths", n_paths)
        if n_paths < 2:
            raise ValueError(f"n_paths={n_paths} is invalid: at least 2 (a variance) is required.")
    optimizers = [*baselines, *opts.values()]
    say(progress, f"{len(optimizers)} optimizers x {n_runs} runs, {grad_budget} gradients each")
    fair = compute_fair(
        problem, optimizers, x0, grad_budget=grad_budget, n_runs=n_runs, n_saves=n_saves, key=key
    )
    labels = [*_baseline_labels(baselines), *opts]
    fair = _relabelled(fair, dict(zip(fair.runs, labels, strict=True)))
    if not quadratic:
        return InnerLoops(problem, base, opts, fair)

    plain = _plain(base).replace(momentum=0.0, nesterov=False)
    sweep_key = jax.random.fold_in(key, 1)
    fields = ("bias2", "variance", "mse", "mse_se")
    table = {f: {n: np.full(len(steps_grid), np.nan) for n in names} for f in fields}
    grads = {n: np.zeros(len(steps_grid), int) for n in names}
    scale = np.nan
    say(progress, f"estimator: {len(names)} variants x L in {steps_grid}, {n_paths} paths")
    with _progress.task("inner-loop estimator", len(names) * len(steps_grid)) as done:
        for name in names:
            for j, steps in enumerate(steps_grid):
                opt = _variant(plain.replace(inner_steps=steps), name, anchor_batches)
                grads[name][j] = opt.grads_per_step
                *values, mean_d2 = _estimator_errors(opt, problem, x0, n_steps, n_paths, sweep_key)
                for field, value in zip(fields, values, strict=True):
                    table[field][name][j] = value
                if name == names[0] and j == len(steps_grid) - 1:
                    scale = mean_d2
                done.advance()
    return InnerLoops(
        problem,
        base,
        opts,
        fair,
        inner_steps=np.asarray(steps_grid),
        grads_per_step=grads,
        **table,
        scale=float(scale),
        n_steps=n_steps,
        n_paths=n_paths,
    )
