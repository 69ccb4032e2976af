"""Figures from result objects: optimizer vs SDE over time, stationary distributions, noise
scaling, SignSGD phases, scaling rules, weak order, Entropy-SGD's studies.

Every function returns a matplotlib `Figure` (made with `pyplot.subplots`, so notebooks show it)
and never calls `show()`; `figures(result)` gives the standard figures of any study result by
name (what the command line saves). Non-finite values are never drawn as if they were data: a
diverged run is marked where it diverged. Results never draw themselves: this module reads them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Ellipse, Patch
from matplotlib.ticker import MaxNLocator, NullFormatter

from . import flatness, studies
from ._compare import compare
from ._noise import sign_phase
from ._run import Run
from ._stats import loglog_slope, mean_se, window_mask
from ._theory import empirical_stationary

__all__ = [
    "figures",
    "trajectories",
    "curves",
    "stationary",
    "noise_scaling",
    "sweep",
    "phases",
    "scaling",
    "weak_order",
    "state_covariance",
    "covariance_ellipse",
    "compute_fair",
    "entropy_sgd_stability",
    "inner_loops",
    "sensitivity",
    "hessian_spectra",
    "preference",
    "landscape",
    "variational_preference",
    "variational_widths",
]

_PHASE_COLOURS = ("#d62728", "#ff7f0e", "#2ca02c")
_KIND_LABELS = {"optimizer": "optimizer", "sde": "SDE"}  # Run.kind as a legend says it
# Every legend passes `loc`: when matplotlib picks "best" itself and the search takes over a
# second (much data, a loaded machine) it warns, and no warning may reach the user.


def _new_axes(ax, **kwargs):
    if ax is not None:
        return ax.figure, ax
    return plt.subplots(**kwargs)


def _band(ax, ts, mean, se, label, colour):
    finite = np.isfinite(mean)
    ax.plot(ts[finite], mean[finite], color=colour, label=label)
    lo, hi = mean - 2 * se, mean + 2 * se
    ax.fill_between(ts[finite], lo[finite], hi[finite], color=colour, alpha=0.25, lw=0)


def _plus_minus(value: float, error: float) -> str:
    """`0.907 ± 0.002`; a value without data is `n/a`, an error without one is said."""
    if not np.isfinite(value):
        return "n/a"
    return f"{value:.4g} ± {error:.2g}" if np.isfinite(error) else f"{value:.4g} (no SE)"


def _mark_divergence(ax, run: Run, label: str, colour):
    if run.diverged:
        t_bad = float(run.ts[np.searchsorted(run.steps, run.first_bad_step)])
        ax.axvline(
            t_bad,
            color="red",
            ls="--",
            lw=1.2,
            label=f"{label} diverged at step {run.first_bad_step}",
        )


def curves(ts, values: dict, *, ylabel: str, ax=None, xlabel: str = "t = k·η"):
    """Mean over paths of per-path curves (`values[label]`: `(n_paths, S)`) with ±2 standard
    error bands, e.g. the test accuracy of optimizer and SDE runs (`sdelens.evaluate`).
    Non-finite paths are left out of the mean; the title gives each final mean ± 2 SE, so a
    band too thin to see is still stated."""
    fig, ax = _new_axes(ax, figsize=(6.4, 4.0))
    ts = np.asarray(ts)
    finals = []
    for i, (label, arr) in enumerate(values.items()):
        mean, se, _ = mean_se(arr, axis=0)
        _band(ax, ts, mean, np.nan_to_num(se), label, f"C{i}")
        finals.append(f"{label} {_plus_minus(mean[-1], 2 * se[-1])}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"final {ylabel} (± 2 SE): " + ", ".join(finals), fontsize=9)
    handles = ax.get_legend_handles_labels()[0]
    ax.legend(loc="best", handles=[*handles, Patch(color="gray", alpha=0.25, label="± 2 SE band")])
    fig.tight_layout()
    return fig


def trajectories(
    ref: Run, run: Run | None = None, *, ax=None, log: bool = True, labels=("optimizer", "SDE")
):
    """Mean loss over time `t = k η` of `ref` (and `run`), with ±2 standard-error bands.

    Means use the paths that stayed finite; a diverged run gets a red dashed line at the first
    saved step where it was non-finite.
    """
    fig, ax = _new_axes(ax, figsize=(6.4, 4.0))
    colours = ("C0", "C1")
    if run is None:
        stats = ref.statistics()
        mean, se = stats.loss_mean, stats.loss_se
        _band(ax, ref.ts, mean, se, labels[0], colours[0])
        _mark_divergence(ax, ref, labels[0], colours[0])
    else:
        c = compare(ref, run)
        _band(ax, c.ts, c.mean_loss_a, c.se_a, labels[0], colours[0])
        _band(ax, c.ts, c.mean_loss_b, c.se_b, labels[1], colours[1])
        _mark_divergence(ax, ref, labels[0], colours[0])
        _mark_divergence(ax, run, labels[1], colours[1])
        gap = c.verdict
        if not np.isnan(c.max_rel_mean_loss_error):
            se = "no standard error" if np.isnan(c.max_z) else f"{c.max_z:.1f} SE"
            gap += f"\nmax relative gap {c.max_rel_mean_loss_error:.1%} ({se})"
        ax.set_title(f"{ref.config.get('optimizer', {}).get('name', '')}: {gap}", fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("t = k·η")
    ax.set_ylabel("E f(x)")
    ax.legend(loc="best")
    return fig


def covariance_ellipse(ax, mean, cov, n_std: float = 1.0, **kwargs):
    """Draw the `n_std`-sigma ellipse of a 2×2 covariance on `ax`; returns the patch."""
    cov = np.asarray(cov, dtype=float)
    if cov.shape != (2, 2):
        raise ValueError(f"cov has shape {cov.shape}: a 2x2 covariance is required.")
    eigval, eigvec = np.linalg.eigh(cov)
    eigval = np.clip(eigval, 0.0, None)
    angle = np.degrees(np.arctan2(eigvec[1, 1], eigvec[0, 1]))
    width, height = 2 * n_std * np.sqrt(eigval[1]), 2 * n_std * np.sqrt(eigval[0])
    patch = Ellipse(np.asarray(mean, dtype=float), width, height, angle=angle, fill=False, **kwargs)
    ax.add_patch(patch)
    return patch


def _stationary_samples(run: Run, burn_in: float) -> np.ndarray | None:
    """The finite iterates after burn-in, pooled over paths and saves (None for a run that
    kept statistics only)."""
    keep = window_mask(run.ts, burn_in)
    if run.x is None:
        if run.stats is None:
            raise ValueError("run.x is None: the run kept no states to draw a distribution from.")
        return None
    x = run.x[:, keep].reshape(-1, run.x.shape[-1])
    x = x[np.all(np.isfinite(x), axis=1)]
    if not len(x):
        raise ValueError(
            f"every path of the {run.kind} run diverged after burn-in: no law to draw."
        )
    return x


def _bin_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """`bins` equal bins, unless the values sit on a lattice coarser than that (SignSGD moves in
    steps of ±η): then one bin per lattice point, so no bin is empty by construction."""
    span = float(np.ptp(values)) or 1.0
    # Paths reach a lattice point by different sums of ±η; float rounding must not split it.
    points = np.unique(np.round(values / (1e-5 * span))) * (1e-5 * span)
    if 1 < len(points) <= 2 * bins:
        mids = 0.5 * (points[1:] + points[:-1])
        return np.concatenate([[2 * points[0] - mids[0]], mids, [2 * points[-1] - mids[-1]]])
    return np.histogram_bin_edges(values, bins=bins)


def _gaussian(ax, mean, var, lo, hi, **kwargs):
    sd = np.sqrt(var)
    grid = np.linspace(lo, hi, 200)
    ax.plot(grid, np.exp(-0.5 * ((grid - mean) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)), **kwargs)


def _marginal(ax, run: Run, x, moments, i: int, burn_in: float, label, colour, bins, filled):
    """One run's marginal of coordinate `i`: a histogram of its samples, the histogram its
    statistics kept (`keep="stats"` with `hist`), or else the Gaussian of its moments."""
    if x is not None:
        style = {"alpha": 0.5} if filled else {"histtype": "step", "lw": 1.5}
        ax.hist(
            x[:, i],
            bins=_bin_edges(x[:, i], bins),
            density=True,
            color=colour,
            label=label,
            **style,
        )
        return float(x[:, i].min()), float(x[:, i].max())
    stats, keep = run.stats, window_mask(run.ts, burn_in)
    if stats.hist is not None and i in stats.hist.coords:
        edges = np.asarray(stats.hist.edges)
        counts = stats.hist_counts[keep, stats.hist.coords.index(i)].sum(axis=0)
        if counts.sum() > 0:
            # a density of all finite values: what fell outside the edges is said, not dropped
            total = float(stats.count[keep].sum())
            outside = 1.0 - counts.sum() / total
            note = f", {outside:.1%} outside its edges" if outside > 0 else ""
            ax.stairs(
                counts / (total * np.diff(edges)),
                edges,
                color=colour,
                lw=1.5,
                label=f"{label} (kept histogram{note})",
            )
            return float(edges[0]), float(edges[-1])
    mean, sd = moments.mean[i], np.sqrt(moments.cov[i, i])
    _gaussian(
        ax,
        mean,
        sd**2,
        mean - 4 * sd,
        mean + 4 * sd,
        color=colour,
        ls=":",
        label=f"{label} (Gaussian of its moments)",
    )
    return float(mean - 4 * sd), float(mean + 4 * sd)


def stationary(
    ref: Run,
    theory=None,
    *,
    run: Run | None = None,
    burn_in: float = 0.5,
    coords=None,
    bins: int = 60,
    labels=None,
):
    """Stationary marginals after burn-in (pooled over paths and saves) of the optimizer `ref`
    and, side by side in each panel, of its SDE `run`, with the theoretical Gaussian
    `N(mean_i, cov_ii)` of `theory` (a `Stationary`) where one exists; the title names it.

    Each coordinate gets a panel (the optimizer filled, the SDE outlined, theory black); for
    `d ≥ 2` a last panel shows coordinates (0, 1) with the 1σ and 2σ ellipses of every run
    (solid) and of theory (dashed). `labels` name the runs (default: "optimizer", "SDE" by
    `Run.kind`). A run that kept statistics only (`keep="stats"`) is drawn
    from the histogram it kept (`hist=`) or else as the Gaussian of its moments (dotted).
    """
    runs = [ref] if run is None else [ref, run]
    labels = [_KIND_LABELS[r.kind] for r in runs] if labels is None else list(labels)
    pairs = list(zip(runs, labels, ("C0", "C1"), strict=False))
    pairs = [  # finite paths are drawn; the legend says how many were left out
        (r, f"{label} ({r.n_diverged}/{r.n_paths} diverged, left out)" if r.diverged else label, c)
        for r, label, c in pairs
    ]
    samples = [_stationary_samples(r, burn_in) for r, _, _ in pairs]
    moments = [empirical_stationary(r, burn_in=burn_in) for r, _, _ in pairs]
    d = moments[0].mean.shape[0]
    coords = list(range(min(d, 4))) if coords is None else list(coords)
    if not coords or any(not 0 <= c < d for c in coords):
        raise ValueError(f"coords={coords} is invalid: indices in [0, {d}) are required.")
    n_panels = len(coords) + (1 if d >= 2 else 0)
    fig, axes = plt.subplots(1, n_panels, figsize=(3.4 * n_panels, 3.5), squeeze=False)
    axes = axes[0]
    for ax, i in zip(axes, coords, strict=False):
        spans = [
            _marginal(ax, r, x, m, i, burn_in, label, colour, bins, filled=k == 0)
            for k, ((r, label, colour), x, m) in enumerate(
                zip(pairs, samples, moments, strict=True)
            )
        ]
        parts = [
            f"{label} {m.cov[i, i]:.3g}" for (_, label, _), m in zip(pairs, moments, strict=True)
        ]
        if theory is not None:
            lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
            _gaussian(
                ax, theory.mean[i], theory.cov[i, i], lo, hi, color="k", lw=1.5, label="theory"
            )
            parts.append(f"theory {theory.cov[i, i]:.3g}")
        ax.set_title("var: " + ", ".join(parts), fontsize=8)
        ax.set_xlabel(f"x[{i}]")
        ax.set_ylabel("density")
    axes[0].legend(loc="upper right", fontsize=7)  # "best" searches every histogram bar
    if d >= 2:
        ax = axes[-1]
        handles = []
        for (_, label, colour), x, m in zip(pairs, samples, moments, strict=True):
            if x is not None:
                sample = x[np.random.default_rng(0).permutation(len(x))[:2000]]
                ax.scatter(sample[:, 0], sample[:, 1], s=2, alpha=0.25, color=colour)
            for n_std in (1, 2):
                covariance_ellipse(ax, m.mean[:2], m.cov[:2, :2], n_std, color=colour, lw=1.5)
            handles.append(plt.Line2D([], [], color=colour, label=f"{label} 1σ, 2σ"))
        if theory is not None:
            for n_std in (1, 2):
                covariance_ellipse(
                    ax, theory.mean[:2], theory.cov[:2, :2], n_std, color="k", ls="--", lw=1.2
                )
            handles.append(plt.Line2D([], [], color="k", ls="--", label="theory 1σ, 2σ"))
        ax.autoscale_view()
        ax.legend(handles=handles, loc="upper right", fontsize=7)  # thousands of points
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
        ax.set_title("coordinates 0 and 1", fontsize=8)
    name = ref.config.get("optimizer", {}).get("name", "")
    who = " and ".join(label for _, label, _ in pairs)
    where = f"theory: {theory.method} N(x*, C)" if theory is not None else "no closed-form theory"
    fig.suptitle(f"{name} stationary law after burn-in {burn_in:.0%}: {who}; {where}", fontsize=10)
    fig.tight_layout()
    return fig


def noise_scaling(scales, losses, *, labels=None, theory=None, errors=None, ax=None):
    """Stationary loss against a swept value (the noise scale) on log-log axes.

    `losses`: dict label → `(n,)` array (or a list with `labels`); `errors`: the same structure
    of standard errors (error bars); `theory`: dict label → array, dashed. Each legend entry
    gives the fitted log-log slope (SGD ≈ 2, SignSGD ≈ 1 against the noise scale).
    """
    scales = np.asarray(scales, dtype=float)
    if isinstance(losses, dict):
        labels = list(losses) if labels is None else list(labels)
        series = [np.asarray(losses[k], dtype=float) for k in labels]
    else:
        series = [np.asarray(v, dtype=float) for v in losses]
        if labels is None or len(labels) != len(series):
            raise ValueError("labels must name every series of losses.")
    for label, values in zip(labels, series, strict=True):
        if values.shape != scales.shape:
            raise ValueError(f"losses[{label!r}] has shape {values.shape}, scales {scales.shape}.")
    fig, ax = _new_axes(ax, figsize=(6.0, 4.2))
    plotted = 0
    for i, (label, values) in enumerate(zip(labels, series, strict=True)):
        ok = np.isfinite(values) & (values > 0)
        plotted += int(ok.sum())
        if not ok.any():  # said in the legend, not left out silently
            ax.plot([], [], "x", color=f"C{i}", label=f"{label}: no finite points (diverged)")
            continue
        err = None
        if errors is not None and label in errors:
            err = np.asarray(errors[label], dtype=float)[ok]
        slope = loglog_slope(scales[ok], values[ok]) if ok.sum() >= 2 else float("nan")
        ax.errorbar(
            scales[ok],
            values[ok],
            yerr=err,
            fmt="o-",
            color=f"C{i}",
            ms=4,
            capsize=2,
            label=f"{label}: slope {slope:.2f}",
        )
    for i, (label, values) in enumerate((theory or {}).items()):
        values = np.asarray(values, dtype=float)
        plotted += int(np.sum(np.isfinite(values) & (values > 0)))
        slope = loglog_slope(scales, values)
        ax.plot(
            scales, values, "--", color=f"C{len(series) + i}", label=f"{label}: slope {slope:.2f}"
        )
    ax.set_xscale("log")
    # log-axis minor labels (3×10⁻¹, 4×10⁻¹, ...) overlap on a short range: label the values swept
    ax.set_xticks(scales, [f"{s:g}" for s in scales])
    ax.xaxis.set_minor_formatter(NullFormatter())
    if plotted:
        ax.set_yscale("log")
    else:
        ax.set_title("every run diverged: nothing to plot", fontsize=10)
    ax.set_xlabel("noise scale")
    ax.set_ylabel("stationary E f")
    ax.legend(loc="best", fontsize=8)
    return fig


def sweep(result, *, ax=None):
    """A `Sweep` (`sdelens.noise_sweep`, `weight_decay_sweep`): stationary loss of optimizer and
    SDE (with standard errors) and theory against the swept value, log-log, fitted slopes."""
    series = {f"{n} {k}": v for n, d in result.loss.items() for k, v in d.items() if k != "theory"}
    errors = {f"{n} {k}": v for n, d in result.se.items() for k, v in d.items() if k != "theory"}
    theory = {f"{n} theory": d["theory"] for n, d in result.loss.items() if "theory" in d}
    fig = noise_scaling(
        result.values, series, labels=list(series), theory=theory, errors=errors, ax=ax
    )
    ax = fig.axes[0]
    ax.set_xlabel(result.parameter)
    if not ax.get_title():  # an all-diverged sweep keeps its own title
        sources = "optimizer, SDE" + (" and theory" if theory else " (no closed-form theory)")
        ax.set_title(f"stationary E f against {result.parameter}: {sources}", fontsize=10)
    return fig


def phases(run: Run, noise, problem, *, path: int = 0):
    """SignSGD phases (Lemma 3.4) along one path: phase per coordinate and save (image), and
    the fraction of coordinates in each phase over time."""
    if run.x is None:
        raise ValueError("run.x is None: phases need the saved iterates.")
    if not 0 <= path < run.n_paths:
        raise ValueError(f"path={path} is invalid: allowed range is [0, {run.n_paths}).")
    x = jnp.asarray(run.x[path])
    finite = np.all(np.isfinite(run.x[path]), axis=1)
    phase = np.asarray(jax.vmap(lambda xi: sign_phase(noise, problem.grad(xi)))(x)).astype(float)
    phase[~finite] = np.nan
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 4.8), sharex=True, height_ratios=(1, 1.4))
    for p in (1, 2, 3):
        top.plot(
            run.ts, np.nanmean(phase == p, axis=1), color=_PHASE_COLOURS[p - 1], label=f"phase {p}"
        )
    top.set_ylabel("fraction of coords")
    top.legend(loc="best", fontsize=8, ncol=3)
    cmap = plt.matplotlib.colors.ListedColormap(_PHASE_COLOURS)
    image = bottom.imshow(
        phase.T,
        aspect="auto",
        cmap=cmap,
        vmin=0.5,
        vmax=3.5,
        interpolation="nearest",
        extent=(run.ts[0], run.ts[-1], phase.shape[1] - 0.5, -0.5),
    )
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))  # coordinates are whole numbers
    bar = fig.colorbar(image, ax=(top, bottom), ticks=[1, 2, 3])  # both panels keep one width
    bar.set_label("phase")
    bottom.set_xlabel("t = k·η")
    bottom.set_ylabel("coordinate")
    _mark_divergence(bottom, run, "path", "red")
    top.set_title(f"SignSGD phases along path {path}")
    return fig


def scaling(check):
    """A scaling-rule check (`sdelens.verify_scaling`): mean loss of the base and the scaled
    setting against samples processed, with ±2 SE bands and the loss threshold."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    samples = check.base_run.steps.astype(float)
    for run, label, colour in (
        (check.base_run, f"base {check.base.name}, lr={check.base.lr:g}", "C0"),
        (check.scaled_run, f"kappa={check.kappa:g}: lr={check.scaled.lr:g}", "C1"),
    ):
        stats = run.statistics()
        _band(ax, samples, stats.loss_mean, stats.loss_se, label, colour)
    ax.axhline(check.threshold, color="gray", ls=":", label="threshold")
    ax.set_yscale("log")
    ax.set_xlabel("samples processed (in base batches)")
    ax.set_ylabel("E f(x)")
    verdict = "holds" if check.holds else "fails"
    ax.set_title(
        f"rule {check.rule} {verdict}: floors {check.stationary_rel_diff:.1%} apart", fontsize=10
    )
    ax.legend(loc="best", fontsize=8)
    return fig


