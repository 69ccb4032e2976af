"""Entropy-SGD against its baselines at equal compute, its hyperparameter sensitivity, the
Hessian spectra at the minima each optimizer finds, and which minimum local entropy and plain
smoothing prefer (the questions of the reviews in `seeds/002`, `seeds/003`)."""

from __future__ import annotations

import dataclasses
import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np

from . import _check, _flatness
from ._network import MinibatchNoise, NetworkProblem, evaluate
from ._optimizers import AbstractOptimizer
from ._problems import AbstractProblem
from ._run import Run
from ._simulate import run_optimizer

__all__ = [
    "ComputeFair",
    "compute_fair",
    "Sensitivity",
    "sensitivity",
    "HessianSpectrum",
    "hessian_spectrum",
    "Preference",
    "minimum_preference",
]


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    se = values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else float("nan")
    return float(values.mean()), float(se)


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
    if isinstance(prob, NetworkProblem) and isinstance(prob.noise, MinibatchNoise):
        return grad_evals * prob.noise.batch_size / prob.data.n_train
    return grad_evals.astype(float)


@dataclasses.dataclass(frozen=True, eq=False)
class ComputeFair:
    """Optimizers run for the same number of stochastic-gradient evaluations.

    Per optimizer name: `runs[name]` (the `Run`), `grad_evals[name]` `(S,)` gradient
    evaluations at each save, `epochs[name]` the same in passes over the data
    ("effective epochs", Chaudhari et al.'s x-axis), `seconds[name]` `(S,)` wall-clock seconds
    at each save (compilation excluded; steps of one optimizer cost the same, so the time of a
    save is its share of the run), `accuracy[name]` `(n_runs, S)` test accuracy (networks only).
    """

    problem: AbstractProblem
    optimizers: dict[str, AbstractOptimizer]
    runs: dict[str, Run]
    grad_evals: dict[str, np.ndarray]
    epochs: dict[str, np.ndarray]
    seconds: dict[str, np.ndarray]
    accuracy: dict[str, np.ndarray] | None

    def metrics(self) -> dict:
        """Final train loss and test accuracy (mean, standard error over runs), gradient
        evaluations, seconds and seconds per gradient evaluation, per optimizer."""
        out = {}
        for name, run in self.runs.items():
            loss, loss_se = _mean_se(np.asarray(run.loss[:, -1], dtype=float))
            row = {
                "final_loss": loss,
                "final_loss_se": loss_se,
                "grad_evals": int(self.grad_evals[name][-1]),
                "effective_epochs": float(self.epochs[name][-1]),
                "seconds": float(self.seconds[name][-1]),
                "seconds_per_grad_eval": float(self.seconds[name][-1] / self.grad_evals[name][-1]),
                "diverged": run.diverged,
            }
            if self.accuracy is not None:
                acc, acc_se = _mean_se(self.accuracy[name][:, -1])
                row.update(final_test_accuracy=acc, final_test_accuracy_se=acc_se)
            out[name] = row
        return out

    def figures(self) -> dict:
        """Train loss against gradient evaluations and against seconds; test accuracy
        against gradient evaluations (networks)."""
        from . import plot

        figs = {
            "loss_vs_grad_evals": plot.compute_fair(self, x="grad_evals"),
            "loss_vs_seconds": plot.compute_fair(self, x="seconds"),
        }
        if self.accuracy is not None:
            figs["accuracy_vs_grad_evals"] = plot.compute_fair(self, x="grad_evals", y="accuracy")
        return figs


def compute_fair(
    problem: AbstractProblem,
    optimizers,
    x0=None,
    *,
    grad_budget: int,
    n_runs: int = 4,
    n_saves: int = 10,
    seed: int = 0,
) -> ComputeFair:
    """Run each optimizer for `grad_budget` stochastic-gradient evaluations (Entropy-SGD:
    `grad_budget // inner_steps` outer steps), `n_runs` runs each from `x0` (default: a network
    problem's initialisation), and record loss, test accuracy, gradient evaluations and
    wall-clock time at `n_saves` saves. Every run of every optimizer uses the same `seed`."""
    grad_budget = _check.positive_int("grad_budget", grad_budget)
    n_saves = _check.positive_int("n_saves", n_saves)
    optimizers = list(optimizers)
    if not optimizers:
        raise ValueError("optimizers is empty: give at least one optimizer.")
    names = [opt.name for opt in optimizers]
    if len(set(names)) != len(names):
        names = [f"{opt.name}-{i}" for i, opt in enumerate(optimizers)]
    if x0 is None:
        if not isinstance(problem, NetworkProblem):
            raise ValueError("x0 is required for problems other than NetworkProblem.")
        x0 = problem.x0
    key = jax.random.key(seed)
    runs, grad_evals, epochs, seconds = {}, {}, {}, {}
    for name, opt in zip(names, optimizers, strict=True):
        n_steps, save_every = _steps_for_budget(opt, grad_budget, n_saves)
        run, wall = _timed_run(opt, problem, x0, n_steps, n_runs, key, save_every)
        runs[name] = run
        grad_evals[name] = run.steps * opt.grads_per_step
        epochs[name] = _effective_epochs(problem, grad_evals[name])
        seconds[name] = wall * run.steps / n_steps
    accuracy = None
    if isinstance(problem, NetworkProblem):
        accuracy = {n: np.asarray(evaluate(problem, r)["accuracy"]) for n, r in runs.items()}
    return ComputeFair(
        problem,
        dict(zip(names, optimizers, strict=True)),
        runs,
        grad_evals,
        epochs,
        seconds,
        accuracy,
    )


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
    n_runs: int = 2,
    seed: int = 0,
) -> Sensitivity:
    """Vary two hyperparameters of `base` (e.g. Entropy-SGD's `gamma` and `inner_steps`) on a
    grid, each setting trained for `grad_budget` gradient evaluations."""
    for name in (x_name, y_name):
        if not hasattr(base, name):
            raise ValueError(f"{name!r} is not a hyperparameter of {type(base).__name__}.")
    x_values, y_values = list(x_values), list(y_values)
    if not x_values or not y_values:
        raise ValueError("x_values and y_values must each hold at least one value.")
    shape = (len(x_values), len(y_values))
    loss, acc, diverged = np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape, bool)
    for (i, xv), (j, yv) in itertools.product(enumerate(x_values), enumerate(y_values)):
        opt = dataclasses.replace(base, **{x_name: xv, y_name: yv})
        fair = compute_fair(
            problem, [opt], x0, grad_budget=grad_budget, n_runs=n_runs, n_saves=1, seed=seed
        )
        row = fair.metrics()[opt.name]
        loss[i, j], diverged[i, j] = row["final_loss"], row["diverged"]
        acc[i, j] = row.get("final_test_accuracy", np.nan)
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


