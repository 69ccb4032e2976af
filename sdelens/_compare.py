"""Side-by-side statistics of two runs on the same save grid."""

from __future__ import annotations

import dataclasses
import statistics

import numpy as np

from ._run import Run
from ._stats import mean_se

__all__ = ["Comparison", "compare"]

Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclasses.dataclass(frozen=True, eq=False)
class Comparison:
    """Run `b` (usually the SDE) measured against run `a` (usually the optimizer).

    Attributes:
        labels: the names of `a` and `b` in `metrics()` (by default their kinds,
            `("optimizer", "sde")`).
        ts: `(S,)` common times.
        mean_loss_a, mean_loss_b, se_a, se_b: `(S,)` mean loss over paths and its Monte Carlo
            standard error.
        diff: `(S,)` `E f(b) - E f(a)`; `se_diff`: its standard error `√(se_a² + se_b²)`.
        max_abs_mean_loss_error: `max_t |diff|`.
        max_rel_mean_loss_error: `max_t |diff| / |E f(a)|` (the weak error, relative).
        max_z: `max_t |diff| / se_diff`: above ~4 the gap is not Monte Carlo noise. NaN
            where no standard error exists (fewer than two finite paths in a run); a statistic
            over no finite path is NaN throughout, never 0.
        final_mean_error, final_var_error: `(d,)` per-coordinate differences of mean and
            variance of `x` at the last save.
        diverged_a, diverged_b: divergence flags of the runs.
        mean_gap, mean_gap_se: the time-averaged gap `ḡ = mean_{t>0} diff` and a conservative
            standard error, the time average of `se_diff` (the saves of one path are correlated,
            and the standard error of an average is at most the average of the standard errors;
            docs/math.md §A.8).
        rel_mean_gap, rel_mean_gap_se: both divided by the time-averaged `|E f(a)|`.
        paired: whether `diff` and `se_diff` come from per-path differences (`paired=True`).
        se_independent: `(S,)` `√(se_a² + se_b²)`, the standard error the difference would have
            from independent runs; with `paired`, `(se_independent / se_diff)²` is how many
            times fewer paths the pairing needs for the same standard error.
        strong_error, strong_error_se: `(S,)` `E‖x_b - x_a‖` over paired paths and its standard
            error (`paired` only; NaN otherwise): the pathwise error of coupled runs.
        verdict: "agrees within Monte Carlo error" when the 95% interval `ḡ ± 1.96 SE` holds 0
            and no save's `|diff|/se_diff` exceeds the Bonferroni bound `Φ⁻¹(1 - 0.025/S)` of
            the `S` saves; else "gap of X% ± Y% beyond Monte Carlo error" at the most
            significant save (or on average), `Y` 1.96 standard errors; "no finite paths to
            compare" / "no standard error" where those are missing.
    """

    labels: tuple[str, str]
    ts: np.ndarray
    mean_loss_a: np.ndarray
    mean_loss_b: np.ndarray
    se_a: np.ndarray
    se_b: np.ndarray
    diff: np.ndarray
    se_diff: np.ndarray
    max_abs_mean_loss_error: float
    max_rel_mean_loss_error: float
    max_z: float
    final_mean_error: np.ndarray
    final_var_error: np.ndarray
    diverged_a: bool
    diverged_b: bool
    mean_gap: float
    mean_gap_se: float
    rel_mean_gap: float
    rel_mean_gap_se: float
    verdict: str
    paired: bool = False
    se_independent: np.ndarray | None = None
    strong_error: np.ndarray | None = None
    strong_error_se: np.ndarray | None = None

    def metrics(self) -> dict:
        """JSON-ready numbers (as written to summary.json), keyed by `labels`."""
        a, b = self.labels
        out = {
            "max_rel_mean_loss_error": self.max_rel_mean_loss_error,
            "max_abs_mean_loss_error": self.max_abs_mean_loss_error,
            "max_z": self.max_z,
            "final_mean_loss": {a: float(self.mean_loss_a[-1]), b: float(self.mean_loss_b[-1])},
            "final_mean_loss_se": {a: float(self.se_a[-1]), b: float(self.se_b[-1])},
            "diverged": {a: self.diverged_a, b: self.diverged_b},
        }
        out["mean_gap"] = self.mean_gap
        out["mean_gap_ci95"] = Z95 * self.mean_gap_se
        out["rel_mean_gap"] = self.rel_mean_gap
        out["rel_mean_gap_ci95"] = Z95 * self.rel_mean_gap_se
        out["verdict"] = self.verdict
        out["final_max_abs_mean_error"] = float(np.max(np.abs(self.final_mean_error)))
        out["final_max_abs_var_error"] = float(np.max(np.abs(self.final_var_error)))
        out["paired"] = self.paired
        if self.paired:
            later = slice(1, None) if self.ts.size > 1 else slice(None)
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = (self.se_independent[later] / self.se_diff[later]) ** 2
            out["paths_ratio_median"] = _nanmedian(ratio)
            out["max_strong_error"] = _nanmax(self.strong_error)
            out["final_strong_error"] = float(self.strong_error[-1])
            out["final_strong_error_se"] = float(self.strong_error_se[-1])
        return out


