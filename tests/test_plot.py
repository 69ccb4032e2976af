"""Figures: they draw what the data say, mark divergence, and refuse bad input."""

import dataclasses

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

import sdelens as sl

PROB = sl.Quadratic(
    h=jnp.array([1.0, 2.0, 4.0]), noise=sl.GaussianNoise(scale=jnp.array([0.5, 1.0, 2.0]))
)
X0 = jnp.array([1.5, -1.0, 0.5])


@pytest.fixture(scope="module")
def both():
    return sl.optimizer_vs_sde(
        sl.SignSGD(lr=0.01), PROB, X0, n_steps=400, n_paths=200, save_every=10
    )


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_trajectories_bands_follow_the_means(both):
    fig = sl.plot.trajectories(both.ref, both.run)
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() in ("optimizer", "SDE")]
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_ydata(), both.comparison.mean_loss_a)
    assert ax.get_yscale() == "log" and len(ax.collections) == 2  # two ±2 SE bands


def test_divergence_is_marked_not_plotted_as_data(both):
    x = both.ref.x.copy()
    x[:5, 25:] = np.nan
    loss = both.ref.loss.copy()
    loss[:5, 25:] = np.nan
    bad = dataclasses.replace(
        both.ref, x=x, loss=loss, diverged=True, first_bad_step=250, n_diverged=5
    )
    fig = sl.plot.trajectories(bad, both.run)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "optimizer diverged at step 250" in labels
    marker = next(line for line in fig.axes[0].get_lines() if "diverged" in line.get_label())
    assert marker.get_xdata()[0] == pytest.approx(2.5)
    plotted = next(line for line in fig.axes[0].get_lines() if line.get_label() == "optimizer")
    assert np.all(np.isfinite(plotted.get_ydata()))


def test_stationary_histograms_are_densities_with_theory(both):
    th = both.theory
    fig = sl.plot.stationary(both.ref, theory=th)
    assert len(fig.axes) == 4  # three marginals and the 2-D view
    for ax in fig.axes[:3]:
        heights = [p.get_height() * p.get_width() for p in ax.patches]
        assert sum(heights) == pytest.approx(1.0, rel=1e-6)
        assert any(line.get_label() == "theory" for line in ax.get_lines())
    assert len(fig.axes[3].patches) == 4  # 1σ and 2σ ellipses, data and theory
    with pytest.raises(ValueError, match="coords"):
        sl.plot.stationary(both.ref, coords=[5])
    with pytest.raises(ValueError, match="burn_in"):
        sl.plot.stationary(both.ref, burn_in=1.0)


def test_covariance_ellipse_axes_are_the_standard_deviations():
    fig, ax = plt.subplots()
    patch = sl.plot.covariance_ellipse(ax, [0, 0], np.diag([4.0, 1.0]), n_std=2)
    assert sorted([patch.width, patch.height]) == pytest.approx([4.0, 8.0])
    with pytest.raises(ValueError, match="2x2"):
        sl.plot.covariance_ellipse(ax, [0, 0], np.eye(3))


def test_noise_scaling_reports_fitted_slopes():
    scales = np.array([0.5, 1.0, 2.0, 4.0])
    fig = sl.plot.noise_scaling(
        scales, {"sgd": 0.3 * scales**2, "signsgd": 0.2 * scales}, theory={"t": 0.1 * scales**2}
    )
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert (
        "sgd: slope 2.00" in labels
        and "signsgd: slope 1.00" in labels
        and "t: slope 2.00" in labels
    )
    with pytest.raises(ValueError, match="shape"):
        sl.plot.noise_scaling(scales, {"a": scales[:2]})
    assert sl.loglog_slope(scales, 3 * scales**2) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="> 0"):
        sl.loglog_slope(scales, -scales)
    with pytest.raises(ValueError, match=">= 2"):
        sl.loglog_slope([1.0], [1.0])


def test_phases_image_matches_sign_phase(both):
    fig = sl.plot.phases(both.ref, PROB.noise, PROB, path=3)
    image = fig.axes[1].get_images()[0].get_array()
    expected = sl.sign_phase(PROB.noise, PROB.grad(jnp.asarray(both.ref.x[3, 0])))
    np.testing.assert_array_equal(np.asarray(image)[:, 0], expected)
    with pytest.raises(ValueError, match="path=999"):
        sl.plot.phases(both.ref, PROB.noise, PROB, path=999)


def test_scaling_weak_order_and_state_covariance_figures():
    adamw = sl.Adam(lr=0.01, beta1=0.9, beta2=0.99, weight_decay=1.0)
    chk = sl.verify_scaling(adamw, PROB, 0.2 * X0, 4.0, n_steps=400, n_paths=50, n_saves=50)
    fig = sl.plot.scaling(chk)
    assert "compagnoni" in fig.axes[0].get_title()
    w = sl.WeakOrder(
        lrs=np.array([0.1, 0.2]), error=np.array([0.01, 0.02]), se=np.array([1e-3, 1e-3]), slope=1.0
    )
    labels = sl.plot.weak_order(w).axes[0].get_legend_handles_labels()[1]
    assert any(label.endswith("slope 1.00") for label in labels)
    th = sl.linearised_stationary(adamw, PROB)
    fig = sl.plot.state_covariance(th, chk.base_run)
    assert len(fig.axes[0].get_images()) == 1 and len(fig.axes) == 3  # two panels + colorbar
    with pytest.raises(ValueError, match="state_cov"):
        sl.plot.state_covariance(sl.stationary(adamw, PROB))


def test_sweep_figure_axis_names_the_parameter():
    sweep = sl.weight_decay_sweep(
        [sl.RMSprop(lr=0.01, beta=0.99, weight_decay=0.5)],
        PROB,
        [0.5, 2.0],
        jnp.zeros(3),
        n_steps=400,
        n_paths=50,
        save_every=20,
    )
    assert sweep.figure().axes[0].get_xlabel() == "weight decay"
    th = sweep.loss["rmspropw"]["theory"]
    assert th[1] < th[0]  # more weight decay, lower floor