def weak_order(result, *, ax=None):
    """Weak error against the learning rate on log-log axes, with a slope-1 reference."""
    fig, ax = _new_axes(ax, figsize=(5.0, 4.0))
    ax.errorbar(
        result.lrs,
        result.error,
        yerr=2 * result.se,
        fmt="o-",
        capsize=3,
        label=f"sup_t |E f(opt) - E f(SDE)|: slope {result.slope:.2f}",
    )
    ref = result.error[0] * result.lrs / result.lrs[0]
    ax.plot(result.lrs, ref, "k--", lw=1, label="slope 1")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("weak error")
    ax.legend(loc="best", fontsize=8)
    return fig


def state_covariance(theory, run: Run | None = None, *, burn_in: float = 0.5, names=None):
    """Stationary correlation matrix of the whole SDE state `(x, m, v, ...)`: from the
    linearised theory (`sdelens.linearised_stationary`) and, if `run` has states, from data."""
    if theory.state_cov is None:
        raise ValueError("theory has no state_cov: use sl.linearised_stationary(opt, prob).")
    panels = [("theory (Lyapunov)", theory.state_cov)]
    if run is not None:
        if run.state is None or len(run.state) < 2:
            raise ValueError("run.state has no fields beyond x: this optimizer has no state.")
        flat = np.concatenate(list(run.state), axis=-1)  # the state ravelled field by field
        states = flat[:, window_mask(run.ts, burn_in)].reshape(-1, flat.shape[-1])
        panels.append(
            (
                f"{run.kind} (empirical)",
                np.cov(states[np.all(np.isfinite(states), 1)], rowvar=False),
            )
        )
    n = theory.state_cov.shape[0]
    names = list(theory.state_names or range(n)) if names is None else list(names)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (title, cov) in zip(axes[0], panels, strict=True):
        sd = np.sqrt(np.clip(np.diag(cov), 1e-300, None))
        corr = cov / np.outer(sd, sd)
        image = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_xticks(range(n), names, fontsize=7, rotation=90)
        ax.set_yticks(range(n), names, fontsize=7)
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=list(axes[0]), label="correlation")
    return fig