def compare(
    a: Run, b: Run, labels: tuple[str, str] | None = None, *, paired: bool = False
) -> Comparison:
    """Weak error of `b` against `a`: mean loss over time with Monte Carlo errors, and moments
    (docs/math.md §1).

    Both runs must share the save grid (same `steps` and `ts`). Paths that went non-finite are
    left out of the means; the divergence flags say whether that happened. Works the same on
    runs that kept every path and on runs that kept statistics only. `labels` name the runs in
    `metrics()`: by default their kinds (`"optimizer"`, `"sde"`), or `("a", "b")` when both
    runs are of one kind.

    `paired=True` (coupled runs, docs/math.md §13: path `i` of `a` and of `b` driven by the
    same numbers) estimates the weak error from the per-path differences
    `f(b_i) - f(a_i)` over the paths finite in both: `diff` is their mean and `se_diff` their
    standard error, far below `√(se_a² + se_b²)` when the pairs move together; and the strong
    error `E‖x_b - x_a‖`. Needs every path of both runs (`keep="paths"`) and equal path counts.
    Pairing independent runs is valid too (its standard error is then the unpaired one).
    """
    if not isinstance(a, Run) or not isinstance(b, Run):
        raise ValueError("compare(a, b) takes two sdelens Run objects.")
    if labels is None:
        labels = (a.kind, b.kind) if a.kind != b.kind else ("a", "b")
    if len(labels) != 2 or labels[0] == labels[1]:
        raise ValueError(f"labels={labels!r} is invalid: two different names are required.")
    if a.steps.shape != b.steps.shape or not np.array_equal(a.steps, b.steps):
        raise ValueError(
            f"the runs have different save grids (steps {a.steps[:3]}...{a.steps[-1]} vs "
            f"{b.steps[:3]}...{b.steps[-1]}): use the same n_steps and save_every."
        )
    if not np.allclose(a.ts, b.ts, rtol=1e-5):
        raise ValueError("the runs have different clocks (ts): use the same learning rate.")
    if not isinstance(paired, bool):
        raise ValueError(f"paired={paired!r} is invalid: True or False.")
    sa, sb = a.statistics(), b.statistics()
    mean_a, se_a, mean_b, se_b = sa.loss_mean, sa.loss_se, sb.loss_mean, sb.loss_se
    diff = mean_b - mean_a
    se_diff = se_independent = np.sqrt(se_a**2 + se_b**2)
    pairs = {}
    if paired:
        diff, se_diff, strong, strong_se = _paired(a, b)
        pairs = dict(paired=True, se_independent=se_independent)
        pairs.update(strong_error=strong, strong_error_se=strong_se)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(diff) / np.abs(mean_a)
        # no noise and no gap is agreement (0); a gap without noise is infinitely significant
        z = np.where(se_diff > 0, np.abs(diff) / se_diff, np.where(diff == 0, 0.0, np.inf))
        z = np.where(np.isfinite(se_diff), z, np.nan)
    gap = _time_averaged_gap(np.asarray(a.ts), diff, se_diff, z, mean_a)
    final_mean = sb.x_mean[-1] - sa.x_mean[-1]
    final_var = sb.x_var[-1] - sa.x_var[-1]
    return Comparison(
        labels=(str(labels[0]), str(labels[1])),
        ts=np.asarray(a.ts),
        mean_loss_a=mean_a,
        mean_loss_b=mean_b,
        se_a=se_a,
        se_b=se_b,
        diff=diff,
        se_diff=se_diff,
        max_abs_mean_loss_error=_nanmax(np.abs(diff)),
        max_rel_mean_loss_error=_nanmax(np.where(np.isfinite(rel), rel, np.nan)),
        max_z=_nanmax(z),
        final_mean_error=final_mean,
        final_var_error=final_var,
        diverged_a=a.diverged,
        diverged_b=b.diverged,
        **gap,
        **pairs,
    )


