"""`sdelens.studies._preference`: which of two minima local entropy and plain smoothing prefer."""

import jax
import numpy as np
import pytest

import sdelens as sl
from sdelens import flatness


@pytest.fixture(scope="module", autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("dim", [1, 2])
def test_minimum_preference_local_entropy_vs_smoothing(dim):
    loss, narrow, wide = flatness.two_minima(dim)
    pref = sl.minimum_preference(loss, narrow, wide, [0.002, 0.15], [1.0])
    # local entropy: narrow (deep) at small T, wide at large T (flip where the log-det penalty
    # (T/2) d log(401/4.2) reaches the depth gap 0.2: T ≈ 0.09 in 1-D, 0.044 in 2-D);
    # smoothing at the same width already prefers the wide minimum at T = 0.002
    assert pref.entropy_gap[0, 0] > 0 > pref.entropy_gap[1, 0]
    assert pref.smoothing_gap[0, 0] < 0 and pref.smoothing_gap[1, 0] < 0
    laplace = [flatness.local_entropy_laplace(loss, x, 1.0, 0.002) for x in (wide, narrow)]
    # Laplace (Gaussian around each minimum) vs quadrature: 0.1909 vs 0.1945 in 2-D
    np.testing.assert_allclose(laplace[0] - laplace[1], pref.entropy_gap[0, 0], atol=5e-3)
    m = pref.metrics()
    assert m["temperatures"] == [0.002, 0.15] and m["gammas"] == [1.0]
    assert m["entropy_wide_minus_narrow"] == pref.entropy_gap.tolist()
    assert m["smoothing_wide_minus_narrow"] == pref.smoothing_gap.tolist()
    assert pref.entropy_gap.shape == pref.smoothing_gap.shape == (2, 1)
    # the smoothing gap is the difference of the smoothed losses at width √(T/γ)
    width = np.sqrt(0.15)
    smooth = [flatness.smoothed_loss_integral(loss, x, width) for x in (wide, narrow)]
    np.testing.assert_allclose(float(smooth[0] - smooth[1]), pref.smoothing_gap[1, 0], rtol=1e-6)
