"""`sdelens.studies._variational`: Gaussian variational inference beside local entropy and
smoothing on the two-well landscapes, and learned widths against the curvature on a network
(docs/math.md §7.8)."""

import json
import math

import jax
import matplotlib.pyplot as plt
import numpy as np
import pytest

import sdelens as sl
from sdelens import flatness
from sdelens.studies import (
    VariationalNetwork,
    VariationalPreference,
    variational_network,
    variational_preference,
    variational_study,
)

KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def landscape_1d():
    """In double precision (the network test runs in single, as a user would)."""
    with jax.enable_x64(True):
        return flatness.landscape(1)


def test_flip_temperature_on_the_1d_landscape(landscape_1d):
    """The log-det estimate of the landscape's docstring: at `γ = 1` local entropy and its
    Gaussian restriction turn to the wide minimum where `(T/2) log((1 + 400)/(1 + 3.2))`
    reaches the depth gap 0.2; plain variational inference (`γ = 0`) where
    `(T/2) log(400/3.2)` does. Smoothing at the same width prefers the wide one throughout."""
    loss, narrow, wide = landscape_1d
    with jax.enable_x64(True):
        result = variational_preference(loss, narrow, wide, [0.078, 0.086, 0.094], [1.0])
    assert result.held.all()
    log_det = 0.4 / math.log(401 / 4.2)  # 0.0878
    for objective in ("local_entropy", "gaussian_local_entropy"):
        assert result.flip_temperature(objective, 1.0) == pytest.approx(log_det, rel=0.02)
    assert result.flip_temperature("gaussian_local_entropy", 1.0) == pytest.approx(
        result.flip_temperature("local_entropy", 1.0), rel=0.005
    )
    vi = result.flip_temperature("variational_inference")
    assert vi == pytest.approx(0.4 / math.log(400 / 3.2), rel=0.02)  # 0.0828
    assert math.isnan(result.flip_temperature("smoothing", 1.0))
    preferred = result.preferred()
    assert preferred["variational_inference"].tolist() == ["narrow", "wide", "wide"]
    assert preferred["gaussian_local_entropy"][:, 0].tolist() == ["narrow", "narrow", "wide"]
    assert (preferred["smoothing"] == "wide").all()
    # the learned variance: T/(h + γ) on the quadratic model, larger by the well's flattening
    # (E_q[f''] < f''(centre)), and exactly T/(E_q[f''] + γ) at the stationary point
    ratio = result.std**2 / result.predicted_variance
    assert np.all((ratio > 1.0) & (ratio < 1.3))
    np.testing.assert_allclose(result.std**2 / result.self_consistent_variance, 1.0, rtol=1e-2)
    metrics = result.metrics()
    assert metrics["flip_temperature"]["variational_inference"] == vi
    assert metrics["preferred"]["variational_inference"] == ["narrow", "wide", "wide"]
    json.dumps(metrics)


def test_variational_inference_loses_its_basins_above_a_critical_temperature(landscape_1d):
    """`e^{-f/T}` cannot be normalised on a loss that vanishes at infinity: variational
    inference only has local optima, and a well `-a e^{-x²/(2w²)}` keeps one for
    `T < (2/3^{3/2}) a ≈ 0.385 a` (0.385 narrow, 0.308 wide). Above it σ grows without limit:
    the fit "leaves its basin" and the gap is NaN, never a number."""
    loss, narrow, wide = landscape_1d
    with jax.enable_x64(True):
        result = variational_preference(loss, narrow, wide, [0.30, 0.35, 0.40], [1.0])
    critical = 2 / 3**1.5
    held = result.held[:, 0]
    assert held[:, 0].tolist() == [t < critical * 1.0 for t in (0.30, 0.35, 0.40)]
    assert held[:, 1].tolist() == [t < critical * 0.8 for t in (0.30, 0.35, 0.40)]
    assert np.isfinite(result.vi_gap[0]) and np.isnan(result.vi_gap[1:]).all()
    assert result.preferred()["variational_inference"].tolist() == ["wide", "none", "none"]
    assert np.isnan(result.metrics()["vi_wide_minus_narrow"][2])
    assert result.std[2, 0, 0, 0] > 2.5 / 3  # the escaped narrow fit spans both wells


