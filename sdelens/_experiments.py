"""The standard experiments behind the CLI and the notebooks: optimizer vs SDE on one problem,
and the stationary loss as the noise level grows."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import numpy as np

from . import _check
from ._compare import Comparison, compare
from ._network import NetworkProblem, evaluate
from ._optimizers import AbstractOptimizer
from ._problems import AbstractProblem
from ._run import Run
from ._sde import sde_for
from ._simulate import run_optimizer, simulate
from ._theory import Stationary, empirical_stationary, stationary

__all__ = [
    "OptimizerVsSDE",
    "optimizer_vs_sde",
    "Sweep",
    "noise_sweep",
    "weight_decay_sweep",
    "loglog_slope",
]


def loglog_slope(x, y) -> float:
    """Least-squares slope of `log y` against `log x` (the exponent `p` in `y ∝ xᵖ`)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"x {x.shape} and y {y.shape} must be 1-D of one length >= 2.")
    if np.any(x <= 0) or np.any(y <= 0) or not np.all(np.isfinite(x * y)):
        raise ValueError("x and y must be finite and > 0 for a log-log slope.")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _try_stationary(opt, prob) -> Stationary | None:
    try:
        return stationary(opt, prob)
    except NotImplementedError:
        return None


@dataclasses.dataclass(frozen=True, eq=False)
class OptimizerVsSDE:
    """The discrete optimizer (`ref`) and its SDE (`run`) on one problem, side by side."""

    optimizer: AbstractOptimizer
    problem: AbstractProblem
    ref: Run
    run: Run
    comparison: Comparison
    theory: Stationary | None

    def test_accuracy(self) -> dict[str, np.ndarray] | None:
        """Network problems: test accuracy `(n_paths, S)` of the optimizer and SDE runs."""
        return self._test_accuracy

    @functools.cached_property
    def _test_accuracy(self) -> dict[str, np.ndarray] | None:
        # metrics() and figures() both need it: evaluate every path and save once
        if not isinstance(self.problem, NetworkProblem) or self.ref.x is None:
            return None
        return {
            label: np.asarray(evaluate(self.problem, r)["accuracy"])
            for label, r in (("optimizer", self.ref), ("SDE", self.run))
        }

    def metrics(self, burn_in: float = 0.5) -> dict:
        """`compare` metrics plus the stationary loss of both runs and of the theory (for
        network problems the final test accuracy instead: training curves are not
        stationary)."""
        out = self.comparison.metrics()
        accuracy = self.test_accuracy()
        if accuracy is not None:
            out["final_test_accuracy"] = {
                k.lower(): float(np.nanmean(v[:, -1])) for k, v in accuracy.items()
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

    def figures(self) -> dict:
        """Mean loss over time, and the stationary marginals against the theory."""
        from . import plot

        figs = {"trajectories": plot.trajectories(self.ref, self.run)}
        accuracy = self.test_accuracy()
        if accuracy is not None:
            figs["test_accuracy"] = plot.curves(self.ref.ts, accuracy, ylabel="test accuracy")
        elif not self.ref.diverged and self.ref.x is not None:
            figs["stationary"] = plot.stationary(self.ref, theory=self.theory)
        return figs


def optimizer_vs_sde(
    opt: AbstractOptimizer,
    prob: AbstractProblem,
    x0,
    *,
    n_steps: int,
    n_paths: int,
    seed: int = 0,
    save_every: int = 1,
    solver=None,
    form: str = "default",
    keep: str = "paths",
    chunk_size: int | None = None,
    substeps: int | None = None,
) -> OptimizerVsSDE:
    """Run `opt` and integrate its SDE (`form`) from `x0`, independent keys derived from `seed`.

    `keep`, `chunk_size`, `substeps`: as in `simulate` (`keep="stats"` for very many paths);
    `substeps` defaults to `opt.grads_per_step`, one SDE step per gradient evaluation (1 for
    SGD, SignSGD, RMSprop and Adam; `inner_steps` for Entropy-SGD, whose fast variable moves
    `inner_steps` times per outer step).
    """
    substeps = opt.grads_per_step if substeps is None else substeps
    sde_for(opt, prob, form=form)  # a bad optimizer/form pair fails before any run
    key_opt, key_sde = jax.random.split(jax.random.key(seed))
    scale = {"keep": keep, "chunk_size": chunk_size}
    ref = run_optimizer(
        opt, prob, x0, n_steps=n_steps, n_runs=n_paths, key=key_opt, save_every=save_every, **scale
    )
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
        **scale,
    )
    return OptimizerVsSDE(opt, prob, ref, run, compare(ref, run), _try_stationary(opt, prob))


