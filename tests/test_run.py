"""`sdelens._run`: `Run` (its state, statistics and metrics) and results directories of runs:
round trips with typed states, one run or several (`load`, `load_results`), and directories of
format version 1 written by the previous release."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_same_run

import sdelens as sl

PROB = sl.Quadratic(h=jnp.array([1.0, 2.0]), noise=sl.GaussianNoise(scale=jnp.array([0.5, 1.0])))


@pytest.fixture(scope="module")
def runs():
    a = sl.run_optimizer(sl.Adam(lr=0.05), PROB, jnp.ones(2), 20, 8, jax.random.key(0), 5)
    b = sl.simulate(sl.Adam(lr=0.05), PROB, jnp.ones(2), 20, 8, jax.random.key(1), 5)
    return a, b


def _hand_made_run(state, kind="sde"):
    n, s = state.x.shape[:2]
    loss = np.sum(state.x**2, axis=-1)
    steps = np.arange(s) * 10
    return sl.Run(kind, steps, 0.1 * steps, loss, state, {"made": "by hand"}, False, None, 0)


def test_run_state_and_metrics(runs):
    a, b = runs
    for run in (a, b):
        assert isinstance(run.state, sl.AdamState) and run.state._fields == ("x", "m", "v")
        assert all(field.shape == (8, 5, 2) for field in run.state) and run.x is run.state.x
        np.testing.assert_array_equal(run.state.x[:, 0], 1.0)
    np.testing.assert_array_equal(a.state.m[:, 0], 0.0)  # Adam's moments start at zero
    m = a.metrics()
    assert m["kind"] == "optimizer" and m["n_paths"] == 8 and m["grad_evals"] == 20
    assert m["final_mean_loss"] == pytest.approx(float(a.loss[:, -1].mean()), rel=1e-6)
    se = a.loss[:, -1].std(ddof=1) / np.sqrt(8)
    assert m["final_mean_loss_se"] == pytest.approx(float(se), rel=1e-5)
    assert m["diverged"] is False and m["first_bad_step"] is None and m["n_diverged"] == 0
    np.testing.assert_allclose(a.mean_loss, a.loss.mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(a.steps, [0, 5, 10, 15, 20])
    np.testing.assert_allclose(a.ts, 0.05 * a.steps)


def test_run_round_trip(tmp_path, runs):
    a, _ = runs
    a.save(tmp_path / "one")
    back = sl.load(tmp_path / "one")
    assert isinstance(back, sl.Run)
    assert_same_run(a, back)
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["versions"]["jax"] == jax.__version__ and "diffrax" in summary["versions"]
    assert summary["runs"]["run"]["config"]["optimizer"]["name"] == "adam"
    assert summary["runs"]["run"]["state"] == {"type": "AdamState", "fields": ["x", "m", "v"]}
    assert summary["format"] == {"name": "sdelens-results", "version": 2}
    with np.load(tmp_path / "one" / "runs.npz") as data:
        assert {"run/state/x", "run/state/m", "run/state/v"} <= set(data.files)


def test_typed_states_keep_their_field_names(tmp_path):
    """Any named-tuple state comes back with its type name and field names (e.g. Entropy-SGD's
    `RelaxationState(x, y)`), and `run.x` is its field `x`."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 4, 2))
    for state in (sl.RelaxationState(x, y), sl.ParamState(x)):
        run = _hand_made_run(state)
        sl.save(tmp_path / type(state).__name__, {"r": run})
        back = sl.load(tmp_path / type(state).__name__)
        assert type(back.state).__name__ == type(state).__name__
        assert back.state._fields == state._fields
        for got, want in zip(back.state, state, strict=True):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(back.x, x)
        assert back.config == {"made": "by hand"} and back.n_paths == 3
    assert np.isnan(back.seconds)  # not timed: NaN, written as null


def test_several_runs_need_a_name(tmp_path, runs):
    a, b = runs
    path = sl.save(tmp_path / "two", {"optimizer": a, "sde": b}, summary={"metrics": {"x": 1.5}})
    assert path == tmp_path / "two"
    with pytest.raises(ValueError, match=r"holds 2 runs \(optimizer, sde\): pass name="):
        sl.load(tmp_path / "two")
    assert_same_run(b, sl.load(tmp_path / "two", "sde"))
    assert_same_run(a, sl.load(tmp_path / "two", name="optimizer"))
    with pytest.raises(ValueError, match="name='ref' is invalid: .* holds optimizer, sde"):
        sl.load(tmp_path / "two", "ref")
    results = sl.load_results(tmp_path / "two")
    assert isinstance(results, sl.Results) and results.path == tmp_path / "two"
    assert set(results.runs) == {"optimizer", "sde"}
    assert_same_run(b, results.runs["sde"])
    assert results.metrics() == {"x": 1.5} and results.arrays == {}
    assert results.summary["metrics"] == {"x": 1.5}
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["metrics"] == {"x": 1.5}
    with pytest.raises(ValueError, match="runs=dict is invalid: a dict of name -> Run"):
        sl.save(tmp_path / "bad", {"a": 1})
    with pytest.raises(ValueError, match="runs=list is invalid"):
        sl.save(tmp_path / "bad", [a])


