"""Entropy-SGD (optimizer and continuous-time model) and the flatness tools."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl
from sdelens import flatness


@pytest.fixture(scope="module", autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def test_entropy_sgd_outer_step_is_lr_gamma_x_minus_gibbs_mean():
    """Large L, small α: μ ≈ ⟨x'⟩ = γ x/(h + γ), so x₁ = x₀ - η γ (x₀ - ⟨x'⟩)."""
    h, gamma, lr = jnp.array([1.0, 3.0]), 2.0, 0.1
    prob = sl.Quadratic(h=h, noise=sl.GaussianNoise(0.1))
    opt = sl.EntropySGD(
        lr=lr, gamma=gamma, inner_lr=0.01, inner_steps=3000, temperature=0.05, alpha=0.002
    )
    x0 = jnp.array([1.0, -2.0])
    run = sl.run_optimizer(opt, prob, x0, n_steps=1, n_runs=400, key=jax.random.key(0))
    step = run.x[:, 1] - x0
    want = -lr * gamma * (x0 - gamma * x0 / (h + gamma))
    se = step.std(0) / np.sqrt(400)
    bias = 0.01 * (h + gamma) * np.abs(want)  # SGLD step-size bias of ⟨x'⟩
    assert np.all(np.abs(step.mean(0) - want) < 4 * se + bias), (step.mean(0), want)
    assert run.grad_evals == 3000


def test_entropy_sgd_converges_and_sde_tracks_it():
    h = jnp.array([1.0, 4.0])
    prob = sl.Quadratic(h=h, noise=sl.GaussianNoise(0.05))
    opt = sl.EntropySGD(lr=0.1, gamma=1.0, inner_lr=0.05, inner_steps=50, temperature=0.01)
    x0 = jnp.array([2.0, 2.0])
    both = sl.optimizer_vs_sde(opt, prob, x0, n_steps=60, n_paths=300, save_every=6)
    mean_opt, mean_sde = both.ref.x.mean(0), both.run.x.mean(0)
    assert both.ref.loss.mean(0)[-1] < 0.01 * both.ref.loss.mean(0)[0]
    # both relax at rate γ h/(h + γ) per unit time once the inner chain has equilibrated
    theory = x0 * np.exp(-(1.0 * h / (h + 1.0)) * both.ref.ts[:, None])
    # O(lr) apart: the outer step contracts by 1 - η γh/(h+γ) where the flow has exp(-η γh/(h+γ))
    assert np.max(np.abs(mean_opt - mean_sde)) < 0.05 * 2.0
    assert np.max(np.abs(mean_sde - theory)) < 0.05 * 2.0
    with pytest.raises(ValueError, match="momentum"):
        sl.sde_for(sl.EntropySGD(0.5, 1.0, 0.05, 5, 0.01, momentum=0.9), prob)


def test_entropy_sgd_sghmc_and_variants_run():
    prob = sl.Quadratic(h=jnp.array([1.0, 2.0]), noise=sl.GaussianNoise(0.1))
    x0 = jnp.array([1.0, 1.0])
    for opt in (
        sl.EntropySGD(0.5, 1.0, 0.05, 20, 0.01, inner="sghmc", friction=0.2),
        sl.EntropySGD(0.5, 1.0, 0.05, 20, 0.01, momentum=0.9, nesterov=True, alpha=0.25),
        sl.EntropySGD(0.5, 1.0, 0.05, 20, 0.0, scoping=0.01, gamma_in_outer_step=False),
    ):
        run = sl.run_optimizer(opt, prob, x0, n_steps=40, n_runs=50, key=jax.random.key(0))
        assert run.loss.mean(0)[-1] < 0.05 * run.loss.mean(0)[0], opt


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"gamma": 0.0}, "gamma"),
        ({"temperature": -1.0}, "temperature"),
        ({"inner_lr": 0.0}, "inner_lr"),
        ({"lr": -0.1}, "lr"),
        ({"inner_steps": 0}, "inner_steps"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"inner": "hmc"}, "inner"),
    ],
)
def test_entropy_sgd_bad_input(kwargs, name):
    base = {"lr": 0.5, "gamma": 1.0, "inner_lr": 0.02, "inner_steps": 5, "temperature": 0.1}
    with pytest.raises(ValueError, match=name):
        sl.EntropySGD(**{**base, **kwargs})


def test_compute_fair_gives_every_optimizer_the_same_gradient_budget():
    prob = sl.Quadratic(h=jnp.array([1.0, 4.0]), noise=sl.GaussianNoise(0.1))
    entropy = sl.EntropySGD(lr=0.5, gamma=1.0, inner_lr=0.05, inner_steps=10, temperature=0.01)
    fair = sl.compute_fair(
        prob, [sl.SGD(0.05), entropy], jnp.ones(2), grad_budget=400, n_runs=8, n_saves=4
    )
    metrics = fair.metrics()
    assert metrics["sgd"]["grad_evals"] == metrics["entropysgd"]["grad_evals"] == 400
    np.testing.assert_array_equal(fair.runs["entropysgd"].steps, [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(fair.grad_evals["entropysgd"], [0, 100, 200, 300, 400])
    assert np.all(np.diff(fair.seconds["sgd"]) > 0) and fair.accuracy is None
    # SGD after 400 steps of 0.05 and Entropy-SGD after 40 outer steps both reach the floor
    for row in metrics.values():
        assert row["final_loss"] < 0.01
    with pytest.raises(ValueError, match="grad_budget=5 is too small"):
        sl.compute_fair(prob, [entropy], jnp.ones(2), grad_budget=5)


def test_hessian_spectrum_of_a_quadratic():
    h = jnp.concatenate([jnp.array([5.0, 3.0]), jnp.full(38, 1e-4)])
    prob = sl.Quadratic(h=h, noise=sl.GaussianNoise(0.1))
    spec = sl.hessian_spectrum(prob, jnp.ones(40), k=2, n_iter=40)
    np.testing.assert_allclose(spec.top, [5.0, 3.0], rtol=1e-6)
    assert abs(spec.trace - float(h.sum())) < 1e-6  # Rademacher probes are exact for diagonal H
    np.testing.assert_allclose(spec.near_zero_fraction, 38 / 40, atol=0.15)


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


def test_cli_entropy(tmp_path):
    import json

    from typer.testing import CliRunner

    from sdelens.cli import app

    out = tmp_path / "ent"
    args = ["entropy", "--problem", "mlp-breast-cancer", "--train-size", "128", "--budget", "60"]
    args += ["--runs", "2", "--saves", "2"]
    args += ["--no-landscape", "--sweep", "gamma=0.01,0.1;inner_steps=2,3"]
    args += ["--sweep", "temperature=0,0.001;inner_lr=0.05,0.1,0.2", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    assert set(metrics["compute_fair"]) == {"sgd", "adam", "entropysgd"}
    assert all(m["grad_evals"] == 60 for m in metrics["compute_fair"].values())
    grids = metrics["sensitivity"]
    assert [np.asarray(g["final_loss"]).shape for g in grids] == [(2, 2), (2, 3)]
    assert len(metrics["hessian"]["sgd"]["top_eigenvalues"]) == 10
    pngs = ["loss_vs_grad_evals", "loss_vs_seconds", "hessian_spectra"]
    for png in pngs + ["sensitivity_gamma_inner_steps", "sensitivity_temperature_inner_lr"]:
        assert (out / f"{png}.png").is_file()
    bad = CliRunner().invoke(app, ["entropy", "--sweep", "beta=1,2", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "--sweep" in bad.output
    bad = CliRunner().invoke(app, ["entropy", "--gamma", "0", "--out", str(tmp_path / "c")])
    assert bad.exit_code == 2 and "gamma=0.0" in bad.output
