"""`sdelens.plot`: figures draw what the data say, mark divergence, refuse bad input, and
`figures(result)` gives the standard figures of every study result by name."""

import dataclasses
import io

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest
from helpers import assert_cli_figures_labelled, record_cli_figures

import sdelens as sl
from sdelens import flatness, studies

PROB = sl.Quadratic(
    h=jnp.array([1.0, 2.0, 4.0]), noise=sl.GaussianNoise(scale=jnp.array([0.5, 1.0, 2.0]))
)
X0 = jnp.array([1.5, -1.0, 0.5])


@pytest.fixture(scope="module")
def both():
    return sl.optimizer_vs_sde(
        sl.SignSGD(lr=0.01),
        PROB,
        X0,
        n_steps=400,
        n_paths=200,
        save_every=10,
        key=jax.random.key(0),
    )


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _labels(fig, axis=0):
    return fig.axes[axis].get_legend_handles_labels()[1]


def test_trajectories_bands_follow_the_means(both):
    fig = sl.plot.trajectories(both.ref, both.run)
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() in ("optimizer", "SDE")]
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_ydata(), both.comparison.mean_loss_a)
    assert ax.get_yscale() == "log" and len(ax.collections) == 2  # two ±2 SE bands
    alone = sl.plot.trajectories(both.ref).axes[0]
    np.testing.assert_allclose(alone.get_lines()[0].get_ydata(), both.ref.loss.mean(0), rtol=1e-6)


def test_divergence_is_marked_not_plotted_as_data(both):
    x = both.ref.x.copy()
    x[:5, 25:] = np.nan
    loss = both.ref.loss.copy()
    loss[:5, 25:] = np.nan
    bad = dataclasses.replace(
        both.ref,
        state=sl.ParamState(x),
        loss=loss,
        diverged=True,
        first_bad_step=250,
        n_diverged=5,
    )
    fig = sl.plot.trajectories(bad, both.run)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "optimizer diverged at step 250" in labels
    marker = next(line for line in fig.axes[0].get_lines() if "diverged" in line.get_label())
    assert marker.get_xdata()[0] == pytest.approx(2.5)
    plotted = next(line for line in fig.axes[0].get_lines() if line.get_label() == "optimizer")
    assert np.all(np.isfinite(plotted.get_ydata()))
    # a diverged optimizer gets no stationary figure
    result = dataclasses.replace(both, ref=bad)
    assert set(sl.plot.figures(result)) == {"trajectories"}


def test_stationary_histograms_are_densities_with_theory(both):
    th = both.theory
    fig = sl.plot.stationary(both.ref, theory=th)
    assert len(fig.axes) == 4  # three marginals and the 2-D view
    for ax in fig.axes[:3]:
        heights = [p.get_height() * p.get_width() for p in ax.patches]
        assert sum(heights) == pytest.approx(1.0, rel=1e-6)
        assert any(line.get_label() == "theory" for line in ax.get_lines())
    assert len(fig.axes[3].patches) == 4  # 1σ and 2σ ellipses, data and theory
    assert "theory: closed form" in fig._suptitle.get_text()


def test_stationary_shows_optimizer_and_sde_side_by_side(both):
    fig = sl.plot.stationary(both.ref, theory=both.theory, run=both.run)
    assert _labels(fig) == ["optimizer", "SDE", "theory"]
    for i, ax in enumerate(fig.axes[:3]):
        bars = [p for p in ax.patches if isinstance(p, plt.Rectangle)]
        assert sum(p.get_height() * p.get_width() for p in bars) == pytest.approx(1.0, rel=1e-6)
        sde_var = np.var(both.run.x[:, 20:, i])  # t >= T/2: saves 20..40
        assert f"SDE {sde_var:.3g}" in ax.get_title()
    assert len(fig.axes[3].patches) == 6  # 1σ, 2σ of optimizer, SDE and theory
    legend = [t.get_text() for t in fig.axes[3].get_legend().get_texts()]
    assert legend == ["optimizer 1σ, 2σ", "SDE 1σ, 2σ", "theory 1σ, 2σ"]
    title = sl.plot.stationary(both.ref, run=both.run)._suptitle.get_text()
    assert "optimizer and SDE" in title and "no closed-form theory" in title