def compute_fair(result, *, x: str = "grad_evals", y: str = "loss", ax=None):
    """Mean train loss (`y="loss"`) or test accuracy (`y="accuracy"`) of each optimizer of a
    `compute_fair` result against gradient evaluations (`x="grad_evals"`), effective epochs
    (`"epochs"`) or wall-clock seconds (`"seconds"`), ±2 standard errors."""
    axes_x = {
        "grad_evals": "gradient evaluations",
        "epochs": "effective epochs",
        "seconds": "seconds (compilation excluded)",
    }
    if x not in axes_x:
        raise ValueError(f"x={x!r} is invalid: choose one of {', '.join(map(repr, axes_x))}.")
    if y not in ("loss", "accuracy"):
        raise ValueError(f"y={y!r} is invalid: 'loss' or 'accuracy'.")
    if y == "accuracy" and result.accuracy is None:
        raise ValueError("y='accuracy' needs a network problem (test accuracy).")
    fig, ax = _new_axes(ax, figsize=(6.4, 4.0))
    xs = {"grad_evals": result.grad_evals, "epochs": result.epochs, "seconds": result.seconds}[x]
    for i, (name, run) in enumerate(result.runs.items()):
        values = run.loss if y == "loss" else result.accuracy[name]
        mean, se, _ = mean_se(values, axis=0)
        _band(ax, np.asarray(xs[name], float), mean, np.nan_to_num(se), name, f"C{i}")
        _mark_divergence(ax, run, name, f"C{i}")
    if y == "loss":
        ax.set_yscale("log")
    ax.set_xlabel(axes_x[x])
    ax.set_ylabel("train loss" if y == "loss" else "test accuracy")
    n_runs = {run.n_paths for run in result.runs.values()}
    runs = f"{n_runs.pop()} runs each" if len(n_runs) == 1 else "runs"
    ax.set_title(
        f"{ax.get_ylabel()} at equal gradient evaluations ({runs}, mean ± 2 SE)", fontsize=10
    )
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def sensitivity(result, *, y: str = "accuracy"):
    """Heat map of a `sensitivity` grid: final test accuracy (or `y="loss"`, log scale);
    diverged settings are hatched out, never coloured as data."""
    values = result.accuracy if (y == "accuracy" and result.accuracy is not None) else result.loss
    label = "final test accuracy" if values is result.accuracy else "final train loss"
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    shown = np.where(result.diverged | ~np.isfinite(values), np.nan, values)
    if values is result.loss:
        shown = np.log10(shown)
        label = "log10 " + label
    image = ax.imshow(shown.T, origin="lower", cmap="viridis", aspect="auto")
    ax.set_xticks(range(result.x_values.size), [f"{v:g}" for v in result.x_values])
    ax.set_yticks(range(result.y_values.size), [f"{v:g}" for v in result.y_values])
    for i, j in zip(*np.nonzero(result.diverged), strict=True):
        ax.text(i, j, "diverged", ha="center", va="center", color="red", fontsize=8)
    for i, j in zip(*np.nonzero(~result.diverged & np.isfinite(shown)), strict=True):
        ax.text(i, j, f"{values[i, j]:.3g}", ha="center", va="center", color="w", fontsize=8)
    ax.set_xlabel(result.x_name)
    ax.set_ylabel(result.y_name)
    ax.set_title(f"{label} over {result.x_name} × {result.y_name}", fontsize=10)
    fig.colorbar(image, ax=ax, label=label)
    fig.tight_layout()
    return fig


