"""The stationary loss as one setting varies: noise level, weight decay."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import numpy as np
from jaxtyping import PRNGKeyArray

from .. import _check, _progress
from .._optimizers import AbstractOptimizer
from .._problems import AbstractProblem
from .._sde import sde_for
from .._stats import loglog_slope
from .._theory import empirical_stationary
from ._common import Progress, resolve_key, say
from ._vs_sde import optimizer_vs_sde

__all__ = [
    "Sweep",
    "noise_sweep",
    "weight_decay_sweep",
    "StationarySweeps",
    "stationary_sweeps",
]


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
        """The log-log slope of each curve; NaN for a curve with a diverged or non-positive
        point (a slope without its data is no number, and is not left out either)."""
        return {
            name: {
                k: loglog_slope(self.values, v) if np.all(np.isfinite(v) & (v > 0)) else np.nan
                for k, v in d.items()
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

    def arrays(self) -> dict[str, np.ndarray]:
        """The curves as named arrays (`"<name>/<kind>/loss"`, `.../se`, `"values"`), e.g. for
        `sdelens.save(..., arrays=)`."""
        out = {"values": self.values}
        for name, by_kind in self.loss.items():
            for kind, values in by_kind.items():
                out[f"{name}/{kind}/loss"] = values
                out[f"{name}/{kind}/se"] = self.se[name][kind]
        return out


def _sweep_values(name: str, values) -> np.ndarray:
    """Positive, finite, distinct values of a swept parameter."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"{name}={values.tolist()} is invalid: a flat list of numbers.")
    _check.positive_finite(name, values)
    if len(np.unique(values)) < len(values):
        raise ValueError(f"{name}={values.tolist()} is invalid: the values must be distinct.")
    return values


def _check_plan(setups, values, *, n_steps, n_paths, save_every) -> None:
    """Sizes and every (optimizer, problem) pair of a sweep, with its SDE: a bad setting fails
    now, not after the sweep's first runs."""
    _check.save_grid(n_steps, save_every)
    _check.positive_int("n_paths", n_paths)
    for setup in setups.values():
        for value in values:
            opt, prob = setup(float(value))
            sde_for(opt, prob)


def _decay_setups(optimizers, prob) -> dict:
    """Setups of a weight-decay sweep: each optimizer rebuilt with `weight_decay=θ`, on `prob`."""

    def setup(opt, theta):
        return opt.replace(weight_decay=theta), prob

    return {opt.name: functools.partial(setup, opt) for opt in optimizers}


