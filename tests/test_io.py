"""`sdelens._io`: the results-directory format (versioned), atomic writes, no silent overwrite,
JSON-ready values."""

import json
from importlib import metadata

import jax
import matplotlib.pyplot as plt
import numpy as np
import pytest
from helpers import assert_same_run

import sdelens as sl
from sdelens import _io


def _run(kind, seed):
    """A run as `run_optimizer`/`simulate` would return it (Adam, 8 paths, 5 saves, d = 2),
    made by hand: the format does not care where the numbers come from."""
    rng = np.random.default_rng(seed)
    state = sl.AdamState(*(rng.normal(size=(8, 5, 2)).astype(np.float32) for _ in range(3)))
    steps = np.arange(0, 21, 5)
    config = {"optimizer": {"name": "adam", "lr": 0.05}, "n_paths": 8, "keep": "paths"}
    loss = 0.5 * np.sum(state.x**2, axis=-1)
    return sl.Run(kind, steps, 0.05 * steps, loss, state, config, False, None, 0, 0.25, 20)


@pytest.fixture(scope="module")
def runs():
    return _run("optimizer", 0), _run("sde", 1)


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


def test_figures_and_extra_arrays(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = sl.save(
        tmp_path / "sweep",
        {},
        summary={"metrics": {}},
        figures={"line": fig},
        arrays={"values": np.arange(3)},
    )
    assert sorted(p.name for p in path.iterdir()) == ["line.png", "runs.npz", "summary.json"]
    assert (path / "line.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with np.load(tmp_path / "sweep" / "runs.npz") as data:
        assert data["extra/values"].tolist() == [0, 1, 2]
    plt.close(fig)


def test_write_and_read_records(tmp_path):
    """The format knows records (arrays + a JSON manifest), not runs."""
    records = {"a": ({"w": np.eye(2)}, {"note": "first"}), "b": ({"w": np.ones(3)}, {})}
    _io.write(tmp_path / "r", records, summary={"metrics": {"k": 1}}, arrays={"e": [7]})
    summary, back, extra, version = _io.read(tmp_path / "r")
    assert version == _io.VERSION == 2 and summary["format"]["name"] == _io.FORMAT
    assert summary["runs"] == {"a": {"note": "first"}, "b": {}}
    assert summary["metrics"] == {"k": 1} and set(summary["versions"]) >= {"sdelens", "jax"}
    np.testing.assert_array_equal(back["a"][0]["w"], np.eye(2))
    np.testing.assert_array_equal(back["b"][0]["w"], np.ones(3))
    assert back["a"][1] == {"note": "first"} and extra["e"].tolist() == [7]
    # a summary's own "versions" is kept
    _io.write(tmp_path / "v", {}, summary={"versions": {"mine": "1"}})
    assert _io.read(tmp_path / "v")[0]["versions"] == {"mine": "1"}


def test_not_a_results_dir_and_newer_formats_are_refused(tmp_path, runs):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not an sdelens results directory"):
        sl.load(tmp_path / "empty")
    with pytest.raises(ValueError, match="not an sdelens results directory"):
        sl.load_results(tmp_path / "nowhere")
    a, _ = runs
    a.save(tmp_path / "new")
    summary_file = tmp_path / "new" / "summary.json"
    summary = json.loads(summary_file.read_text())
    summary["format"]["version"] = _io.VERSION + 1
    summary_file.write_text(json.dumps(summary))
    with pytest.raises(
        ValueError, match="format .*version.* 3.*reads 'sdelens-results' up to version 2"
    ):
        sl.load(tmp_path / "new")
    summary["format"] = {"name": "other-tool", "version": 1}
    summary_file.write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="other-tool"):
        sl.load_results(tmp_path / "new")


def test_jsonable_and_versions():
    value = {
        1: np.float32(0.5),
        "a": np.arange(2),
        "nan": float("nan"),
        "inf": float("inf"),
        "-inf": np.float64(-np.inf),
        "t": (np.int64(3), [np.bool_(True)]),
    }
    out = _io.jsonable(value)
    assert out == {
        "1": 0.5,
        "a": [0, 1],
        "nan": None,
        "inf": "inf",
        "-inf": "-inf",
        "t": [3, [True]],
    }
    assert json.loads(json.dumps(out)) == out
    versions = _io.package_versions()
    # the installed distributions' versions (what produced the numbers)
    assert versions["jax"] == jax.__version__
    assert versions["sdelens"] == metadata.version("sdelens")
    assert set(versions) == {
        "sdelens",
        "jax",
        "jaxlib",
        "diffrax",
        "equinox",
        "optax",
        "lineax",
        "numpy",
    }