def _paired(a: Run, b: Run):
    """Mean and standard error of the per-path loss differences, and of `‖x_b - x_a‖`, over
    the paths finite in both runs at each save."""
    for run in (a, b):
        if run.loss is None or run.x is None:
            raise ValueError(
                f"paired=True compares paths one by one: the {run.kind} run kept statistics only "
                "(keep='stats'); run both with keep='paths'."
            )
    if a.loss.shape != b.loss.shape or a.x.shape != b.x.shape:
        raise ValueError(
            f"paired=True needs runs of the same paths: {a.x.shape} and {b.x.shape} (path i of "
            "one is paired with path i of the other)."
        )
    gap = np.asarray(b.loss, float) - np.asarray(a.loss, float)
    dist = np.linalg.norm(np.asarray(b.x, float) - np.asarray(a.x, float), axis=-1)
    both = np.isfinite(gap) & np.isfinite(dist)
    diff, se_diff, _ = mean_se(np.where(both, gap, np.nan), axis=0)
    strong, strong_se, _ = mean_se(np.where(both, dist, np.nan), axis=0)
    return diff, se_diff, strong, strong_se


def _nanmedian(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmedian(values)) if np.any(~np.isnan(values)) else float("nan")


def _time_averaged_gap(ts, diff, se_diff, z, mean_a) -> dict:
    """`ḡ`, its conservative SE, both relative to the mean `|E f(a)|`, and the verdict, over the
    saves after the start (where both runs sit at the same `x0`) with finite numbers.

    The verdict tests both the time average (95% interval) and every save at once: the largest
    `|diff|/se_diff` over `S` saves is compared with the Bonferroni bound `Φ⁻¹(1 - 0.025/S)`
    (3.7 for 200 saves), so a gap confined to the transient is found and a maximum of 3 SE over
    many correlated saves is not called a gap.
    """
    later = ts > ts[0] if ts.size > 1 else np.ones(ts.shape, dtype=bool)
    keep = later & np.isfinite(diff) & np.isfinite(mean_a)
    nan = float("nan")
    if not np.any(keep):
        verdict = "no finite paths to compare"
        return dict(
            mean_gap=nan, mean_gap_se=nan, rel_mean_gap=nan, rel_mean_gap_se=nan, verdict=verdict
        )
    d, s, z, f = diff[keep], se_diff[keep], z[keep], np.abs(mean_a[keep])
    gap = float(np.mean(d))
    se = float(np.mean(s)) if np.all(np.isfinite(s)) else nan
    scale = float(np.mean(f))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel, rel_se = gap / scale, se / scale
    bound = statistics.NormalDist().inv_cdf(1.0 - 0.025 / d.size)
    if np.isnan(se):
        verdict = "no standard error (fewer than two finite paths)"
    elif np.nanmax(z) > bound:
        k = int(np.nanargmax(z))
        verdict = (
            f"gap of {d[k] / f[k]:+.1%} ± {Z95 * s[k] / f[k]:.1%} beyond Monte Carlo error "
            f"at t = {ts[keep][k]:.4g}"
        )
    elif abs(gap) > Z95 * se:
        verdict = f"gap of {rel:+.1%} ± {Z95 * rel_se:.1%} beyond Monte Carlo error on average"
    else:
        verdict = "agrees within Monte Carlo error"
    return dict(
        mean_gap=gap,
        mean_gap_se=se,
        rel_mean_gap=float(rel),
        rel_mean_gap_se=float(rel_se),
        verdict=verdict,
    )


def _nanmax(values) -> float:
    """The largest non-NaN value; NaN (not a warning) when there is none."""
    values = np.asarray(values, dtype=float)
    return float(np.nanmax(values)) if np.any(~np.isnan(values)) else float("nan")
