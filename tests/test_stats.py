"""`sdelens._stats`: log-log slopes, mean ± standard error of the finite values (NaN where there
is no data), and the burn-in window of a run's saves."""

import numpy as np
import pytest

from sdelens._stats import loglog_slope, mean_se, window_mask


def test_loglog_slope_of_a_power_law():
    x = np.array([0.5, 1.0, 2.0, 8.0])
    assert loglog_slope(x, 3.0 * x**2.5) == pytest.approx(2.5, rel=1e-12)
    assert loglog_slope(x, 7.0 / x) == pytest.approx(-1.0, rel=1e-12)
    with pytest.raises(ValueError, match="1-D of one length >= 2"):
        loglog_slope([1.0], [1.0])
    with pytest.raises(ValueError, match="finite and > 0"):
        loglog_slope([1.0, 2.0], [1.0, 0.0])


def test_mean_se_of_the_finite_values_with_ddof_1():
    values = np.array(
        [
            [1.0, 2.0, np.nan, np.nan],
            [3.0, np.inf, 5.0, np.nan],
            [8.0, 4.0, np.nan, np.nan],
            [4.0, 6.0, np.nan, np.nan],
        ]
    )
    mean, se, count = mean_se(values)
    np.testing.assert_array_equal(count, [4, 3, 1, 0])
    np.testing.assert_allclose(mean[:3], [4.0, 4.0, 5.0])
    col0 = np.array([1.0, 3.0, 8.0, 4.0])
    np.testing.assert_allclose(se[0], col0.std(ddof=1) / 2.0)  # √(26/3)/2, not √(6.5)/2
    np.testing.assert_allclose(se[1], 2.0 / np.sqrt(3.0))  # std(ddof=1) of (2, 4, 6) is 2
    # One finite value: a mean but no standard error; none: neither (NaN, never 0).
    assert np.isnan(se[2]) and np.isnan(mean[3]) and np.isnan(se[3])


def test_mean_se_along_another_axis():
    values = np.array([[1.0, 2.0, 3.0], [np.nan, 10.0, 20.0]])
    mean, se, count = mean_se(values, axis=1)
    np.testing.assert_allclose(mean, [2.0, 15.0])
    np.testing.assert_allclose(se, [1.0 / np.sqrt(3.0), np.sqrt(50.0) / np.sqrt(2.0)])
    np.testing.assert_array_equal(count, [3, 2])


def test_window_mask_selects_saves_by_fraction_of_the_horizon():
    ts = np.arange(11) * 0.1  # T = 1
    np.testing.assert_array_equal(np.nonzero(window_mask(ts, 0.5))[0], [5, 6, 7, 8, 9, 10])
    np.testing.assert_array_equal(np.nonzero(window_mask(ts, 0.5, 0.2))[0], [5, 6, 7])
    # The window may run exactly to the end; floating-point edges are included.
    np.testing.assert_array_equal(np.nonzero(window_mask(ts, 0.3, 0.7))[0], np.arange(3, 11))
    assert window_mask(ts, 0.0).all()


@pytest.mark.parametrize("burn_in", [-0.1, 1.0, float("nan")])
def test_window_mask_refuses_bad_burn_in(burn_in):
    with pytest.raises(ValueError, match="burn_in="):
        window_mask(np.arange(5.0), burn_in)


@pytest.mark.parametrize("window", [0.0, 0.6])
def test_window_mask_refuses_a_window_past_the_end(window):
    with pytest.raises(ValueError, match="window="):
        window_mask(np.arange(5.0), 0.5, window)
