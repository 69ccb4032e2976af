"""The weak order of an SDE against its optimizer as the learning rate shrinks."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np
from jaxtyping import PRNGKeyArray

from .. import _check
from .._compare import compare
from .._optimizers import AbstractOptimizer
from .._problems import AbstractProblem
from .._simulate import run_optimizer, simulate
from .._stats import loglog_slope
from ._common import resolve_key

__all__ = ["WeakOrder", "weak_order"]


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
    key: PRNGKeyArray | None = None,
    form: str = "default",
    seed: int | None = None,
    extrapolate: bool = False,
    coupled: bool = False,
) -> WeakOrder:
    """Weak error of the SDE against the optimizer as `η → 0` on `[0, horizon]`
    (docs/math.md §1).

    For each `η` in `lrs` (`ρ = (1-β)/η` kept fixed, `opt.with_lr`), runs `horizon/η` optimizer
    steps and integrates the SDE with `substeps` Euler steps per optimizer step (close to the
    exact SDE solution; with one step Euler would reproduce SGD exactly), and records the sup
    over the `n_saves` saves of `|E f(optimizer) - E f(SDE)|`. A weak order-1 SDE gives slope 1.
    Monte Carlo noise puts a floor of a few standard errors under each error: choose `n_paths`
    so that `se` is well below the smallest error (the result reports both).

    **Talay–Tubaro extrapolation** (`extrapolate=True`; Talay & Tubaro 1990, docs/math.md §12).
    Euler–Maruyama's weak error is `c dt + O(dt²)` with `dt = η/substeps`, which hides an SDE's
    own error once that is below `η/substeps` (the second-order form's `O(η²)`). With
    `extrapolate`, the SDE is integrated twice, with `substeps` and `2·substeps` steps per
    optimizer step, and its mean loss is taken as `2 E_{dt/2} - E_{dt}` at every save, which
    cancels the `c dt` term (error `O(dt²)`). The two integrations use independent keys, so the
    standard error of the extrapolated mean is `√(4 SE_{dt/2}² + SE_{dt}²)` (with the optimizer's
    SE added in quadrature for the difference). Common keys would not help: the Brownian
    increments of the two grids are drawn from counters, not refined from one path, so the
    runs are uncorrelated either way (measured: the same SE within 1%, docs/math.md §12). It
    costs three times the SDE integrations of `extrapolate=False`.

    **Coupled** (`coupled=True`, docs/math.md §13): at each learning rate the optimizer's noise
    is driven by the SDE's Brownian increments (`run_optimizer(..., coupled=True)` with the
    same key) and the error is estimated from the paired differences, whose standard error is
    far smaller: the same confidence for many fewer paths. The laws are those of uncoupled runs,
    so the errors estimate the same quantities. Not with `extrapolate` (the two Euler grids'
    increments are separate draws, so only one of them could be paired).

    The `i`-th learning rate uses `fold_in(key, i)`. Unlike the other functions that draw
    random numbers, `key` may be omitted here: it then defaults to `jax.random.key(0)`, so that
    the call `weak_order(opt, prob, lrs=..., horizon=..., x0=...)` is reproducible.
    """
    key = jax.random.key(0) if key is None and seed is None else resolve_key(key, seed)
    lrs = np.asarray(sorted(lrs), dtype=float)
    _check.positive_finite("lrs", lrs)
    _check.positive_finite("horizon", horizon)
    n_saves = _check.positive_int("n_saves", n_saves)
    if not isinstance(extrapolate, bool):
        raise ValueError(f"extrapolate={extrapolate!r} is invalid: True or False.")
    if not isinstance(coupled, bool):
        raise ValueError(f"coupled={coupled!r} is invalid: True or False.")
    if coupled and extrapolate:
        raise ValueError(
            "coupled=True is invalid with extrapolate=True: the two Euler grids draw separate "
            "increments, so only one of the extrapolated runs could be paired."
        )
    steps_at = []
    for lr in lrs:
        steps = horizon / lr
        if abs(steps - round(steps)) > 1e-6 * steps or round(steps) % n_saves:
            raise ValueError(
                f"horizon/lr = {steps:g} at lr={lr:g} must be a whole multiple of "
                f"n_saves={n_saves}."
            )
        steps_at.append(int(round(steps)))
    errors, ses = [], []
    pair = {}
    for i, (lr, steps) in enumerate(zip(lrs, steps_at, strict=True)):
        o = opt.with_lr(lr)
        key_a, key_b = jax.random.split(jax.random.fold_in(key, i))
        if coupled:
            key_a = key_b
            pair = {"coupled": True, "form": form, "substeps": substeps}
        a = run_optimizer(o, prob, x0, steps, n_paths, key_a, steps // n_saves, **pair)

        def sde_run(n, k, o=o, steps=steps):
            return simulate(o, prob, x0, steps, n_paths, k, steps // n_saves, form=form, substeps=n)

        c = compare(a, sde_run(substeps, key_b), paired=coupled)
        diff, se_diff = c.diff, c.se_diff
        if extrapolate:
            fine = compare(a, sde_run(2 * substeps, jax.random.fold_in(key_b, 1)))
            # 2 (E_fine - E_a) - (E_coarse - E_a) = (2 E_fine - E_coarse) - E_a
            diff = 2.0 * fine.diff - c.diff
            se_diff = np.sqrt(c.se_a**2 + 4.0 * fine.se_b**2 + c.se_b**2)
        worst = int(np.nanargmax(np.abs(diff)))
        errors.append(float(np.abs(diff[worst])))
        ses.append(float(se_diff[worst]))
    errors, ses = np.asarray(errors), np.asarray(ses)
    return WeakOrder(lrs=lrs, error=errors, se=ses, slope=loglog_slope(lrs, errors))