def test_stationary_of_statistics_only_runs_draws_their_moments(both):
    kw = dict(n_steps=400, n_paths=200, save_every=10, key=jax.random.key(0), keep="stats")
    stats_only = sl.optimizer_vs_sde(sl.SGD(lr=0.01), PROB, X0, **kw)
    fig = sl.plot.figures(stats_only)["stationary"]
    labels = _labels(fig)
    assert labels == [
        "optimizer (Gaussian of its moments)",
        "SDE (Gaussian of its moments)",
        "theory",
    ]
    est = sl.empirical_stationary(stats_only.ref)
    line = fig.axes[1].get_lines()[0]
    peak = 1 / np.sqrt(2 * np.pi * est.cov[1, 1])  # the Gaussian's height at its mean
    assert line.get_ydata().max() == pytest.approx(peak, rel=1e-3)
    edges = np.linspace(-0.1, 0.1, 21)  # ±2 sd of x[1]: some values fall outside
    hist = sl.simulate(sl.SGD(lr=0.01), PROB, X0, hist=([1], edges), **kw)
    fig = sl.plot.stationary(hist)
    assert _labels(fig) == ["SDE (Gaussian of its moments)"]  # coordinate 0 was not histogrammed
    stats = hist.stats
    outside = stats.hist_outside[20:, 0].sum() / stats.count[20:].sum()
    assert 0.01 < outside < 0.15  # about 5% beyond 2 sd, counted, not lost
    x_direct = sl.simulate(sl.SGD(lr=0.01), PROB, X0, **{**kw, "keep": "paths"}).x[:, 20:, 1]
    assert outside == pytest.approx(np.mean(np.abs(x_direct) >= 0.1), abs=2e-3)
    label = f"SDE (kept histogram, {outside:.1%} outside its edges)"
    (stairs,) = [p for p in fig.axes[1].patches if p.get_label() == label]
    counts = stats.hist_counts[20:, 0].sum(0)
    want = counts / stats.count[20:].sum() / 0.01
    np.testing.assert_allclose(stairs.get_data().values, want, rtol=1e-12)
    with pytest.raises(ValueError, match="coords"):
        sl.plot.stationary(both.ref, coords=[5])
    with pytest.raises(ValueError, match="burn_in"):
        sl.plot.stationary(both.ref, burn_in=1.0)
    no_paths = dataclasses.replace(both.ref, state=None)
    with pytest.raises(ValueError, match="run.x is None"):
        sl.plot.stationary(no_paths)


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
    with pytest.raises(ValueError, match="labels must name every series"):
        sl.plot.noise_scaling(scales, [scales, scales], labels=["a"])
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
    chk = sl.verify_scaling(
        adamw, PROB, 0.2 * X0, 4.0, n_steps=400, n_paths=50, n_saves=50, key=jax.random.key(0)
    )
    fig = sl.plot.scaling(chk)
    assert "compagnoni" in fig.axes[0].get_title()
    assert set(sl.plot.figures(chk)) == {"scaling"}
    w = sl.WeakOrder(
        lrs=np.array([0.1, 0.2]), error=np.array([0.01, 0.02]), se=np.array([1e-3, 1e-3]), slope=1.0
    )
    labels = sl.plot.weak_order(w).axes[0].get_legend_handles_labels()[1]
    assert any(label.endswith("slope 1.00") for label in labels)
    assert set(sl.plot.figures(w)) == {"weak_order"}
    th = sl.linearised_stationary(adamw, PROB)
    fig = sl.plot.state_covariance(th, chk.base_run)
    assert len(fig.axes[0].get_images()) == 1 and len(fig.axes) == 3  # two panels + colorbar
    # the empirical panel is the correlation of the state ravelled field by field (x, m, v)
    flat = np.concatenate(list(chk.base_run.state), axis=-1)
    keep = chk.base_run.ts >= 0.5 * chk.base_run.ts[-1]
    states = flat[:, keep].reshape(-1, 9)
    corr = np.corrcoef(states, rowvar=False)
    np.testing.assert_allclose(fig.axes[1].get_images()[0].get_array(), corr, atol=1e-6)
    with pytest.raises(ValueError, match="state_cov"):
        sl.plot.state_covariance(sl.stationary(adamw, PROB))
    sgd_run = sl.run_optimizer(sl.SGD(0.01), PROB, X0, 20, 4, jax.random.key(0), 10)
    with pytest.raises(ValueError, match="no fields beyond x"):
        sl.plot.state_covariance(th, sgd_run)


