"""Helpers shared by several test modules (imported explicitly, not through conftest)."""

import textwrap
import uuid
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def tiny_network():
    """A 2-layer tanh network (3 → 8 → 1) on 40 fixed random points: d = 24 + 8 + 8 + 1 = 41
    parameters, at a random parameter vector (its Hessian is indefinite), in the default
    precision (float64 under `jax.enable_x64`)."""
    inputs = jax.random.normal(jax.random.key(0), (40, 3))
    targets = jnp.sin(inputs[:, 0]) + 0.5 * inputs[:, 1]

    def loss(p):
        w1, b1, w2, b2 = p[:24].reshape(3, 8), p[24:32], p[32:40], p[40]
        return jnp.mean((jnp.tanh(inputs @ w1 + b1) @ w2 + b2 - targets) ** 2)

    return loss, 0.5 * jax.random.normal(jax.random.key(1), (41,))


def quadratic(h):
    """`f(x) = ½ Σ hᵢ xᵢ²`."""
    return lambda x: 0.5 * jnp.sum(h * x**2)


class LinearChain(NamedTuple):
    variance: float
    tau: float
    radius: float


def langevin_on_quadratic(k, step_size, temperature, sampler="sgld", friction=0.1):
    """The Langevin chain of `sdelens._langevin` on `U(x) = ½ k x²` (scalar `k`) is the linear
    Gaussian recurrence `z ← A z + b ξ` in `z = (x, p)`: SGHMC has
    `A = [[1 - ηk, 1 - c], [-ηk, 1 - c]]`, `b = √(2cηT) (1, 1)`, and SGLD is `c = 1`.

    Returns the exact stationary variance of `x`, `Σ₀₀` with `Σ = A Σ Aᵀ + b bᵀ`; the
    integrated autocorrelation time of `x²`, `τ = 1 + 2 Σ_{j≥1} ρⱼ²` (`ρⱼ` the lag-`j`
    autocorrelation of `x`; for a Gaussian, corr(x₀², xⱼ²) = ρⱼ²), so that the mean of `x²` over
    `n` stationary steps has relative standard error `√(2τ/n)`; and the spectral radius of `A`,
    the factor by which the distance to stationarity shrinks per step."""
    c = 1.0 if sampler == "sgld" else friction
    a = step_size * k
    A = np.array([[1 - a, 1 - c], [-a, 1 - c]])
    b = np.sqrt(2 * c * step_size * temperature) * np.ones(2)
    sigma = np.linalg.solve(np.eye(4) - np.kron(A, A), np.outer(b, b).ravel()).reshape(2, 2)
    # Cov(x_j, x_0) = (A^j Σ)₀₀ = Σₘ wₘ λₘʲ with A = V diag(λ) V⁻¹: the sum over j of the
    # squared autocorrelations is then a double geometric series
    lam, vecs = np.linalg.eig(A)
    w = vecs[0] * (np.linalg.solve(vecs, sigma[:, 0]))
    ll = np.outer(lam, lam)
    tail = np.real(np.sum(np.outer(w, w) * ll / (1 - ll))) / sigma[0, 0] ** 2
    return LinearChain(sigma[0, 0], 1.0 + 2.0 * tail, np.max(np.abs(lam)))


def precision_fixture():
    """A fixture running each test that takes it once in float32 and once in float64 (inside
    `jax.enable_x64`), yielding `"float32"` or `"float64"`: the float64 run checks the
    tolerances float32 rounding cannot reach. Use as `precision = precision_fixture()`."""

    @pytest.fixture(params=["float32", "float64"])
    def precision(request):
        with jax.enable_x64(request.param == "float64"):
            yield request.param

    return precision