@dataclasses.dataclass(frozen=True, eq=False)
class HessianSpectrum:
    """The Hessian at a point: SLQ `density`, `top` eigenvalues, Hutchinson `trace` (± SE) and
    the fraction of the spectral mass with `|λ| < near_zero · λ_max`."""

    density: _flatness.SpectralDensity
    top: np.ndarray
    trace: float
    trace_se: float
    near_zero_fraction: float


def hessian_spectrum(
    loss,
    x,
    key=None,
    *,
    k: int = 10,
    n_probes: int = 8,
    n_iter: int = 60,
    near_zero: float = 0.01,
) -> HessianSpectrum:
    """Spectrum of `∇²f(x)` (Chaudhari et al. 2017, Fig. 1: most eigenvalues of a trained
    network sit near zero). `loss` is a problem (its `loss`) or a callable."""
    loss = loss.loss if isinstance(loss, AbstractProblem) else loss
    key = jax.random.key(0) if key is None else key
    k_top, k_slq, k_trace = jax.random.split(key, 3)
    x = jnp.asarray(x)
    top, _ = _flatness.top_eigenvalues(loss, x, k, k_top, n_iter=min(n_iter, x.shape[0]))
    # a kernel 1% of the largest |eigenvalue| wide: a curve to plot, not single eigenvalues
    sigma = 0.01 * max(float(jnp.max(jnp.abs(top))), 1e-12)
    density = _flatness.spectral_density(
        loss, x, k_slq, n_probes=n_probes, n_iter=n_iter, grid=400, sigma=sigma
    )
    trace, trace_se = _flatness.hutchinson_trace(loss, x, k_trace, n_probes=4 * n_probes)
    scale = jnp.max(jnp.abs(density.nodes))
    near = jnp.sum(jnp.where(jnp.abs(density.nodes) < near_zero * scale, density.weights, 0.0))
    return HessianSpectrum(
        density, np.asarray(top), float(trace), float(trace_se), float(near / n_probes)
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Preference:
    """Which of two minima an objective ranks lower, on a grid of temperatures and couplings.

    `entropy_gap[i, j]` = local-entropy loss at `wide` minus at `narrow` for `temperatures[i]`,
    `gammas[j]` (negative: the wide minimum is preferred); `smoothing_gap` the same for the
    Gaussian-smoothed loss at the same width `√(T/γ)`."""

    temperatures: np.ndarray
    gammas: np.ndarray
    entropy_gap: np.ndarray
    smoothing_gap: np.ndarray


def minimum_preference(loss, narrow, wide, temperatures, gammas) -> Preference:
    """Compare local entropy (`-T F`, quadrature) and plain smoothing at equal width on a
    1-D or 2-D landscape with minima `narrow` and `wide` (MATH.md §7: log-det vs trace penalty).
    The quadrature window holds both wells (4001 points in 1-D, 601² in 2-D)."""
    narrow, wide = jnp.atleast_1d(jnp.asarray(narrow)), jnp.atleast_1d(jnp.asarray(wide))
    # the window must hold both wells from either minimum (a deep well outside it would be lost)
    reach = 1.5 * float(jnp.linalg.norm(wide - narrow))
    temperatures, gammas = np.asarray(temperatures, float), np.asarray(gammas, float)
    ent, smooth = (
        np.zeros((temperatures.size, gammas.size)),
        np.zeros((temperatures.size, gammas.size)),
    )
    for (i, t), (j, g) in itertools.product(enumerate(temperatures), enumerate(gammas)):
        half_width, n = reach + 8.0 * float(np.sqrt(t / g)), 4001 if narrow.size == 1 else 601
        ent[i, j] = float(
            _flatness.local_entropy_integral(loss, wide, g, t, n=n, half_width=half_width)
            - _flatness.local_entropy_integral(loss, narrow, g, t, n=n, half_width=half_width)
        )
        width = float(np.sqrt(t / g))
        smooth[i, j] = float(
            _flatness.smoothed_loss_integral(loss, wide, width)
            - _flatness.smoothed_loss_integral(loss, narrow, width)
        )
    return Preference(temperatures, gammas, ent, smooth)