def test_results_with_extra_arrays_and_no_runs(tmp_path):
    sl.save(tmp_path / "sweep", {}, summary={"metrics": {"slope": 2.0}}, arrays={"values": [1, 2]})
    results = sl.load_results(tmp_path / "sweep")
    assert results.runs == {} and results.metrics() == {"slope": 2.0}
    assert list(results.arrays) == ["values"] and results.arrays["values"].tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"holds 0 runs \(none\)"):
        sl.load(tmp_path / "sweep")
    sl.save(tmp_path / "bare", {})
    assert sl.load_results(tmp_path / "bare").metrics() == {}


def _write_version_1(path, runs_npz: dict, manifests: dict, metrics: dict):
    """A results directory as the previous release wrote it: no "format" entry, the state one
    flat `(n, S, k·d)` array `run/state` next to `run/x`."""
    path.mkdir()
    summary = {"config": {"command": "compare"}, "versions": {"sdelens": "0.1.0"}}
    summary.update(runs=manifests, metrics=metrics)
    (path / "summary.json").write_text(json.dumps(summary))
    np.savez_compressed(path / "runs.npz", **runs_npz)


def _v1_manifest(kind, n_paths, seconds=1.5):
    return {
        "config": {"optimizer": {"name": "adam"}},
        "kind": kind,
        "diverged": False,
        "first_bad_step": None,
        "n_diverged": 0,
        "seconds": seconds,
        "grad_evals": 20,
        "n_paths": n_paths,
    }


def test_reads_format_version_1(tmp_path):
    rng = np.random.default_rng(1)
    n, s, d = 4, 3, 2
    x, m, v = (rng.normal(size=(n, s, d)) for _ in range(3))
    steps, ts = np.array([0, 10, 20]), np.array([0.0, 0.5, 1.0])
    loss = rng.exponential(size=(n, s))
    arrays = {
        "sde/steps": steps,
        "sde/ts": ts,
        "sde/loss": loss,
        "sde/x": x,
        "sde/state": np.concatenate([x, m, v], axis=-1),  # Adam: (x, m, v) side by side
        "sgd/steps": steps,
        "sgd/ts": ts,
        "sgd/loss": loss,
        "sgd/x": x,  # no state array: the parameters are the state
        "rms/steps": steps,
        "rms/ts": ts,
        "rms/loss": loss,
        "rms/x": x,
        "rms/state": np.concatenate([x, v], axis=-1),  # RMSprop: (x, v)
        "stats/steps": steps,
        "stats/ts": ts,
        "stats/stats/count": np.full(s, 4.0),
        "stats/stats/loss_mean": loss.mean(0),
        "stats/stats/loss_m2": loss.var(0) * n,
        "stats/stats/x_mean": x.mean(0),
        "stats/stats/x_m2": x.var(0) * n,
        "stats/stats/hist_counts": np.ones((s, 1, 2)),
        "extra/values": np.array([0.5, 1.0]),
    }
    manifests = {
        "sde": _v1_manifest("sde", n),
        "sgd": _v1_manifest("optimizer", n, seconds=None),
        "rms": _v1_manifest("optimizer", n),
        "stats": {**_v1_manifest("optimizer", n), "hist": {"coords": [1], "edges": [-1, 0, 1]}},
    }
    _write_version_1(tmp_path / "old", arrays, manifests, {"max_z": 1.25})
    results = sl.load_results(tmp_path / "old")
    assert set(results.runs) == {"sde", "sgd", "rms", "stats"}
    assert results.metrics() == {"max_z": 1.25}
    np.testing.assert_array_equal(results.arrays["values"], [0.5, 1.0])
    adam = results.runs["sde"]
    assert adam.state._fields == ("x", "m", "v") and adam.kind == "sde"
    for got, want in zip(adam.state, (x, m, v), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(adam.x, x)
    np.testing.assert_array_equal(adam.loss, loss)
    assert adam.seconds == 1.5 and adam.grad_evals == 20 and adam.n_paths == 4
    sgd = sl.load(tmp_path / "old", "sgd")
    assert sgd.state._fields == ("x",) and np.isnan(sgd.seconds)
    np.testing.assert_array_equal(sgd.x, x)
    rms = results.runs["rms"]
    assert rms.state._fields == ("x", "v")
    np.testing.assert_array_equal(rms.state.v, v)
    stats = results.runs["stats"]
    assert stats.stats.hist == sl.Histogram(coords=(1,), edges=(-1.0, 0.0, 1.0))
    np.testing.assert_array_equal(stats.stats.hist_counts, np.ones((s, 1, 2)))
    assert stats.state is None and stats.x is None and stats.loss is None
    np.testing.assert_allclose(stats.stats.loss_mean, loss.mean(0))
    np.testing.assert_allclose(stats.mean_loss, loss.mean(0))
