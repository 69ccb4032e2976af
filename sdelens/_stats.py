"""Small statistics shared by every layer: log-log slopes, mean ± standard error over paths, and
the burn-in window of a run's saves.

A statistic without data is NaN, never 0: a mean over no finite value is NaN, a standard error
from fewer than two values is NaN.
"""

from __future__ import annotations

import numpy as np

from . import _check

__all__ = ["loglog_slope", "mean_se", "window_mask"]


def loglog_slope(x, y) -> float:
    """Least-squares slope of `log y` against `log x` (the exponent `p` in `y ∝ xᵖ`)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"x {x.shape} and y {y.shape} must be 1-D of one length >= 2.")
    if np.any(x <= 0) or np.any(y <= 0) or not np.all(np.isfinite(x * y)):
        raise ValueError("x and y must be finite and > 0 for a log-log slope.")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def mean_se(values, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(mean, standard error, count)` of the finite entries of `values` along `axis`.

    The standard error is `std(ddof=1)/√n`; NaN where fewer than two values are finite (and the
    mean NaN where none is).
    """
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    count = finite.sum(axis=axis)
    zeroed = np.where(finite, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = zeroed.sum(axis=axis) / count
        centred = np.where(finite, values - np.expand_dims(mean, axis), 0.0)
        var = (centred**2).sum(axis=axis) / (count - 1)
        se = np.sqrt(var / count)
    mean = np.where(count > 0, mean, np.nan)
    se = np.where(count > 1, se, np.nan)
    return mean, se, count


def window_mask(ts, burn_in: float, window: float | None = None) -> np.ndarray:
    """The saves of a run with `burn_in · T <= t <= (burn_in + window) · T` (`T = ts[-1]`; the
    window runs to the end when `window` is None): what stationary estimates average over."""
    _check.in_interval("burn_in", burn_in, 0.0, 1.0)
    ts = np.asarray(ts, dtype=float)
    horizon = float(ts[-1])
    end = horizon
    if window is not None:
        _check.in_interval("window", window, 1e-12, 1.0 - burn_in, closed_high=True)
        end = (burn_in + window) * horizon
    return (ts >= burn_in * horizon - 1e-12) & (ts <= end + 1e-12)