def test_sweep_figure_axis_names_the_parameter():
    sweep = sl.weight_decay_sweep(
        [sl.RMSprop(lr=0.01, beta=0.99, weight_decay=0.5)],
        PROB,
        [0.5, 2.0],
        jnp.zeros(3),
        n_steps=400,
        n_paths=50,
        save_every=20,
        key=jax.random.key(0),
    )
    assert sl.plot.sweep(sweep).axes[0].get_xlabel() == "weight decay"
    th = sweep.loss["rmspropw"]["theory"]
    assert th[1] < th[0]  # more weight decay, lower floor
    assert set(sl.plot.figures(sweep)) == {"sweep"}


# -- figures(result) for every study result ------------------------------------------------


def _power_sweep(parameter="noise scale"):
    values = np.array([0.5, 1.0, 2.0])
    loss = {
        "sgd": {"optimizer": 0.3 * values**2, "sde": 0.31 * values**2, "theory": 0.3 * values**2}
    }
    se = {"sgd": {k: 0.01 * v for k, v in loss["sgd"].items()}}
    diverged = {"sgd": {"optimizer": False, "sde": False}}
    return studies.Sweep(parameter, values, loss, se, diverged)


def test_sweep_figures_report_slopes():
    sweep = _power_sweep()
    fig = sl.plot.sweep(sweep)
    labels = _labels(fig)
    assert {"sgd optimizer: slope 2.00", "sgd sde: slope 2.00", "sgd theory: slope 2.00"} <= set(
        labels
    )
    assert fig.axes[0].get_xlabel() == "noise scale"
    both_sweeps = studies.StationarySweeps(noise=sweep, weight_decay=_power_sweep("weight decay"))
    figs = sl.plot.figures(both_sweeps)
    assert set(figs) == {"noise_scaling", "weight_decay"}
    assert figs["weight_decay"].axes[0].get_xlabel() == "weight decay"
    assert set(sl.plot.figures(studies.StationarySweeps(noise=sweep))) == {"noise_scaling"}


def test_optimizer_vs_sde_and_demo_figures(both):
    assert set(sl.plot.figures(both)) == {"trajectories", "stationary"}
    rng = np.random.default_rng(0)
    accuracy = {k: rng.uniform(0.8, 1.0, size=(200, 41)) for k in ("optimizer", "sde")}
    network_like = dataclasses.replace(both, test_accuracy=accuracy)
    figs = sl.plot.figures(network_like)
    assert set(figs) == {"trajectories", "test_accuracy"}
    lines = {line.get_label(): line for line in figs["test_accuracy"].axes[0].get_lines()}
    assert set(lines) == {"optimizer", "SDE"}
    np.testing.assert_allclose(lines["SDE"].get_ydata(), accuracy["sde"].mean(0), rtol=1e-12)
    demo = studies.Demo(PROB, {"sgd": both, "signsgd": both})
    names = {"sgd_trajectories", "sgd_stationary", "signsgd_trajectories", "signsgd_stationary"}
    assert set(sl.plot.figures(demo)) == names | {"signsgd_phases"}


