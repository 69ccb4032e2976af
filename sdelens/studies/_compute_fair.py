"""Optimizers at equal compute: the same number of stochastic-gradient evaluations."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from jaxtyping import PRNGKeyArray

from .. import _check, _progress
from .._evaluate import evaluate
from .._optimizers import AbstractOptimizer
from .._problems import AbstractProblem, NetworkProblem
from .._run import Run
from .._simulate import run_optimizer
from .._stats import mean_se
from ._common import resolve_key

__all__ = ["ComputeFair", "compute_fair"]


def _steps_for_budget(opt: AbstractOptimizer, grad_budget: int, n_saves: int) -> tuple[int, int]:
    """`(n_steps, save_every)`: as many steps as the budget pays for, saved `n_saves` times."""
    n_steps = grad_budget // opt.grads_per_step
    if n_steps < n_saves:
        raise ValueError(
            f"grad_budget={grad_budget} is too small for {opt.name} ({opt.grads_per_step} "
            f"gradients per step) and n_saves={n_saves}: at least "
            f"{n_saves * opt.grads_per_step} is required."
        )
    save_every = n_steps // n_saves
    return save_every * n_saves, save_every


def _timed_run(opt, prob, x0, n_steps, n_runs, key, save_every) -> tuple[Run, float]:
    """The run and its wall-clock seconds without compilation (the call is made twice; the
    second hits the jit cache)."""
    run_optimizer(opt, prob, x0, n_steps=n_steps, n_runs=n_runs, key=key, save_every=save_every)
    started = time.perf_counter()
    run = run_optimizer(
        opt, prob, x0, n_steps=n_steps, n_runs=n_runs, key=key, save_every=save_every
    )
    return run, time.perf_counter() - started


def _effective_epochs(prob: AbstractProblem, grad_evals: np.ndarray) -> np.ndarray:
    """Gradient evaluations in passes over the training set (1 per full-batch gradient)."""
    n = prob.n_examples
    if n is None:
        return grad_evals.astype(float)
    return grad_evals * prob.noise.examples_per_grad(prob) / n


@dataclasses.dataclass(frozen=True, eq=False)
class ComputeFair:
    """Optimizers run for the same number of stochastic-gradient evaluations.

    Per optimizer name: `runs[name]` (the `Run`), `grad_evals[name]` `(S,)` gradient
    evaluations at each save, `epochs[name]` the same in passes over the data
    ("effective epochs", Chaudhari et al.'s x-axis), `seconds[name]` `(S,)` wall-clock seconds
    at each save (compilation excluded; steps of one optimizer cost the same, so the time of a
    save is its share of the run), `accuracy[name]` and `test_loss[name]` `(n_runs, S)` test
    accuracy and test loss (networks only; for text the loss is in nats per character and
    `metrics()` adds bits per character, `/ log 2`).
    """

    problem: AbstractProblem
    optimizers: dict[str, AbstractOptimizer]
    runs: dict[str, Run]
    grad_evals: dict[str, np.ndarray]
    epochs: dict[str, np.ndarray]
    seconds: dict[str, np.ndarray]
    accuracy: dict[str, np.ndarray] | None
    test_loss: dict[str, np.ndarray] | None = None

    def metrics(self) -> dict:
        """Final train loss, test loss and test accuracy (mean, standard error over runs; bits
        per character for text), gradient evaluations, seconds and seconds per gradient
        evaluation, per optimizer."""
        out = {}
        for name, run in self.runs.items():
            loss, loss_se, _ = mean_se(run.loss[:, -1])
            row = {
                "final_loss": float(loss),
                "final_loss_se": float(loss_se),
                "grad_evals": int(self.grad_evals[name][-1]),
                "effective_epochs": float(self.epochs[name][-1]),
                "seconds": float(self.seconds[name][-1]),
                "seconds_per_grad_eval": float(self.seconds[name][-1] / self.grad_evals[name][-1]),
                "diverged": run.diverged,
            }
            if self.accuracy is not None:
                acc, acc_se, _ = mean_se(self.accuracy[name][:, -1])
                row.update(final_test_accuracy=float(acc), final_test_accuracy_se=float(acc_se))
            if self.test_loss is not None:
                test, test_se, _ = mean_se(self.test_loss[name][:, -1])
                row.update(final_test_loss=float(test), final_test_loss_se=float(test_se))
                if getattr(self.problem.data, "tokens", False):
                    row.update(
                        final_test_bits_per_char=float(test / np.log(2.0)),
                        final_test_bits_per_char_se=float(test_se / np.log(2.0)),
                    )
            out[name] = row
        return out


def _names(optimizers) -> list[str]:
    names = [opt.name for opt in optimizers]
    if len(set(names)) != len(names):
        names = [f"{opt.name}-{i}" for i, opt in enumerate(optimizers)]
    return names


def compute_fair(
    problem: AbstractProblem,
    optimizers,
    x0=None,
    *,
    grad_budget: int,
    key: PRNGKeyArray | None = None,
    n_runs: int = 4,
    n_saves: int = 10,
    seed: int | None = None,
) -> ComputeFair:
    """Run each optimizer for `grad_budget` stochastic-gradient evaluations (Entropy-SGD:
    `grad_budget // inner_steps` outer steps), `n_runs` runs each from `x0` (default: a network
    problem's initialisation), and record loss, test accuracy, gradient evaluations and
    wall-clock time at `n_saves` saves (docs/math.md §7: Entropy-SGD's cost). Every optimizer's
    runs use the same `key` (required; `seed=` is a deprecated alias)."""
    key = resolve_key(key, seed)
    grad_budget = _check.positive_int("grad_budget", grad_budget)
    n_saves = _check.positive_int("n_saves", n_saves)
    optimizers = list(optimizers)
    if not optimizers:
        raise ValueError("optimizers is empty: give at least one optimizer.")
    names = _names(optimizers)
    if x0 is None:
        if not isinstance(problem, NetworkProblem):
            raise ValueError("x0 is required for problems other than NetworkProblem.")
        x0 = problem.x0
    plans = [_steps_for_budget(o, grad_budget, n_saves) for o in optimizers]  # fail before runs
    runs, grad_evals, epochs, seconds = {}, {}, {}, {}
    # One optimizer's runs finish in one step: no bar of their own (a sensitivity grid's point).
    total = len(optimizers) * n_runs if len(optimizers) > 1 else 1
    with _progress.task("equal-compute runs", total) as progress:
        for name, opt, (n_steps, save_every) in zip(names, optimizers, plans, strict=True):
            run, wall = _timed_run(opt, problem, x0, n_steps, n_runs, key, save_every)
            runs[name] = run
            grad_evals[name] = run.steps * opt.grads_per_step
            epochs[name] = _effective_epochs(problem, grad_evals[name])
            seconds[name] = wall * run.steps / n_steps
            progress.advance(n_runs)
    accuracy = test_loss = None
    if isinstance(problem, NetworkProblem):
        tests = {n: evaluate(problem, r) for n, r in runs.items()}
        accuracy = {n: np.asarray(t["accuracy"]) for n, t in tests.items()}
        test_loss = {n: np.asarray(t["loss"]) for n, t in tests.items()}
    return ComputeFair(
        problem,
        dict(zip(names, optimizers, strict=True)),
        runs,
        grad_evals,
        epochs,
        seconds,
        accuracy,
        test_loss,
    )