@dataclasses.dataclass(frozen=True, eq=False)
class Sweep:
    """Stationary expected loss as one setting varies, per optimizer.

    `parameter` names what varies (`"noise scale"`, `"weight decay"`) and `values` its values.
    `loss[name][kind]` and `se[name][kind]` are `(len(values),)` arrays with `kind` in
    `"optimizer"`, `"sde"` (Monte Carlo estimates) and `"theory"` (closed form, `se` 0).
    `slopes[name][kind]` is the fitted log-log slope (noise sweeps: SGD 2, SignSGD 1).
    """

    parameter: str
    values: np.ndarray
    loss: dict[str, dict[str, np.ndarray]]
    se: dict[str, dict[str, np.ndarray]]
    diverged: dict[str, dict[str, bool]]

    @property
    def slopes(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                k: loglog_slope(self.values, v)
                for k, v in d.items()
                if np.all(np.isfinite(v) & (v > 0))
            }
            for name, d in self.loss.items()
        }

    def metrics(self) -> dict:
        return {
            "parameter": self.parameter,
            "values": self.values.tolist(),
            "stationary_loss": {
                n: {k: v.tolist() for k, v in d.items()} for n, d in self.loss.items()
            },
            "stationary_loss_se": {
                n: {k: v.tolist() for k, v in d.items()} for n, d in self.se.items()
            },
            "slopes": self.slopes,
            "diverged": self.diverged,
        }

    def figure(self):
        """Stationary loss against the swept value, log-log, with fitted slopes."""
        from . import plot

        series = {
            f"{n} {k}": v for n, d in self.loss.items() for k, v in d.items() if k != "theory"
        }
        errors = {f"{n} {k}": v for n, d in self.se.items() for k, v in d.items() if k != "theory"}
        theory = {f"{n} theory": d["theory"] for n, d in self.loss.items() if "theory" in d}
        fig = plot.noise_scaling(
            self.values, series, labels=list(series), theory=theory, errors=errors
        )
        fig.axes[0].set_xlabel(self.parameter)
        return fig


def _sweep(
    parameter: str,
    setups: dict[str, Callable[[float], tuple[AbstractOptimizer, AbstractProblem]]],
    values,
    x0,
    *,
    n_steps: int,
    n_paths: int,
    seed: int,
    save_every: int,
    burn_in: float,
    progress: Callable[[str], None] | None,
) -> Sweep:
    """For each named setup and value `v`, `setup(v) = (opt, prob)` is run to stationarity."""
    values = np.asarray(values, dtype=float)
    loss, se, diverged = {}, {}, {}
    for name, setup in setups.items():
        est = {"optimizer": [], "sde": []}
        err = {"optimizer": [], "sde": []}
        theory, bad = [], {"optimizer": False, "sde": False}
        for i, value in enumerate(values):
            if progress:
                progress(f"{name}: {parameter} {value:g} ({i + 1}/{len(values)})")
            opt, prob = setup(float(value))
            both = optimizer_vs_sde(
                opt,
                prob,
                x0,
                n_steps=n_steps,
                n_paths=n_paths,
                seed=seed + i,
                save_every=save_every,
            )
            for kind, r in (("optimizer", both.ref), ("sde", both.run)):
                bad[kind] |= r.diverged
                st = empirical_stationary(r, burn_in=burn_in) if not r.diverged else None
                est[kind].append(np.nan if st is None else st.expected_loss)
                err[kind].append(np.nan if st is None else st.expected_loss_se)
            theory.append(np.nan if both.theory is None else both.theory.expected_loss)
        loss[name] = {k: np.asarray(v) for k, v in est.items()}
        se[name] = {k: np.asarray(v) for k, v in err.items()}
        if np.all(np.isfinite(theory)):
            loss[name]["theory"] = np.asarray(theory)
            se[name]["theory"] = np.zeros(len(values))
        diverged[name] = bad
    return Sweep(parameter, values, loss, se, diverged)


def noise_sweep(
    optimizers: Sequence[AbstractOptimizer],
    problem_at: Callable[[float], AbstractProblem],
    scales: Sequence[float],
    x0,
    *,
    n_steps: int,
    n_paths: int,
    seed: int = 0,
    save_every: int = 10,
    burn_in: float = 0.5,
    progress: Callable[[str], None] | None = None,
) -> Sweep:
    """For each optimizer and noise scale `s`, the stationary loss of optimizer, SDE and theory.

    `problem_at(s)` builds the problem at noise scale `s` (same shapes for every `s`, so each
    optimizer compiles once). Start `x0` at the minimum to skip the transient.
    """
    scales = np.asarray(scales, dtype=float)
    _check.positive_finite("scales", scales)
    setups = {
        opt.name: functools.partial(lambda o, s: (o, problem_at(s)), opt) for opt in optimizers
    }
    return _sweep(
        "noise scale",
        setups,
        scales,
        x0,
        n_steps=n_steps,
        n_paths=n_paths,
        seed=seed,
        save_every=save_every,
        burn_in=burn_in,
        progress=progress,
    )


def weight_decay_sweep(
    optimizers: Sequence[AbstractOptimizer],
    prob: AbstractProblem,
    weight_decays: Sequence[float],
    x0,
    *,
    n_steps: int,
    n_paths: int,
    seed: int = 0,
    save_every: int = 10,
    burn_in: float = 0.5,
    progress: Callable[[str], None] | None = None,
) -> Sweep:
    """Stationary loss of RMSpropW/AdamW (optimizer, SDE, theory) as the weight decay `θ` grows.

    Each optimizer is rebuilt with `weight_decay=θ`; the theory is `(η/4) Σ hs/(h + θs)` (times
    `ρ₁/(ρ₁+θ)` for AdamW) on diagonal quadratics.
    """
    thetas = np.asarray(weight_decays, dtype=float)
    _check.positive_finite("weight_decays", thetas)
    for opt in optimizers:
        if not hasattr(opt, "weight_decay"):
            raise ValueError(f"optimizers: {type(opt).__name__} has no weight_decay to sweep.")

    def setup(opt, theta):
        return type(opt)(**{**vars(opt), "weight_decay": theta}), prob

    setups = {opt.name: functools.partial(setup, opt) for opt in optimizers}
    return _sweep(
        "weight decay",
        setups,
        thetas,
        x0,
        n_steps=n_steps,
        n_paths=n_paths,
        seed=seed,
        save_every=save_every,
        burn_in=burn_in,
        progress=progress,
    )
