"""Batch-size scaling rules as hyperparameter transforms (docs/math.md §6), and the `η → 0`
family of an optimizer."""

from __future__ import annotations

import math

from . import _check
from ._optimizers import AbstractOptimizer
from ._problems import AbstractProblem

__all__ = ["RULES", "scale", "scale_noise", "with_lr"]

RULES = ("linear", "sqrt", "malladi", "compagnoni")


def _scaled_decays(opt: AbstractOptimizer, kappa: float) -> dict:
    """`1 - β → κ (1 - β)`: the averages keep their window measured in samples."""
    out = {}
    for name in opt.decay_names:
        beta = 1.0 - kappa * (1.0 - getattr(opt, name))
        if not 0.0 <= beta < 1.0:
            raise ValueError(
                f"kappa={kappa} makes {name} = 1 - kappa (1 - {name}) = {beta:.4g}, outside "
                "[0, 1): the rule cannot scale this optimizer that far."
            )
        out[name] = beta
    return out


def scale(opt: AbstractOptimizer, kappa: float, rule: str | None = None) -> AbstractOptimizer:
    """Hyperparameters for batch size `κ B`, given `opt` tuned for batch `B` (docs/math.md §6).

    The gradient noise then shrinks as `s → s/√κ` (`scale_noise`). Rules:

    - `"linear"` (SGD): `η → κ η`.
    - `"sqrt"` (SignSGD): `η → √κ η` (keeps phase-3 dynamics and the floor).
    - `"malladi"` (RMSprop, Adam; Malladi et al. 2022): `η → √κ η`, `1 - βᵢ → κ (1 - βᵢ)`,
      `ε → ε/√κ`. Weight decay unchanged.
    - `"compagnoni"` (RMSpropW, AdamW; Compagnoni et al. 2025, Lemma 3.13): as `"malladi"` and
      `θ → √κ θ`, which keeps the floor `(η/4) Σ hs/(h + θs)` and the contraction rate per
      sample. (The `β` scaling keeps AdamW's factor `ρ₁/(ρ₁ + θ)`.)

    `rule=None` picks the optimizer's own rule (`opt.default_scaling_rule()`: `compagnoni` for
    decayed RMSprop/Adam). `linear` and `sqrt` rescale only `η` and apply to every optimizer, so
    that a wrong rule can be shown failing; `malladi` and `compagnoni` to the optimizers that
    declare them (`opt.scaling_rules`).
    """
    _check.positive_finite("kappa", kappa)
    kappa = float(kappa)
    rule = opt.default_scaling_rule() if rule is None else rule
    _check.choice("rule", rule, RULES)
    root = math.sqrt(kappa)
    if rule == "linear":
        return opt.replace(lr=opt.lr * kappa)
    if rule == "sqrt":
        return opt.replace(lr=opt.lr * root)
    if rule not in opt.scaling_rules:
        raise ValueError(f"rule={rule!r} is for RMSprop and Adam, not {type(opt).__name__}.")
    changes = {"lr": opt.lr * root, "eps": opt.eps / root, **_scaled_decays(opt, kappa)}
    if rule == "compagnoni":
        changes["weight_decay"] = opt.weight_decay * root
    return opt.replace(**changes)


def scale_noise(prob: AbstractProblem, factor: float) -> AbstractProblem:
    """The same problem with its gradient noise multiplied by `factor` (`1/√κ` for batch `κB`;
    minibatch noise gets the batch size `B/factor²`)."""
    _check.positive_finite("factor", factor)
    return prob.with_noise(prob.noise.scaled(float(factor)))


def with_lr(opt: AbstractOptimizer, lr: float) -> AbstractOptimizer:
    """`opt` at learning rate `lr` with every `ρ = (1 - β)/η` kept fixed (docs/math.md §1), the
    family along which an SDE approximates its optimizer as `η → 0` (`opt.with_lr`)."""
    return opt.with_lr(lr)
