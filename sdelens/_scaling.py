"""Batch-size scaling rules (MATH.md §6) and their verification; the weak order of an SDE."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import numpy as np

from . import _check
from ._compare import compare
from ._experiments import loglog_slope
from ._noise import GaussianNoise, StudentTNoise
from ._optimizers import SGD, AbstractOptimizer, Adam, RMSprop, SignSGD
from ._problems import AbstractProblem
from ._run import Run
from ._simulate import run_optimizer, simulate
from ._theory import empirical_stationary

__all__ = [
    "RULES",
    "scale",
    "scale_noise",
    "ScalingCheck",
    "verify_scaling",
    "WeakOrder",
    "weak_order",
    "with_lr",
]

RULES = ("linear", "sqrt", "malladi", "compagnoni")
_RULES_FOR = {
    SGD: ("linear",),
    SignSGD: ("sqrt",),
    RMSprop: ("malladi", "compagnoni"),
    Adam: ("malladi", "compagnoni"),
}


def _scaled_decays(opt, kappa: float) -> dict:
    """`1 - β → κ (1 - β)`: the averages keep their window measured in samples."""
    names = ("beta",) if isinstance(opt, RMSprop) else ("beta1", "beta2")
    out = {}
    for name in names:
        beta = 1.0 - kappa * (1.0 - getattr(opt, name))
        if not 0.0 <= beta < 1.0:
            raise ValueError(
                f"kappa={kappa} makes {name} = 1 - kappa (1 - {name}) = {beta:.4g}, outside "
                "[0, 1): the rule cannot scale this optimizer that far."
            )
        out[name] = beta
    return out


def scale(opt: AbstractOptimizer, kappa: float, rule: str | None = None) -> AbstractOptimizer:
    """Hyperparameters for batch size `κ B`, given `opt` tuned for batch `B` (MATH.md §6).

    The gradient noise then shrinks as `s → s/√κ` (`scale_noise`). Rules:
    - `"linear"` (SGD): `η → κ η`.
    - `"sqrt"` (SignSGD): `η → √κ η` (keeps phase-3 dynamics and the floor).
    - `"malladi"` (RMSprop, Adam; Malladi et al. 2022): `η → √κ η`, `1 - βᵢ → κ (1 - βᵢ)`,
      `ε → ε/√κ`. Weight decay unchanged.
    - `"compagnoni"` (RMSpropW, AdamW; Compagnoni et al. 2025, Lemma 3.13): as `"malladi"` and
      `θ → √κ θ`, which keeps the floor `(η/4) Σ hs/(h + θs)` and the contraction rate per
      sample. (The `β` scaling keeps AdamW's factor `ρ₁/(ρ₁ + θ)`.)

    `rule=None` picks the optimizer's rule (`compagnoni` for decayed RMSprop/Adam). Any rule can
    be applied to any optimizer it is defined for, so that a wrong rule can be shown failing:
    `linear` and `sqrt` rescale only `η`, for every optimizer.
    """
    _check.positive_finite("kappa", kappa)
    kappa = float(kappa)
    rule = _default_rule(opt) if rule is None else rule
    _check.choice("rule", rule, RULES)
    root = math.sqrt(kappa)
    if rule == "linear":
        return eqx.tree_at(lambda o: o.lr, opt, opt.lr * kappa)
    if rule == "sqrt":
        return eqx.tree_at(lambda o: o.lr, opt, opt.lr * root)
    if not isinstance(opt, (RMSprop, Adam)):
        raise ValueError(f"rule={rule!r} is for RMSprop and Adam, not {type(opt).__name__}.")
    changes = {"lr": opt.lr * root, "eps": opt.eps / root, **_scaled_decays(opt, kappa)}
    if rule == "compagnoni":
        changes["weight_decay"] = opt.weight_decay * root
    return type(opt)(**{**vars(opt), **changes})


def scale_noise(prob: AbstractProblem, factor: float) -> AbstractProblem:
    """The same problem with its gradient noise multiplied by `factor` (`1/√κ` for batch `κB`)."""
    _check.positive_finite("factor", factor)
    if not isinstance(prob.noise, (GaussianNoise, StudentTNoise)):
        raise ValueError(
            f"noise={type(prob.noise).__name__} cannot be rescaled: GaussianNoise or "
            "StudentTNoise is required."
        )
    return eqx.tree_at(lambda p: p.noise.scale, prob, prob.noise.scale * factor)


def _on_base_clock(scaled: Run, base: Run) -> Run:
    """The scaled run relabelled with the base run's steps (same samples processed)."""
    return dataclasses.replace(scaled, steps=base.steps, ts=base.ts)


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
        c = compare(self.base_run, _on_base_clock(self.scaled_run, self.base_run))
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
    seed: int = 0,
    n_saves: int = 100,
    threshold: float | None = None,
    burn_in: float = 0.5,
    rtol: float = 0.1,
) -> ScalingCheck:
    """Run `opt` on `prob` (batch `B`) and `scale(opt, κ, rule)` on `scale_noise(prob, 1/√κ)`
    (batch `κB`) over the same number of samples, and compare them per sample processed.

    The scaled run takes `n_steps/κ` steps (`κ` must make that a whole multiple of `n_saves`).
    `threshold` defaults to the geometric mean of the base run's initial mean loss and its
    stationary loss; `rtol` is the relative tolerance for the floor and the curves (on top of 4
    standard errors). Scaling rules are statements about the noise-dominated regime: start
    where `|∇f|` is small against the noise (SignSGD phase 3), or transients will differ.
    """
    n_steps = _check.positive_int("n_steps", n_steps)
    n_saves = _check.positive_int("n_saves", n_saves)
    _check.positive_finite("kappa", kappa)
    scaled = scale(opt, kappa, rule)
    rule = rule or _default_rule(opt)
    scaled_steps = n_steps / kappa
    if abs(scaled_steps - round(scaled_steps)) > 1e-9 or round(scaled_steps) % n_saves:
        raise ValueError(
            f"n_steps/kappa = {scaled_steps:g} must be a whole multiple of n_saves={n_saves}."
        )
    if n_steps % n_saves:
        raise ValueError(f"n_saves={n_saves} must divide n_steps={n_steps}.")
    key_a, key_b = jax.random.split(jax.random.key(seed))
    base_run = run_optimizer(opt, prob, x0, n_steps, n_paths, key_a, n_steps // n_saves)
    small = int(round(scaled_steps))
    scaled_run = run_optimizer(
        scaled, scale_noise(prob, 1 / math.sqrt(kappa)), x0, small, n_paths, key_b, small // n_saves
    )
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


def _default_rule(opt) -> str:
    """The optimizer's own rule: `compagnoni` for decayed RMSprop/Adam."""
    rules = _RULES_FOR.get(type(opt))
    if rules is None:
        raise ValueError(f"opt={type(opt).__name__} has no scaling rule in sdelens.")
    return rules[-1] if getattr(opt, "weight_decay", 0.0) > 0 else rules[0]


def with_lr(opt: AbstractOptimizer, lr: float) -> AbstractOptimizer:
    """`opt` at learning rate `lr` with every `ρ = (1 - β)/η` kept fixed (MATH.md §1), the
    family along which an SDE approximates its optimizer as `η → 0`."""
    _check.positive_finite("lr", lr)
    changes = {"lr": float(lr)}
    for name in ("beta", "beta1", "beta2"):
        if hasattr(opt, name):
            rho = (1.0 - getattr(opt, name)) / opt.lr
            changes[name] = 1.0 - rho * lr
            _check.in_interval(f"{name} at lr={lr}", changes[name], 0.0, 1.0)
    return type(opt)(**{**vars(opt), **changes})


@dataclasses.dataclass(frozen=True, eq=False)
class WeakOrder:
    """`error[i] = sup_t |E f(x_k) - E f(X_{kη})|` at `lrs[i]`, with its standard error `se[i]`
    (that of the difference at the sup), and the fitted log-log `slope` (weak order, ≈ 1)."""

    lrs: np.ndarray
    error: np.ndarray
    se: np.ndarray
    slope: float

    def metrics(self) -> dict:
        return {
            "lrs": self.lrs.tolist(),
            "error": self.error.tolist(),
            "se": self.se.tolist(),
            "slope": self.slope,
        }


def weak_order(
    opt: AbstractOptimizer,
    prob: AbstractProblem,
    lrs: Sequence[float],
    horizon: float,
    x0,
    *,
    n_paths: int = 20_000,
    n_saves: int = 20,
    substeps: int = 8,
    seed: int = 0,
    form: str = "default",
) -> WeakOrder:
    """Weak error of the SDE against the optimizer as `η → 0` on `[0, horizon]`.

    For each `η` in `lrs` (`ρ = (1-β)/η` kept fixed, `with_lr`), runs `horizon/η` optimizer
    steps and integrates the SDE with `substeps` Euler steps per optimizer step (close to the
    exact SDE solution; with one step Euler would reproduce SGD exactly), and records the sup
    over the `n_saves` saves of `|E f(optimizer) - E f(SDE)|`. A weak order-1 SDE gives slope 1.
    Monte Carlo noise puts a floor of a few standard errors under each error: choose `n_paths`
    so that `se` is well below the smallest error (the result reports both).
    """
    lrs = np.asarray(sorted(lrs), dtype=float)
    _check.positive_finite("lrs", lrs)
    _check.positive_finite("horizon", horizon)
    n_saves = _check.positive_int("n_saves", n_saves)
    errors, ses = [], []
    for i, lr in enumerate(lrs):
        steps = horizon / lr
        if abs(steps - round(steps)) > 1e-6 * steps or round(steps) % n_saves:
            raise ValueError(
                f"horizon/lr = {steps:g} at lr={lr:g} must be a whole multiple of "
                f"n_saves={n_saves}."
            )
        steps = int(round(steps))
        o = with_lr(opt, lr)
        key_a, key_b = jax.random.split(jax.random.key(seed + i))
        a = run_optimizer(o, prob, x0, steps, n_paths, key_a, steps // n_saves)
        b = simulate(
            o, prob, x0, steps, n_paths, key_b, steps // n_saves, form=form, substeps=substeps
        )
        c = compare(a, b)
        worst = int(np.nanargmax(np.abs(c.diff)))
        errors.append(float(np.abs(c.diff[worst])))
        ses.append(float(c.se_diff[worst]))
    errors, ses = np.asarray(errors), np.asarray(ses)
    return WeakOrder(lrs=lrs, error=errors, se=ses, slope=loglog_slope(lrs, errors))