@pytest.fixture(scope="module")
def fair():
    """A `compute_fair` result at a budget of 200 gradients, 4 runs, 4 saves, made by hand."""
    entropy = sl.EntropySGD(lr=0.5, gamma=1.0, inner_lr=0.05, inner_steps=10, temperature=0.01)
    optimizers = {"sgd": sl.SGD(0.05), "entropysgd": entropy}
    prob = sl.Quadratic(h=jnp.array([1.0, 4.0]), noise=sl.GaussianNoise(0.1))
    rng = np.random.default_rng(0)
    runs, grad_evals, epochs, seconds = {}, {}, {}, {}
    for name, opt in optimizers.items():
        steps = np.arange(5) * (200 // opt.grads_per_step // 4)
        x = rng.normal(size=(4, 5, 2)) * np.exp(-np.arange(5))[:, None]
        loss = 0.5 * np.sum(np.array([1.0, 4.0]) * x**2, axis=-1)
        runs[name] = sl.Run(
            "optimizer", steps, opt.lr * steps, loss, sl.ParamState(x), {}, False, None, 0
        )
        grad_evals[name] = steps * opt.grads_per_step
        epochs[name] = grad_evals[name].astype(float)
        seconds[name] = 1e-3 * grad_evals[name]
    return studies.ComputeFair(prob, optimizers, runs, grad_evals, epochs, seconds, None)


def test_compute_fair_figures(fair):
    figs = sl.plot.figures(fair)
    assert set(figs) == {"loss_vs_grad_evals", "loss_vs_seconds"}
    ax = figs["loss_vs_grad_evals"].axes[0]
    line = next(line for line in ax.get_lines() if line.get_label() == "entropysgd")
    np.testing.assert_array_equal(line.get_xdata(), [0, 50, 100, 150, 200])
    np.testing.assert_allclose(line.get_ydata(), fair.runs["entropysgd"].loss.mean(0), rtol=1e-6)
    epochs = sl.plot.compute_fair(fair, x="epochs").axes[0]
    assert epochs.get_xlabel() == "effective epochs"
    with pytest.raises(ValueError, match="x='steps' is invalid"):
        sl.plot.compute_fair(fair, x="steps")
    with pytest.raises(ValueError, match="y='accuracy' needs a network problem"):
        sl.plot.compute_fair(fair, y="accuracy")
    with pytest.raises(ValueError, match="y='time' is invalid"):
        sl.plot.compute_fair(fair, y="time")
    accuracy = {name: np.full((4, 5), 0.9) for name in fair.runs}
    with_accuracy = dataclasses.replace(fair, accuracy=accuracy)
    names = {"loss_vs_grad_evals", "loss_vs_seconds", "accuracy_vs_grad_evals"}
    assert set(sl.plot.figures(with_accuracy)) == names


def _spectrum():
    grid = jnp.linspace(-1.0, 6.0, 50)
    density = flatness.SpectralDensity(
        grid, jnp.exp(-(grid**2)), jnp.array([[0.0, 0.001, 5.0]]), jnp.array([[0.5, 0.45, 0.05]])
    )
    return studies.HessianSpectrum(density, np.array([5.0, 3.0]), 8.0, 0.1, 0.95)


def _sensitivity():
    loss = np.array([[0.1, 0.2], [np.inf, 0.05]])
    accuracy = np.array([[0.9, 0.8], [np.nan, 0.95]])
    diverged = np.array([[False, False], [True, False]])
    return studies.Sensitivity(
        "gamma", np.array([0.1, 1.0]), "inner_steps", np.array([2, 5]), loss, accuracy, diverged
    )


def _preference():
    return studies.Preference(
        np.array([0.01, 0.1]),
        np.array([1.0]),
        np.array([[0.1], [-0.1]]),
        np.array([[-0.2], [-0.3]]),
    )


def test_entropy_study_figures(fair):
    spectrum, grid, pref = _spectrum(), _sensitivity(), _preference()
    figs = sl.plot.figures(spectrum)
    assert set(figs) == {"hessian_spectrum"}
    assert _labels(figs["hessian_spectrum"]) == [": λmax 5, 95% near 0"]
    figs = sl.plot.figures(grid)
    assert set(figs) == {"sensitivity"}
    texts = [t.get_text() for t in figs["sensitivity"].axes[0].texts]
    assert sorted(texts) == sorted(["diverged", "0.9", "0.8", "0.95"])
    assert figs["sensitivity"].axes[0].get_xlabel() == "gamma"
    loss_map = sl.plot.sensitivity(grid, y="loss")
    image = loss_map.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(image[1, 1], np.log10(0.05))  # transposed: [y, x]
    assert np.ma.is_masked(image[0, 1]) or np.isnan(image[0, 1])  # the diverged cell
    figs = sl.plot.figures(pref)
    assert set(figs) == {"preference"} and len(figs["preference"].axes) == 4  # 2 maps + bars
    study = studies.EntropyStudy(
        fair.optimizers["entropysgd"], fair, {"sgd": spectrum}, [grid], None
    )
    names = {
        "loss_vs_grad_evals",
        "loss_vs_seconds",
        "hessian_spectra",
        "sensitivity_gamma_inner_steps",
    }
    assert set(sl.plot.figures(study)) == names
    full = dataclasses.replace(study, preference=pref)
    assert set(sl.plot.figures(full)) == names | {"preference", "landscape"}
    bare = dataclasses.replace(study, spectra={}, grids=[])
    assert set(sl.plot.figures(bare)) == {"loss_vs_grad_evals", "loss_vs_seconds"}


def test_figures_refuses_other_objects(both):
    with pytest.raises(ValueError, match="result=Run is invalid: figures.. draws the results of"):
        sl.plot.figures(both.ref)
    with pytest.raises(ValueError, match="OptimizerVsSDE, Sweep"):
        sl.plot.figures({"a": 1})


def test_a_sweep_where_everything_diverged_is_drawn_and_says_so():
    """No positive finite point: no log scale to fail on, and the legend and title say why the
    axes are empty (it used to be 'Data cannot be log-scaled' after the whole sweep)."""
    values = np.array([0.5, 1.0])
    nan = np.full(2, np.nan)
    loss = {"sgd": {"optimizer": nan, "sde": nan}}
    diverged = {"sgd": {"optimizer": True, "sde": True}}
    fig = sl.plot.sweep(studies.Sweep("noise scale", values, loss, loss, diverged))
    ax = fig.axes[0]
    assert _labels(fig) == [
        "sgd optimizer: no finite points (diverged)",
        "sgd sde: no finite points (diverged)",
    ]
    assert ax.get_yscale() == "linear" and "diverged" in ax.get_title()
    sweep = studies.Sweep("noise scale", values, loss, loss, diverged)
    assert all(np.isnan(v) for v in sweep.slopes["sgd"].values())
    assert set(sweep.slopes["sgd"]) == {"optimizer", "sde"}
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)


# The README's command lines check the figures of every command (tests/test_readme.py); these
# are the runs the README has none of, at sizes just large enough to draw every kind of figure.
CLI_RUNS = {
    "stats": ["compare", "--optimizer", "adam", "--keep", "stats", "--steps", 200, "--paths", 50],
}


@pytest.mark.parametrize("name", list(CLI_RUNS))
def test_every_figure_the_cli_writes_is_labelled(name, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from sdelens.cli import app

    drawn = record_cli_figures(monkeypatch)
    args = [str(a) for a in CLI_RUNS[name]] + ["--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert_cli_figures_labelled(drawn, tmp_path / "out", name)
