"""The benchmark scripts keep running (timings themselves are never asserted), and their
hand-written baselines compute what the cores of sdelens compute."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl
from sdelens._kernels import optimize_paths, solve_paths

ROOT = Path(__file__).resolve().parents[1]


def _bench_run():
    """`benchmarks/run.py` as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_script_runs_quick():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--no-peers"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    main, near_limit = _tables(out)
    rows = main
    cases = [row["case"] for row in rows]
    for function in ("simulate", "run_optimizer", "run_optimizer/simulate"):
        for optimizer in ("signsgd", "adam"):
            assert f"{function} {optimizer}" in cases
    row = next(r for r in rows if r["case"] == "run_optimizer/simulate adam")
    assert row["target"].startswith("<= 1.2")  # quick sizes may miss it: no timing asserted
    # the limit table: the fastest variant that draws fresh normals, and simulate against it
    limits = [row for row in near_limit if row["case"].endswith("(limit)")]
    assert len(limits) == 1 and "no draw" not in limits[0]["case"]
    assert float(limits[0]["x limit"]) == 1.0
    sgd = next(row for row in near_limit if row["case"] == "simulate sgd")
    assert sgd["target"].startswith("<= 1.3") and float(sgd["ns per coordinate-step"]) > 0
    # the extra small-d Adam case (d = 32 in the full grid) runs simulate and, in quick mode,
    # the moments row (form="moments" against the hand-derived SDE, target 3x)
    assert [(row["case"], row["d"]) for row in rows if row["d"] == "32"] == [
        ("simulate adam", "32"),
        ("moments SDE adam", "32"),
    ]
    assert next(r for r in rows if r["case"] == "moments SDE adam")["target"].startswith("<= 3 ")
    assert sum("SDE" in case and "moments" not in case for case in cases) == 4  # network rows
    for row in rows:
        assert float(row["sdelens/baseline"]) > 0
        assert float(row["peak RSS GB"]) > 0


def _tables(out: str) -> list[list[dict]]:
    """The Markdown tables of a script's output, each a list of rows keyed by its header."""
    tables, block = [], []
    for line in [*out.splitlines(), ""]:
        if line.startswith("|"):
            if not line.startswith("|---"):  # the header's rule
                block.append([cell.strip() for cell in line.split("|")[1:-1]])
        elif block:
            header, *body = block
            tables.append([dict(zip(header, row, strict=True)) for row in body])
            block = []
    return tables


def test_benchmark_problem_is_the_standard_quadratic():
    bench = _bench_run()
    prob = bench.problem(5)
    np.testing.assert_allclose(prob.h, jnp.linspace(1.0, 4.0, 5))
    np.testing.assert_allclose(prob.noise.scale, jnp.linspace(1.0, 2.0, 5))


@pytest.mark.parametrize("name", ["signsgd", "adam"])
def test_baseline_optimizer_computes_what_optimize_paths_computes(name):
    """The hand-written update with `jax.random.normal` noise and `optimize_paths` (the same law
    from the counter-based draws): same structure and start, the same final mean loss within 4
    standard errors of the difference, every coordinate's variance within 4 standard errors of
    the ratio (`√(4/n)`)."""
    bench = _bench_run()
    d, n, steps = 4, 4000, 50
    prob, opt = bench.problem(d), bench.optimizer(name)
    x0s = jnp.ones((n, d))
    keys = jax.random.split(jax.random.key(0), n)
    states, loss = bench.baseline_optimizer(name, prob, opt, steps)(x0s, keys)
    core_states, core_loss = optimize_paths(opt, prob, x0s, keys, steps, steps)
    assert type(states) is type(core_states)
    for field in core_states._fields:
        assert getattr(states, field).shape == getattr(core_states, field).shape == (n, 2, d)
        first, core_first = getattr(states, field)[:, 0], getattr(core_states, field)[:, 0]
        np.testing.assert_array_equal(first, core_first)
    a, b = np.asarray(loss[:, -1], float), np.asarray(core_loss[:, -1], float)
    se = np.sqrt(a.var(ddof=1) / n + b.var(ddof=1) / n)
    assert abs(a.mean() - b.mean()) < 4 * se
    var, core_var = np.var(states.x[:, -1], axis=0), np.var(core_states.x[:, -1], axis=0)
    np.testing.assert_array_less(np.abs(var / core_var - 1), 4 * np.sqrt(4 / n))


@pytest.mark.parametrize("name", ["signsgd", "adam"])
def test_baseline_sde_integrates_the_sde_of_solve_paths(name):
    """Same structure and start; other Brownian draws, so they agree in law: the final mean
    loss (mostly the drift) within 4 standard errors of the difference, and the variance of
    every coordinate (the diffusion: all paths start at one point) within 4 standard errors of
    the ratio, `√(4/n)` for Gaussian samples."""
    bench = _bench_run()
    d, n, steps = 4, 4000, 50
    prob, opt = bench.problem(d), bench.optimizer(name)
    sde = sl.sde_for(opt, prob)
    x0s = jnp.ones((n, d))
    keys = jax.random.split(jax.random.key(0), n)
    states, loss = bench.baseline_sde(sde, steps)(x0s, keys)
    core_states, core_loss = solve_paths(sde, diffrax.Euler(), False, x0s, keys, steps, steps)
    assert type(states) is type(core_states)
    for field in core_states._fields:
        assert getattr(states, field).shape == getattr(core_states, field).shape == (n, 2, d)
        np.testing.assert_array_equal(
            getattr(states, field)[:, 0], getattr(core_states, field)[:, 0]
        )
    assert loss.shape == core_loss.shape == (n, 2)
    a, b = np.asarray(loss[:, -1], float), np.asarray(core_loss[:, -1], float)
    se = np.sqrt(a.var(ddof=1) / n + b.var(ddof=1) / n)
    assert abs(a.mean() - b.mean()) < 4 * se
    var, core_var = np.var(states.x[:, -1], axis=0), np.var(core_states.x[:, -1], axis=0)
    np.testing.assert_array_less(np.abs(var / core_var - 1), 4 * np.sqrt(4 / n))


def test_limit_sizes_the_paths_to_an_accelerators_memory(monkeypatch):
    """On a GPU/TPU the limit benchmark takes as many paths as a quarter of the device memory
    holds in float32 state, clipped to [10⁶, 10⁷]; on a CPU (no memory limit) the default."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_limit", ROOT / "benchmarks" / "limit.py")
    limit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(limit)
    gpu = {"backend": "gpu", "device": "H100", "devices": 1, "memory_bytes": 80 * 10**9}
    assert limit.sized_paths(1000, gpu, 1000) == 80 * 10**9 // (16 * 1000)  # 5·10⁶
    assert limit.sized_paths(10, gpu, 1000) == 10**7
    assert limit.sized_paths(10**5, gpu, 1000) == 10**6
    assert limit.sized_paths(1000, {**gpu, "memory_bytes": None}, 1000) == 1000
    info = limit.device_info()
    assert info["backend"] == jax.default_backend() and info["devices"] == jax.device_count()
    assert limit.sized_paths(1000, info, 123) == 123  # this CPU
