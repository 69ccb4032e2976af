"""Results on disk: round trips, manifests, atomic writes, no silent overwrite."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

PROB = sl.Quadratic(h=jnp.array([1.0, 2.0]), noise=sl.GaussianNoise(scale=jnp.array([0.5, 1.0])))


@pytest.fixture(scope="module")
def runs():
    a = sl.run_optimizer(sl.Adam(lr=0.05), PROB, jnp.ones(2), 20, 8, jax.random.key(0), 5)
    b = sl.simulate(sl.Adam(lr=0.05), PROB, jnp.ones(2), 20, 8, jax.random.key(1), 5)
    return a, b


def assert_same_run(a, b):
    for field in ("steps", "ts", "loss", "x", "state"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for field in ("kind", "diverged", "first_bad_step", "n_diverged", "grad_evals", "seconds"):
        assert getattr(a, field) == getattr(b, field)
    assert json.loads(json.dumps(a.config)) == b.config


def test_run_round_trip(tmp_path, runs):
    a, _ = runs
    a.save(tmp_path / "one")
    back = sl.load(tmp_path / "one")
    assert isinstance(back, sl.Run)
    assert_same_run(a, back)
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["versions"]["jax"] == jax.__version__ and "diffrax" in summary["versions"]
    assert summary["runs"]["run"]["config"]["optimizer"]["name"] == "adam"


def test_several_runs_and_summary(tmp_path, runs):
    a, b = runs
    sl.save(tmp_path / "two", {"optimizer": a, "sde": b}, summary={"metrics": {"x": 1.5}})
    back = sl.load(tmp_path / "two")
    assert set(back) == {"optimizer", "sde"}
    assert_same_run(b, back["sde"])
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["metrics"] == {"x": 1.5}


def test_no_overwrite_without_force(tmp_path, runs):
    a, b = runs
    a.save(tmp_path / "r")
    with pytest.raises(FileExistsError, match="force"):
        b.save(tmp_path / "r")
    assert sl.load(tmp_path / "r").kind == "optimizer"
    b.save(tmp_path / "r", force=True)
    assert sl.load(tmp_path / "r").kind == "sde"


class Exploding:
    def savefig(self, *args, **kwargs):
        raise RuntimeError("disk full")


def test_failed_write_leaves_nothing(tmp_path, runs):
    a, _ = runs
    with pytest.raises(RuntimeError, match="disk full"):
        sl.save(tmp_path / "x", {"run": a}, figures={"bad": Exploding()})
    assert list(tmp_path.iterdir()) == []
    a.save(tmp_path / "x")
    with pytest.raises(RuntimeError):  # a failed overwrite keeps the old result
        sl.save(tmp_path / "x", {"run": a}, figures={"bad": Exploding()}, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["x"]
    assert_same_run(a, sl.load(tmp_path / "x"))


def test_extra_arrays_and_not_a_results_dir(tmp_path):
    sl.save(tmp_path / "sweep", {}, summary={"metrics": {}}, arrays={"values": np.arange(3)})
    assert sl.load(tmp_path / "sweep") == {}
    with np.load(tmp_path / "sweep" / "runs.npz") as data:
        assert data["extra/values"].tolist() == [0, 1, 2]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not an sdelens results directory"):
        sl.load(tmp_path / "empty")
