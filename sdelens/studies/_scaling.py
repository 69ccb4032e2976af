"""Does a batch-size scaling rule keep training the same? (docs/math.md §6)"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from jaxtyping import PRNGKeyArray

from .. import _check
from .._compare import compare
from .._optimizers import AbstractOptimizer
from .._problems import AbstractProblem
from .._run import Run
from .._scaling import scale, scale_noise
from .._simulate import run_optimizer
from .._theory import empirical_stationary
from ._common import resolve_key

__all__ = ["ScalingCheck", "verify_scaling"]


def _time_to_threshold(run: Run, threshold: float, samples_per_step: float) -> float:
    """Samples (steps × batch, in units of the base batch) until the mean loss ≤ threshold."""
    below = np.nonzero(run.mean_loss <= threshold)[0]
    return float(run.steps[below[0]] * samples_per_step) if below.size else float("inf")


@dataclasses.dataclass(frozen=True, eq=False)
class ScalingCheck:
    """Base setting (batch `B`) against the scaled one (batch `κB`), per sample processed.

    Both runs save at the same numbers of samples, so their mean-loss curves line up.
    `stationary_loss`, `stationary_loss_se`: `{"base", "scaled"}`; `samples_to_threshold`:
    samples (in base batches) until the mean loss first reaches `threshold` (reported, at save
    resolution); `curve_gap`: the largest gap between the two mean-loss curves beyond 4 standard
    errors, relative to the base curve; `holds`: `curve_gap <= rtol` and the stationary losses
    agree within `4 SE + rtol`.
    """

    rule: str
    kappa: float
    base: AbstractOptimizer
    scaled: AbstractOptimizer
    base_run: Run
    scaled_run: Run
    threshold: float
    stationary_loss: dict
    stationary_loss_se: dict
    samples_to_threshold: dict
    rtol: float

    @property
    def stationary_rel_diff(self) -> float:
        a, b = self.stationary_loss["base"], self.stationary_loss["scaled"]
        return abs(b - a) / abs(a)

    @property
    def curve_gap(self) -> float:
        # the scaled run relabelled with the base run's steps: same samples processed
        on_base_clock = dataclasses.replace(
            self.scaled_run, steps=self.base_run.steps, ts=self.base_run.ts
        )
        c = compare(self.base_run, on_base_clock, labels=("base", "scaled"))
        excess = np.clip(np.abs(c.diff) - 4 * c.se_diff, 0.0, None)
        return float(np.nanmax(excess / np.abs(c.mean_loss_a)))

    @property
    def holds(self) -> bool:
        a, b = self.stationary_loss["base"], self.stationary_loss["scaled"]
        se = math.hypot(self.stationary_loss_se["base"], self.stationary_loss_se["scaled"])
        same_floor = abs(b - a) <= 4 * se + self.rtol * abs(a)
        return bool(same_floor and self.curve_gap <= self.rtol)

    def metrics(self) -> dict:
        return {
            "rule": self.rule,
            "kappa": self.kappa,
            "base": self.base.hyperparameters(),
            "scaled": self.scaled.hyperparameters(),
            "threshold": self.threshold,
            "stationary_loss": self.stationary_loss,
            "stationary_loss_se": self.stationary_loss_se,
            "samples_to_threshold": self.samples_to_threshold,
            "stationary_rel_diff": self.stationary_rel_diff,
            "curve_gap": self.curve_gap,
            "holds": self.holds,
        }


def verify_scaling(
    opt: AbstractOptimizer,
    prob: AbstractProblem,
    x0,
    kappa: float,
    rule: str | None = None,
    *,
    n_steps: int,
    n_paths: int,
    key: PRNGKeyArray | None = None,
    n_saves: int = 100,
    threshold: float | None = None,
    burn_in: float = 0.5,
    rtol: float = 0.1,
    seed: int | None = None,
) -> ScalingCheck:
    """Run `opt` on `prob` (batch `B`) and `scale(opt, κ, rule)` on `scale_noise(prob, 1/√κ)`
    (batch `κB`) over the same number of samples, and compare them per sample processed.

    The scaled run takes `n_steps/κ` steps (`κ` must make that a whole multiple of `n_saves`).
    `threshold` defaults to the geometric mean of the base run's initial mean loss and its
    stationary loss; `rtol` is the relative tolerance for the floor and the curves (on top of 4
    standard errors). Scaling rules are statements about the noise-dominated regime: start
    where `|∇f|` is small against the noise (SignSGD phase 3), or transients will differ.
    `key` is required (`seed=` is a deprecated alias).
    """
    key = resolve_key(key, seed)
    n_steps = _check.positive_int("n_steps", n_steps)
    n_saves = _check.positive_int("n_saves", n_saves)
    _check.positive_finite("kappa", kappa)
    scaled = scale(opt, kappa, rule)
    rule = rule or opt.default_scaling_rule()
    scaled_steps = n_steps / kappa
    if abs(scaled_steps - round(scaled_steps)) > 1e-9 or round(scaled_steps) % n_saves:
        raise ValueError(
            f"n_steps/kappa = {scaled_steps:g} must be a whole multiple of n_saves={n_saves}."
        )
    if n_steps % n_saves:
        raise ValueError(f"n_saves={n_saves} must divide n_steps={n_steps}.")
    scaled_prob = scale_noise(prob, 1 / math.sqrt(kappa))
    key_a, key_b = jax.random.split(key)
    base_run = run_optimizer(opt, prob, x0, n_steps, n_paths, key_a, n_steps // n_saves)
    small = int(round(scaled_steps))
    scaled_run = run_optimizer(scaled, scaled_prob, x0, small, n_paths, key_b, small // n_saves)
    est = {
        k: empirical_stationary(r, burn_in) for k, r in (("base", base_run), ("scaled", scaled_run))
    }
    floor = {k: e.expected_loss for k, e in est.items()}
    if threshold is None:
        threshold = math.sqrt(float(base_run.mean_loss[0]) * floor["base"])
    return ScalingCheck(
        rule=rule,
        kappa=float(kappa),
        base=opt,
        scaled=scaled,
        base_run=base_run,
        scaled_run=scaled_run,
        threshold=threshold,
        stationary_loss=floor,
        stationary_loss_se={k: e.expected_loss_se for k, e in est.items()},
        samples_to_threshold={
            "base": _time_to_threshold(base_run, threshold, 1.0),
            "scaled": _time_to_threshold(scaled_run, threshold, float(kappa)),
        },
        rtol=rtol,
    )