def hessian_spectra(spectra: dict, *, ax=None):
    """SLQ densities of the Hessian at several points (`{label: HessianSpectrum}`), log scale,
    with the share of the mass near zero in the legend (Chaudhari et al. 2017, Fig. 1)."""
    fig, ax = _new_axes(ax, figsize=(6.4, 4.0))
    for i, (label, spec) in enumerate(spectra.items()):
        grid, density = np.asarray(spec.density.grid), np.asarray(spec.density.density)
        ax.plot(
            grid,
            np.maximum(density, 1e-8),
            color=f"C{i}",
            label=f"{label}: λmax {spec.top[0]:.3g}, {spec.near_zero_fraction:.0%} near 0",
        )
    ax.set_yscale("log")
    ax.set_xlabel("Hessian eigenvalue λ")
    ax.set_ylabel("density (SLQ)")
    ax.set_title("Hessian spectral densities (stochastic Lanczos quadrature)", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def preference(result):
    """Which minimum local entropy and plain smoothing prefer over (T, γ): blue cells prefer
    the wide minimum, red the narrow one (value: loss at wide minus at narrow)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    gaps = (
        ("local entropy  -T F", result.entropy_gap),
        ("Gaussian smoothing, width √(T/γ)", result.smoothing_gap),
    )
    for ax, (title, gap) in zip(axes, gaps, strict=True):
        image = _gap_panel(ax, gap, result.temperatures, result.gammas, title)
        fig.colorbar(image, ax=ax, label="wide - narrow")
    axes[0].set_ylabel("T")
    fig.tight_layout()
    return fig


def _gap_panel(ax, gap, temperatures, gammas, title):
    """A heat map of `wide - narrow` over `(T, γ)`, blue where the wide minimum is preferred,
    red where the narrow one is, each cell labelled; cells without a comparison (NaN) are
    white and say "n/a"."""
    gap = np.asarray(gap, float)
    finite = np.isfinite(gap)
    bound = float(np.max(np.abs(gap[finite]), initial=0.0)) or 1.0
    cmap = plt.get_cmap("coolwarm").with_extremes(bad="white")
    image = ax.imshow(
        np.ma.masked_invalid(gap), origin="lower", cmap=cmap, vmin=-bound, vmax=bound, aspect="auto"
    )
    ax.set_xticks(range(len(gammas)), [f"{g:g}" for g in gammas])
    ax.set_yticks(range(len(temperatures)), [f"{t:g}" for t in temperatures])
    # a small gap is pale whatever its sign: the cell says which minimum wins
    for (i, j), value in np.ndenumerate(gap):
        text = "n/a" if not finite[i, j] else ("wide" if value < 0 else "narrow")
        ax.text(j, i, text, ha="center", va="center", fontsize=7)
    ax.set_xlabel("γ")
    ax.set_title(title, fontsize=10)
    return image


def landscape(loss, narrow, wide, *, gamma: float, temperatures, ax=None):
    """A 1-D landscape `f` with the local-entropy loss `u = -T log(G * e^{-f/T})` (solid) and
    the smoothed loss `G * f` (dashed), both at width `√(T/γ)`, for each temperature."""
    fig, ax = _new_axes(ax, figsize=(7.0, 4.2))
    xs = jnp.linspace(float(narrow[0]) - 1.0, float(wide[0]) + 1.5, 241)
    grid = xs[:, None]
    span = float(xs[-1] - xs[0])  # every point's window holds both wells
    ax.plot(xs, jax.vmap(loss)(grid), color="k", lw=2, label="f")
    for i, t in enumerate(temperatures):
        width = float(np.sqrt(t / gamma))

        def entropy(p, t=t):
            return flatness.local_entropy_integral(loss, p, gamma, t, n=2001, half_width=span)

        def smoothed(p, w=width):
            return flatness.smoothed_loss_integral(loss, p, w)

        ax.plot(xs, jax.lax.map(entropy, grid), color=f"C{i}", label=f"local entropy, T={t:g}")
        ax.plot(
            xs,
            jax.lax.map(smoothed, grid),
            color=f"C{i}",
            ls="--",
            label=f"smoothing, width {width:.2g}",
        )
    ax.set_xlabel("x")
    ax.set_ylabel("objective")
    ax.set_title(
        f"γ = {gamma:g}: narrow minimum at {float(narrow[0]):g}, wide at {float(wide[0]):g}"
    )
    ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    return fig


def variational_preference(result):
    """Which minimum each objective prefers over `(T, γ)` (a `VariationalPreference` from
    `studies.variational_preference`): local entropy, smoothing at width `√(T/γ)`, Gaussian
    local entropy and plain variational inference (`γ = 0`, one column). Blue cells prefer the
    wide minimum, red the narrow one (value: objective at wide minus at narrow); "n/a"
    cells had a fit leave its basin, so nothing is ranked there (docs/math.md §7.8)."""
    if not isinstance(result, studies.VariationalPreference):
        raise ValueError(
            f"result={type(result).__name__} is invalid: a VariationalPreference "
            "(sl.studies.variational_preference) is required."
        )
    fig, axes = plt.subplots(
        1, 4, figsize=(14, 4), sharey=True, gridspec_kw={"width_ratios": [3, 3, 3, 1.6]}
    )
    panels = (
        ("local entropy u", result.preference.entropy_gap, result.gammas),
        ("smoothing, width √(T/γ)", result.preference.smoothing_gap, result.gammas),
        ("Gaussian local entropy u_G", result.gaussian_gap, result.gammas),
        ("variational inference", result.vi_gap[:, None], [0.0]),
    )
    for ax, (title, gap, gammas) in zip(axes, panels, strict=True):
        image = _gap_panel(ax, gap, result.temperatures, gammas, title)
        fig.colorbar(image, ax=ax, label="wide - narrow")
    axes[0].set_ylabel("T")
    fig.suptitle(f"Which minimum each objective prefers ({result.dim}-D landscape)", fontsize=11)
    fig.tight_layout()
    return fig


def variational_widths(result, *, ax=None):
    """Learned variational variances `sᵢ²` against the curvature's prediction, log-log, with
    the line `s² = prediction` (docs/math.md §7.8).

    A `VariationalPreference`: every fit that held its basin, against `T/(h + γ)` (`h` the
    curvature at its minimum: exact on a quadratic; the excess is the well's flattening away
    from its centre). A `VariationalNetwork`: each parameter against `T/(E_q[∂ᵢ²f] + γ)` (the
    stationarity condition) and `T/(∂ᵢ²f(m) + γ)` (the curvature at the mean alone), with the
    log-log correlation and slope in the legend."""
    fig, ax = _new_axes(ax, figsize=(5.6, 4.8))
    if isinstance(result, studies.VariationalPreference):
        held = result.held[..., None] & np.ones_like(result.std, bool)
        markers = {0: ("o", "narrow minimum"), 1: ("s", "wide minimum")}
        for b, (marker, where) in markers.items():
            for j, gamma in enumerate(result.fit_gammas):
                keep = held[:, j, b]
                ax.scatter(
                    result.predicted_variance[:, j, b][keep],
                    result.std[:, j, b][keep] ** 2,
                    marker=marker,
                    color=f"C{j}",
                    s=24,
                    label=f"{where}, γ = {gamma:g}" + (" (VI)" if gamma == 0 else ""),
                )
        xs = result.predicted_variance[held]
        title = f"{result.dim}-D landscape: learned variance vs T/(h + γ)"
        left = int((~result.held).sum())
        if left:
            title += f"\n({left} fits left their basin: not shown)"
    elif isinstance(result, studies.VariationalNetwork):
        xs = np.concatenate([result.predicted_variance, result.variance_at_mean])
        for colour, (label, pred, kind) in enumerate(
            (
                ("T/(E_q[∂ᵢ²f] + γ)", result.predicted_variance, "expected"),
                ("T/(∂ᵢ²f(mean) + γ)", result.variance_at_mean, "at_mean"),
            )
        ):
            stats = result.agreement(kind)
            ax.scatter(
                pred,
                result.variance,
                s=12,
                color=f"C{colour}",
                alpha=0.7,
                label=f"vs {label}: log corr {stats['log_correlation']:.2f}, "
                f"slope {stats['loglog_slope']:.2f}",
            )
        title = (
            f"{result.name}: variational inference, T = {result.temperature:g}, "
            f"γ = {result.gamma:g}, λ = {result.weight_decay:g}"
        )
    else:
        raise ValueError(
            f"result={type(result).__name__} is invalid: a VariationalPreference or a "
            "VariationalNetwork (sl.studies) is required."
        )
    xs = np.asarray(xs, float)
    xs = xs[np.isfinite(xs) & (xs > 0)]
    if xs.size:
        line = np.array([xs.min(), xs.max()])
        ax.plot(line, line, color="k", lw=1, ls="--", label="s² = prediction")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted variance")
    ax.set_ylabel("learned variance s²")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    return fig


def inner_loops(result):
    """The local-entropy direction's error against gradient evaluations per outer step, per
    inner-loop variant (an `InnerLoops` on a quadratic, `studies.inner_loops`): squared bias
    (left) and mean squared error ±2 SE (right), log-log. Diverged settings are left out and
    named in the legend, never drawn as data."""
    if not isinstance(result, studies.InnerLoops) or result.mse is None:
        raise ValueError(
            "result is invalid: an InnerLoops measured on a quadratic (its estimator sweep) "
            "is required."
        )
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for i, name in enumerate(result.mse):
        grads = np.asarray(result.grads_per_step[name], float)
        panels = ((result.bias2[name], None), (result.mse[name], result.mse_se[name]))
        for ax, (values, se) in zip(axes, panels, strict=True):
            ok = np.isfinite(values) & (values > 0)
            label = name if ok.all() else f"{name} ({int((~ok).sum())} diverged or ≤ 0)"
            ax.plot(grads[ok], values[ok], "o-", color=f"C{i}", label=label)
            if se is not None:
                ax.errorbar(grads[ok], values[ok], yerr=2 * se[ok], fmt="none", color=f"C{i}")
    ticks = []
    for value in np.unique(np.concatenate(list(result.grads_per_step.values())).astype(float)):
        if not ticks or value >= 1.3 * ticks[-1]:  # neighbours on a log axis would overlap
            ticks.append(value)
    titles = ("squared bias of γ_out (x - μ)", "mean squared error")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("gradient evaluations per outer step")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("error² (summed over coordinates)")
    axes[1].legend(loc="upper right", fontsize=8)
    fig.suptitle(
        f"Entropy-SGD inner loops on a quadratic: {result.n_steps} outer steps, "
        f"{result.n_paths} paths (mean |d|² = {result.scale:.3g})",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


# -- the standard figures of each result -------------------------------------------------------


def _optimizer_vs_sde(result) -> dict:
    figs = {"trajectories": trajectories(result.ref, result.run)}
    if result.test_accuracy is not None:
        accuracy = {_KIND_LABELS[k]: v for k, v in result.test_accuracy.items()}
        figs["test_accuracy"] = curves(result.ref.ts, accuracy, ylabel="test accuracy")
    elif not result.ref.diverged:
        figs["stationary"] = stationary(result.ref, theory=result.theory, run=result.run)
    return figs


def _compute_fair(result) -> dict:
    figs = {
        "loss_vs_grad_evals": compute_fair(result, x="grad_evals"),
        "loss_vs_seconds": compute_fair(result, x="seconds"),
    }
    if result.accuracy is not None:
        figs["accuracy_vs_grad_evals"] = compute_fair(result, x="grad_evals", y="accuracy")
    return figs


def _entropy_study(result) -> dict:
    figs = _compute_fair(result.fair)
    if result.spectra:
        figs["hessian_spectra"] = hessian_spectra(result.spectra)
    for grid in result.grids:
        figs[f"sensitivity_{grid.x_name}_{grid.y_name}"] = sensitivity(grid)
    if result.preference is not None:
        figs["preference"] = preference(result.preference)
        loss, narrow, wide = flatness.two_minima()
        figs["landscape"] = landscape(loss, narrow, wide, gamma=1.0, temperatures=[0.01, 0.15])
    return figs


def _variational_study(result) -> dict:
    figs = {}
    for d, landscape_result in result.landscapes.items():
        figs[f"variational_preference_{d}d"] = variational_preference(landscape_result)
        figs[f"variational_widths_{d}d"] = variational_widths(landscape_result)
    if result.network is not None:
        figs["variational_network_widths"] = variational_widths(result.network)
    return figs


def _inner_loops(result) -> dict:
    figs = _compute_fair(result.fair)
    if result.mse is not None:
        figs["estimator_error"] = inner_loops(result)
    return figs


def _demo(result) -> dict:
    figs = {}
    for name, both in result.results.items():
        figs.update({f"{name}_{k}": v for k, v in _optimizer_vs_sde(both).items()})
    signsgd = result.results["signsgd"].ref
    figs["signsgd_phases"] = phases(signsgd, result.problem.noise, result.problem)
    return figs


_FIGURES = {
    studies.OptimizerVsSDE: _optimizer_vs_sde,
    studies.Sweep: lambda r: {"sweep": sweep(r)},
    studies.StationarySweeps: lambda r: {label: sweep(s) for label, s in r.sweeps.items()},
    studies.ScalingCheck: lambda r: {"scaling": scaling(r)},
    studies.WeakOrder: lambda r: {"weak_order": weak_order(r)},
    studies.ComputeFair: _compute_fair,
    studies.Sensitivity: lambda r: {"sensitivity": sensitivity(r)},
    studies.HessianSpectrum: lambda r: {"hessian_spectrum": hessian_spectra({"": r})},
    studies.Preference: lambda r: {"preference": preference(r)},
    studies.EntropyStudy: _entropy_study,
    studies.InnerLoops: _inner_loops,
    studies.VariationalPreference: lambda r: {
        "variational_preference": variational_preference(r),
        "variational_widths": variational_widths(r),
    },
    studies.VariationalNetwork: lambda r: {"variational_network_widths": variational_widths(r)},
    studies.VariationalStudy: _variational_study,
    studies.EntropyStability: lambda r: {
        f"stability_inner_lr_{v:g}": entropy_sgd_stability(r, inner_lr=v) for v in r.inner_lrs
    },
    studies.Demo: _demo,
}


def figures(result) -> dict:
    """The standard figures of a study result, by name (e.g. `{"trajectories": ...,
    "stationary": ...}` for `optimizer_vs_sde`): what the command line saves as PNGs."""
    for kind, make in _FIGURES.items():
        if isinstance(result, kind):
            return make(result)
    raise ValueError(
        f"result={type(result).__name__} is invalid: figures() draws the results of "
        f"{', '.join(k.__name__ for k in _FIGURES)}."
    )


def entropy_sgd_stability(result, *, ax=None, inner_lr=None):
    """Heat map over `(lr, γ)` of Entropy-SGD's measured growth factor per outer step (an
    `EntropyStability` from `studies.entropy_sgd_stability`) at one inner step size `inner_lr`
    (one of `result.inner_lrs`; default the first), log10 scale clipped to ±1 decade and
    centred at 1. Overlaid: the theory's boundary `|r| = 1` (black contour of the closed-form
    spectral radius on a fine mesh), the inner chain's bound `γ = 2/η' - h_max` (dashed), and
    circles where measurement and theory disagree. Non-finite runs are marked ×, never coloured.
    """
    if not isinstance(result, studies.EntropyStability):
        raise ValueError(
            f"result={type(result).__name__} is invalid: an EntropyStability "
            "(sl.studies.entropy_sgd_stability) is required."
        )
    if inner_lr is None:
        k = 0
    else:
        match = np.nonzero(np.isclose(result.inner_lrs, float(inner_lr), rtol=1e-9, atol=0.0))[0]
        if match.size == 0:
            raise ValueError(
                f"inner_lr={inner_lr!r} is invalid: the result holds inner_lrs "
                f"{', '.join(f'{v:g}' for v in result.inner_lrs)}."
            )
        k = int(match[0])
    inner = float(result.inner_lrs[k])

    def edges(values):
        logs = np.log(values)
        if logs.size == 1:
            return np.exp(logs[0] + np.array([-0.4, 0.4]))
        mid = 0.5 * (logs[1:] + logs[:-1])
        return np.exp(np.concatenate([[2 * logs[0] - mid[0]], mid, [2 * logs[-1] - mid[-1]]]))

    fig, ax = _new_axes(ax, figsize=(6.4, 4.8))
    lr_edges, gamma_edges = edges(result.lrs), edges(result.gammas)
    growth = result.growth[:, :, k]
    finite = np.isfinite(growth) & (growth > 0)
    shown = np.log10(np.where(finite, growth, 1.0))
    bound = float(np.clip(np.max(np.abs(shown[finite]), initial=0.0), 1e-3, 1.0))
    mesh = ax.pcolormesh(
        lr_edges,
        gamma_edges,
        np.ma.masked_invalid(np.where(finite, shown, np.nan).T),
        cmap="coolwarm",
        vmin=-bound,
        vmax=bound,
    )
    fig.colorbar(mesh, ax=ax, label="log10 measured growth per outer step")
    fine_lr = np.geomspace(lr_edges[0], lr_edges[-1], 200)
    fine_gamma = np.geomspace(gamma_edges[0], gamma_edges[-1], 200)
    lr_mesh, gamma_mesh = np.meshgrid(fine_lr, fine_gamma)
    radius = np.clip(result.spectral_radius_at(lr_mesh, gamma_mesh, inner), 0.0, 10.0)
    if radius.min() < 1.0 < radius.max():
        ax.contour(lr_mesh, gamma_mesh, radius, levels=[1.0], colors="k", linewidths=1.5)
        ax.plot([], [], color="k", lw=1.5, label="theory: |r| = 1")
    else:
        side = "stable" if radius.max() < 1.0 else "unstable"
        ax.plot([], [], color="k", lw=1.5, label=f"theory: |r| = 1 not crossed (all {side})")
    gamma_max = float(result.gamma_max[k])
    label = f"inner chain: γ = 2/η' - h_max = {gamma_max:.3g}"
    if gamma_edges[0] < gamma_max < gamma_edges[-1]:
        ax.axhline(gamma_max, color="k", ls="--", lw=1.2, label=label)
    else:
        ax.plot([], [], color="k", ls="--", lw=1.2, label=label + " (off the map)")
    lr_grid, gamma_grid = np.meshgrid(result.lrs, result.gammas, indexing="ij")
    differ = ~result.agree[:, :, k]
    if differ.any():
        ax.scatter(
            lr_grid[differ],
            gamma_grid[differ],
            s=60,
            facecolors="none",
            edgecolors="k",
            label="measured ≠ theory",
        )
    if (~finite).any():
        ax.scatter(
            lr_grid[~finite], gamma_grid[~finite], marker="x", color="red", label="non-finite"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lr_edges[0], lr_edges[-1])
    ax.set_ylim(gamma_edges[0], gamma_edges[-1])
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("coupling γ")
    agree = float(result.agree[:, :, k].mean())
    ax.set_title(
        f"Entropy-SGD stability, η' = {inner:g}, L = {result.inner_steps}, "
        f"{result.steps} steps: agreement {agree:.0%}",
        fontsize=10,
    )
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    return fig