def test_network_widths_follow_the_expected_curvature():
    """Variational inference at a trained point of a small MLP (breast cancer, 32 examples, 134
    parameters, weight decay 0.01 as a Gaussian prior): the learned variances follow
    `T/(E_q[∂ᵢ²f] + γ)` (Stein's lemma at the stationary point; measured log correlation 0.88,
    slope 0.85, 95% within 2×) much better than the curvature at the mean (slope 2.1)."""
    problem = sl.network_problem(
        "mlp-breast-cancer", key=jax.random.key(0), train_size=32, width=4, depth=1
    )
    result = variational_network(problem, key=jax.random.key(1))
    metrics = result.metrics()
    assert metrics["dim"] == 134 and metrics["fit_grad_norm_over_t"] < 0.05
    expected, at_mean = metrics["vs_expected_curvature"], metrics["vs_curvature_at_mean"]
    assert expected["count"] == 134
    assert expected["log_correlation"] > 0.8 and 0.65 < expected["loglog_slope"] < 1.2
    assert 0.8 < expected["median_ratio"] < 1.25 and expected["within_factor_2"] > 0.85
    assert at_mean["log_correlation"] < expected["log_correlation"]
    assert at_mean["loglog_slope"] > 1.4
    # the widths span more than a decade: the relation is not a constant
    assert np.ptp(np.log10(result.variance)) > 1.0
    figures = sl.plot.figures(result)
    assert set(figures) == {"variational_network_widths"}
    plt.close("all")


def test_study_metrics_and_figures(landscape_1d):
    with jax.enable_x64(True):
        study = variational_study(
            [0.05, 0.15], [1.0], key=jax.random.key(0), dims=(1,), network=False, n_steps=300
        )
    assert isinstance(study.landscapes[1], VariationalPreference) and study.network is None
    metrics = study.metrics()
    assert set(metrics) == {"landscape_1d"}
    m = metrics["landscape_1d"]
    assert m["fit_gammas"] == [0.0, 1.0] and len(m["fit_value"]) == 2
    assert m["preferred"]["local_entropy"] == [["narrow"], ["wide"]]
    figures = sl.plot.figures(study)
    assert set(figures) == {"variational_preference_1d", "variational_widths_1d"}
    assert set(sl.plot.figures(study.landscapes[1])) == {
        "variational_preference",
        "variational_widths",
    }
    plt.close("all")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda f, n, w: variational_preference(f, n, w, [-0.1], [1.0]), "temperatures="),
        (lambda f, n, w: variational_preference(f, n, w, [0.1], [0.0]), "gammas="),
        (lambda f, n, w: variational_preference(f, n, w, [0.1], [1.0], n_steps=0), "n_steps=0"),
        (lambda f, n, w: variational_preference(f, n, w + 0.7, [0.1], [1.0]), "wide has Hessian"),
        (lambda f, n, w: variational_preference(f, [0.0] * 3, [1.0] * 3), "dimension d <= 2"),
        (lambda f, n, w: variational_study(key=jax.random.key(0), dims=(3,)), "dims="),
        (lambda f, n, w: variational_study(key=None), "key=None"),
        (lambda f, n, w: variational_network(f, key=jax.random.key(0)), "problem="),
        (lambda f, n, w: variational_network(None, key=None), "key=None"),
        (lambda f, n, w: variational_network(None, key=KEY, weight_decay=0), "weight_decay=0"),
        (lambda f, n, w: variational_network(None, key=KEY, n_samples=2), "n_samples=2"),
    ],
)
def test_bad_inputs(landscape_1d, call, match):
    with jax.enable_x64(True), pytest.raises(ValueError, match=match):
        call(*landscape_1d)


def test_flip_temperature_rejects_unknown_objective_or_gamma(landscape_1d):
    loss, narrow, wide = landscape_1d
    with jax.enable_x64(True):
        result = variational_preference(loss, narrow, wide, [0.05], [1.0])
    with pytest.raises(ValueError, match="objective='entropy'"):
        result.flip_temperature("entropy", 1.0)
    with pytest.raises(ValueError, match="gamma=2.0"):
        result.flip_temperature("local_entropy", 2.0)
    assert math.isnan(result.flip_temperature("local_entropy", 1.0))  # one temperature
    assert not isinstance(result, VariationalNetwork)
