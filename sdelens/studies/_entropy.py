"""Entropy-SGD against its baselines: equal compute, Hessian spectra at the points reached,
sensitivity grids, and local entropy against smoothing (the reviews' questions)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np
from jaxtyping import PRNGKeyArray

from .. import _progress, flatness
from .._optimizers import AbstractOptimizer, EntropySGD
from .._problems import AbstractProblem
from .._simulate import check_key
from ._common import Progress, say
from ._compute_fair import ComputeFair, compute_fair
from ._preference import Preference, minimum_preference
from ._sensitivity import Sensitivity, grid_settings, sensitivity
from ._spectrum import HessianSpectrum, hessian_spectrum

__all__ = ["EntropyStudy", "entropy_study"]

Grid = tuple[tuple[str, Sequence], tuple[str, Sequence]]

PREFERENCE_TEMPERATURES = (0.002, 0.01, 0.05, 0.1, 0.3)
PREFERENCE_GAMMAS = (0.3, 1.0, 3.0)


@dataclasses.dataclass(frozen=True, eq=False)
class EntropyStudy:
    """What `entropy_study` measured: `fair` (equal gradient budget), `spectra` (name →
    Hessian spectrum at run 0's final point), `grids` (sensitivity grids of Entropy-SGD) and
    `preference` (local entropy vs smoothing on the two-well landscape), each None or empty
    when not asked for."""

    entropy_sgd: EntropySGD
    fair: ComputeFair
    spectra: dict[str, HessianSpectrum]
    grids: list[Sensitivity]
    preference: Preference | None

    def metrics(self) -> dict:
        out = {"compute_fair": self.fair.metrics()}
        if self.spectra:
            out["hessian"] = {name: s.metrics() for name, s in self.spectra.items()}
        if self.grids:
            out["sensitivity"] = [grid.metrics() for grid in self.grids]
        if self.preference is not None:
            out["preference"] = self.preference.metrics()
        return out


def entropy_study(
    problem: AbstractProblem,
    entropy_sgd: EntropySGD,
    baselines: Sequence[AbstractOptimizer],
    *,
    grad_budget: int,
    key: PRNGKeyArray,
    n_runs: int = 4,
    n_saves: int = 10,
    grids: Sequence[Grid] = (),
    spectrum: bool = True,
    preference: bool = True,
    progress: Progress = None,
) -> EntropyStudy:
    """Entropy-SGD and `baselines` at equal gradient evaluations (`compute_fair`), then
    optionally the Hessian spectrum at each optimizer's final point of run 0
    (`hessian_spectrum`), sensitivity grids `((x_name, x_values), (y_name, y_values))` of
    Entropy-SGD with `n_runs // 2` runs each (`sensitivity`), and which of two minima local
    entropy and plain smoothing prefer (`minimum_preference` on `flatness.two_minima()`;
    docs/math.md §7). `key` (required) drives every run and probe."""
    key = check_key(key)
    if not isinstance(entropy_sgd, EntropySGD):
        raise ValueError(f"entropy_sgd={entropy_sgd!r} is invalid: an sl.EntropySGD is required.")
    for (x_name, x_values), (y_name, y_values) in grids:
        grid_settings(entropy_sgd, x_name, x_values, y_name, y_values)  # bad grids fail first
    optimizers = [*baselines, entropy_sgd]
    say(progress, f"{len(optimizers)} optimizers x {n_runs} runs, {grad_budget} gradients each")
    fair = compute_fair(
        problem, optimizers, grad_budget=grad_budget, n_runs=n_runs, n_saves=n_saves, key=key
    )
    spectra = {}
    if spectrum:
        say(progress, "Hessian spectra (Lanczos + SLQ) at each optimizer's final point of run 0")
        finite = {n: r for n, r in fair.runs.items() if np.all(np.isfinite(r.x[0, -1]))}
        with _progress.task("Hessian spectra", len(finite)) as done:
            for name, run in finite.items():
                spectra[name] = hessian_spectrum(problem, run.x[0, -1], key)
                done.advance()
    results = []
    for (x_name, x_values), (y_name, y_values) in grids:
        say(progress, f"sensitivity grid {x_name} x {y_name} ({len(x_values) * len(y_values)})")
        results.append(
            sensitivity(
                problem,
                entropy_sgd,
                x_name,
                x_values,
                y_name,
                y_values,
                grad_budget=grad_budget,
                n_runs=max(n_runs // 2, 1),
                key=jax.random.fold_in(key, len(results) + 1),
            )
        )
    pref = None
    if preference:
        loss, narrow, wide = flatness.two_minima()
        pref = minimum_preference(loss, narrow, wide, PREFERENCE_TEMPERATURES, PREFERENCE_GAMMAS)
    return EntropyStudy(entropy_sgd, fair, spectra, results, pref)