def _sweep(
    parameter: str,
    setups: dict[str, Callable[[float], tuple[AbstractOptimizer, AbstractProblem]]],
    values,
    x0,
    *,
    n_steps: int,
    n_paths: int,
    key: PRNGKeyArray,
    save_every: int,
    burn_in: float,
    progress: Progress,
) -> Sweep:
    """For each named setup and value `v`, `setup(v) = (opt, prob)` is run to stationarity, the
    `i`-th value with key `fold_in(key, i)`. Everything is checked before the first run."""
    values = np.asarray(values, dtype=float)
    _check_plan(setups, values, n_steps=n_steps, n_paths=n_paths, save_every=save_every)
    _check.in_interval("burn_in", burn_in, 0.0, 1.0)
    loss, se, diverged = {}, {}, {}
    with _progress.task(f"{parameter} sweep", len(setups) * len(values)) as points:
        for name, setup in setups.items():
            est = {"optimizer": [], "sde": []}
            err = {"optimizer": [], "sde": []}
            theory, bad = [], {"optimizer": False, "sde": False}
            for i, value in enumerate(values):
                say(progress, f"{name}: {parameter} {value:g} ({i + 1}/{len(values)})")
                opt, prob = setup(float(value))
                both = optimizer_vs_sde(
                    opt,
                    prob,
                    x0,
                    n_steps=n_steps,
                    n_paths=n_paths,
                    key=jax.random.fold_in(key, i),
                    save_every=save_every,
                )
                for kind, r in (("optimizer", both.ref), ("sde", both.run)):
                    bad[kind] |= r.diverged
                    st = empirical_stationary(r, burn_in=burn_in) if not r.diverged else None
                    est[kind].append(np.nan if st is None else st.expected_loss)
                    err[kind].append(np.nan if st is None else st.expected_loss_se)
                theory.append(np.nan if both.theory is None else both.theory.expected_loss)
                points.advance()
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
    key: PRNGKeyArray | None = None,
    save_every: int = 10,
    burn_in: float = 0.5,
    progress: Progress = None,
    seed: int | None = None,
) -> Sweep:
    """For each optimizer and noise scale `s`, the stationary loss of optimizer, SDE and theory
    (docs/math.md §5: SGD's floor grows like `s²`, SignSGD's like `s`).

    `problem_at(s)` builds the problem at noise scale `s` (same shapes for every `s`, so each
    optimizer compiles once). Start `x0` at the minimum to skip the transient. `key` is
    required (`seed=` is a deprecated alias).
    """
    key = resolve_key(key, seed)
    scales = _sweep_values("scales", scales)
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
        key=key,
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
    key: PRNGKeyArray | None = None,
    save_every: int = 10,
    burn_in: float = 0.5,
    progress: Progress = None,
    seed: int | None = None,
) -> Sweep:
    """Stationary loss of RMSpropW/AdamW (optimizer, SDE, theory) as the weight decay `θ` grows.

    Each optimizer is rebuilt with `weight_decay=θ` (`opt.replace`); the theory is
    `(η/4) Σ hs/(h + θs)` (times `ρ₁/(ρ₁+θ)` for AdamW) on diagonal quadratics
    (docs/math.md §5). `key` is required (`seed=` is a deprecated alias).
    """
    key = resolve_key(key, seed)
    thetas = _sweep_values("weight_decays", weight_decays)
    return _sweep(
        "weight decay",
        _decay_setups(optimizers, prob),
        thetas,
        x0,
        n_steps=n_steps,
        n_paths=n_paths,
        key=key,
        save_every=save_every,
        burn_in=burn_in,
        progress=progress,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class StationarySweeps:
    """What `sdelens stationary` measures: the stationary loss against the noise level
    (`noise`), and against the weight decay (`weight_decay`, None unless asked for)."""

    noise: Sweep
    weight_decay: Sweep | None = None

    @property
    def sweeps(self) -> dict[str, Sweep]:
        """The sweeps by label: `"noise_scaling"` and `"weight_decay"`."""
        out = {"noise_scaling": self.noise}
        if self.weight_decay is not None:
            out["weight_decay"] = self.weight_decay
        return out

    def metrics(self) -> dict:
        return {label: sweep.metrics() for label, sweep in self.sweeps.items()}

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"{lab}/{k}": v for lab, s in self.sweeps.items() for k, v in s.arrays().items()}


def stationary_sweeps(
    optimizers: Sequence[AbstractOptimizer],
    problem_at: Callable[[float], AbstractProblem],
    scales: Sequence[float],
    x0,
    *,
    weight_decays: Sequence[float] = (),
    n_steps: int,
    n_paths: int,
    key: PRNGKeyArray,
    save_every: int = 10,
    burn_in: float = 0.5,
    progress: Progress = None,
) -> StationarySweeps:
    """`noise_sweep` over `scales` (at least two, for a slope) and, if `weight_decays` are
    given, `weight_decay_sweep` of the decayed optimizers (RMSpropW, AdamW) at the largest
    noise scale. Every optimizer and setting is validated before anything runs."""
    scales = list(_sweep_values("scales", scales))
    if len(scales) < 2:
        raise ValueError(f"scales={scales} is invalid: a slope needs at least 2 noise levels.")
    if not optimizers:
        raise ValueError("optimizers=[] is invalid: give at least one optimizer.")
    decayed = [opt for opt in optimizers if opt.weight_decay > 0]
    weight_decays = list(weight_decays)
    if weight_decays:
        if not decayed:
            raise ValueError(
                f"weight_decays={weight_decays} is invalid: it needs rmspropw or adamw among "
                "the optimizers."
            )
        # the weight-decay sweep runs second: its settings fail now, not after the noise sweep
        _check_plan(
            _decay_setups(decayed, problem_at(scales[-1])),
            _sweep_values("weight_decays", weight_decays),
            n_steps=n_steps,
            n_paths=n_paths,
            save_every=save_every,
        )
    sizes = dict(n_steps=n_steps, n_paths=n_paths, save_every=save_every, burn_in=burn_in)
    noise = noise_sweep(optimizers, problem_at, scales, x0, key=key, progress=progress, **sizes)
    decay = None
    if weight_decays:
        decay = weight_decay_sweep(
            decayed, problem_at(scales[-1]), weight_decays, x0, key=key, progress=progress, **sizes
        )
    return StationarySweeps(noise, decay)