def assert_same_run(a, b):
    """Two `sdelens.Run`s hold the same numbers: arrays, typed state (type name, field names,
    values), scalars and config (as JSON)."""
    import json

    for field in ("steps", "ts", "loss", "x"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert (a.state is None) == (b.state is None)
    if a.state is not None:
        assert type(a.state).__name__ == type(b.state).__name__
        assert a.state._fields == b.state._fields
        for name in a.state._fields:
            np.testing.assert_array_equal(getattr(a.state, name), getattr(b.state, name))
    for field in ("kind", "diverged", "first_bad_step", "n_diverged", "grad_evals", "seconds"):
        assert getattr(a, field) == getattr(b, field)
    assert a.n_paths == b.n_paths
    assert json.loads(json.dumps(a.config)) == b.config


def mc_sign_moments(noise, grad, seed=0, n=400_000):
    """Monte Carlo `E[sign g]` and `Cov(sign g)` from the noise's own sampler, as float64."""
    import sdelens as sl

    mean, cov = sl.monte_carlo_sign_moments(noise, grad, jax.random.key(seed), n)
    return np.asarray(mean, dtype=float), np.asarray(cov, dtype=float)


def assert_sign_mean_close(exact, est, n=400_000):
    """`sign g` is ±1: the SE of its sample mean over `n` draws is `√((1 - m²)/n)`; 5 SE (+
    float32 rounding)."""
    se = np.sqrt(np.clip(1 - exact**2, 0, None) / n)
    assert np.all(np.abs(est - exact) <= 5 * se + 1e-6), (exact, est)


# -- shared problems ---------------------------------------------------------------------------

# The 3-d test quadratic of the adaptive-method tests and the RMSprop(W)/Adam(W) settings on it.
H3 = jnp.array([1.0, 2.0, 4.0])
S3 = jnp.array([0.5, 1.0, 2.0])


def adaptive_optimizers():
    """RMSprop, RMSpropW, Adam, AdamW at lr = 0.01 (β = 0.99), by name."""
    import sdelens as sl

    return {
        "rmsprop": sl.RMSprop(lr=1e-2, beta=0.99),
        "rmspropw": sl.RMSprop(lr=1e-2, beta=0.99, weight_decay=0.5),
        "adam": sl.Adam(lr=1e-2, beta1=0.9, beta2=0.99),
        "adamw": sl.Adam(lr=1e-2, beta1=0.9, beta2=0.99, weight_decay=1.0),
    }


def bundled_datasets():
    """The datasets bundled with scikit-learn, by name (digits also as images)."""
    from sdelens import nn

    return {
        "breast-cancer": nn.load_dataset("breast-cancer"),
        "digits": nn.load_dataset("digits"),
        "digits-image": nn.load_dataset("digits", image=True),
    }


SMALL_MLP = {"width": 4, "depth": 1}  # 134 parameters on Breast Cancer


def small_minibatch_problem():
    """A 134-parameter MLP on Breast Cancer with real minibatch noise (B = 32)."""
    import sdelens as sl

    return sl.network_problem(
        "mlp-breast-cancer", sl.MinibatchNoise(32), key=jax.random.key(0), **SMALL_MLP
    )


def problem_module(directory, body: str) -> str:
    """Write `body` (dedented) as a new module in `directory` and return its name, unique so that
    no test sees another's module cached in `sys.modules` (for `problem="name:function"`)."""
    name = f"user_problem_{uuid.uuid4().hex[:12]}"
    (Path(directory) / f"{name}.py").write_text(textwrap.dedent(body))
    return name


def optimizer_normals(opt, key, n_runs, run, n_steps, d):
    """The standard normals `ξ_k` (`k < n_steps`) that run `run` of `sl.run_optimizer(opt, prob,
    x0, n_steps, n_runs, key)` draws its gradient noise from (uncoupled; `d` coordinates): the
    counter-based draws of step `[kη, (k+1)η]` of the run's path, in the ensemble layout when
    the optimizer's state has at most `PATHS_MINOR_MAX_STATE` numbers."""
    from sdelens._brownian import key_words, step_normals
    from sdelens._kernels import PATHS_MINOR_MAX_STATE

    words = key_words(jax.random.split(key, n_runs)[run])
    size = sum(leaf.size for leaf in jax.tree.leaves(opt.initial_state(jnp.zeros(d))))
    minor = size <= PATHS_MINOR_MAX_STATE
    ts = opt.lr * jnp.arange(n_steps + 1, dtype=jnp.float32)
    return [
        step_normals(words, ts[k], ts[k + 1], (d,), jnp.float32, by_path=minor)
        for k in range(n_steps)
    ]


def record_cli_figures(monkeypatch) -> dict:
    """The figures a CLI command draws, by name, filled while the command runs in-process
    (`sl.plot.figures` is wrapped; the command saves what it returns)."""
    import sdelens as sl

    drawn = {}
    figures = sl.plot.figures

    def keep(result):
        drawn.update(figures(result))
        return drawn

    monkeypatch.setattr(sl.plot, "figures", keep)
    return drawn


def _texts(fig) -> list[str]:
    titles = [ax.get_title() for ax in fig.axes]
    return titles + ([fig._suptitle.get_text()] if fig._suptitle else [])


def assert_cli_figures_labelled(drawn: dict, out: Path, name: str) -> None:
    """Every figure the command saved into `out` was drawn (`record_cli_figures`), every axis is
    named, every figure has a title, legend entries are named and distinct, and a figure
    promises theory only where it draws it."""
    assert {p.stem for p in out.glob("*.png")} == set(drawn), name
    for figure_name, fig in drawn.items():
        where = f"{name}: {figure_name}"
        assert any(_texts(fig)), f"{where} has no title"
        for ax in fig.axes:
            if hasattr(ax, "_colorbar"):
                assert ax.get_ylabel() or ax.get_xlabel(), f"{where}: colorbar unnamed"
                continue
            # a shared axis is named once, on one of the axes sharing it
            xlabels = [a.get_xlabel() for a in ax.get_shared_x_axes().get_siblings(ax)]
            ylabels = [a.get_ylabel() for a in ax.get_shared_y_axes().get_siblings(ax)]
            assert any(xlabels) and any(ylabels), f"{where}: axis unnamed"
            legend = ax.get_legend()
            entries = [t.get_text() for t in legend.get_texts()] if legend else []
            assert all(e and not e.startswith("_") for e in entries), f"{where}: {entries}"
            assert len(entries) == len(set(entries)), f"{where}: repeated {entries}"
            if any("theory" in e for e in entries):
                drawn_theory = [line.get_label() for line in ax.get_lines()]
                drawn_theory += [p.get_linestyle() for p in ax.patches]  # dashed theory ellipses
                assert any("theory" in t or t == "--" for t in drawn_theory), where
        if figure_name.endswith("stationary"):
            entries = fig.axes[0].get_legend_handles_labels()[1]
            named = {e.split(" (")[0] for e in entries}  # "SDE (Gaussian of its moments)"
            assert {"optimizer", "SDE"} <= named, f"{where}: {entries}"
            has_theory = "no closed-form theory" not in fig._suptitle.get_text()
            assert ("theory" in entries) == has_theory, f"{where}: {entries}"
        if figure_name.endswith("phases"):
            ticks = fig.axes[1].get_yticks()
            assert np.all(ticks == np.round(ticks)), f"{where}: fractional coordinate ticks"
        if figure_name in ("noise_scaling", "weight_decay"):
            shown = [t.get_text() for t in fig.axes[0].get_xticklabels(minor=True) if t.get_text()]
            assert not shown, f"{where}: minor tick labels {shown} crowd the axis"
