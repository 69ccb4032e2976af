"""`sdelens._io`: the results-directory format (versioned), atomic writes, no silent overwrite,
JSON-ready values."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

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


# -- safe results: --force replaces only what sdelens wrote ------------------------------------


def test_force_replaces_only_an_sdelens_result(tmp_path, runs):
    a, b = runs
    paper = tmp_path / "paper"
    paper.mkdir()
    (paper / "thesis.tex").write_text("years of work")
    with pytest.raises(
        ValueError, match=r"path='.*paper' is invalid: .*holds thesis.tex.*untouched"
    ):
        a.save(paper, force=True)
    assert [p.name for p in paper.iterdir()] == ["thesis.tex"]
    assert (paper / "thesis.tex").read_text() == "years of work"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no sdelens summary.json"):
        a.save(tmp_path / "empty", force=True)
    # a result the user has added a file to is no longer only ours
    a.save(tmp_path / "r")
    (tmp_path / "r" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds notes.txt"):
        b.save(tmp_path / "r", force=True)
    assert sl.load(tmp_path / "r").kind == "optimizer" and (tmp_path / "r" / "notes.txt").exists()
    # a foreign summary.json is not ours either
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "summary.json").write_text('{"format": {"name": "x", "version": 1}}')
    (tmp_path / "other" / "runs.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="force replaces only an sdelens results directory"):
        b.save(tmp_path / "other", force=True)
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["runs.npz", "summary.json"]


def test_cwd_its_parents_files_links_and_unwritable_places_are_refused(tmp_path, runs, monkeypatch):
    a, _ = runs
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("x")
    monkeypatch.chdir(work)
    for bad in ["", ".", "..", str(tmp_path), "/", "./"]:
        with pytest.raises(ValueError, match=r"path=.* is invalid"):
            a.save(bad, force=True)
    assert [p.name for p in work.iterdir()] == ["keep.txt"]
    with pytest.raises(ValueError, match="exists and is not a directory"):
        a.save("keep.txt", force=True)
    (tmp_path / "elsewhere").mkdir()
    (work / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="symbolic link"):
        a.save("link", force=True)
    with pytest.raises(ValueError, match="nothing can be written in .*keep.txt"):
        a.save("keep.txt/inside")
    assert sorted(p.name for p in work.iterdir()) == ["keep.txt", "link"]
    # the checks run alone, before any computation, and create nothing
    assert _io.check_target("fresh/deeper") == Path("fresh/deeper")
    assert sorted(p.name for p in work.iterdir()) == ["keep.txt", "link"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o077, 0o700), (0o002, 0o775)])
def test_directories_get_the_users_umask(tmp_path, runs, umask, mode):
    old = os.umask(umask)
    try:
        path = runs[0].save(tmp_path / "r")
        assert stat.S_IMODE(path.stat().st_mode) == mode
        assert stat.S_IMODE((path / "summary.json").stat().st_mode) == mode & 0o666
    finally:
        os.umask(old)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path, runs):
    a, b = runs
    dead, alive = _dead_pid(), os.getpid()
    stale = tmp_path / f".r.sdelens-{dead}-abc"
    live = tmp_path / f".r.sdelens-{alive}-def"
    foreign = tmp_path / f".r.sdelens-{dead}-ghi"
    for d in (stale, live, foreign):
        d.mkdir()
        (d / "runs.npz").write_bytes(b"partial")
    (foreign / "thesis.tex").write_text("not ours")
    a.save(tmp_path / "r")
    b.save(tmp_path / "r", force=True)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["r", live.name, foreign.name])
    assert sl.load(tmp_path / "r").kind == "sde"


def test_replacement_without_an_atomic_exchange(tmp_path, runs, monkeypatch):
    """Where the system cannot swap two directories, two renames do it; nothing is left over."""
    a, b = runs
    monkeypatch.setattr(_io, "_exchange", lambda new, old: False)
    a.save(tmp_path / "r")
    b.save(tmp_path / "r", force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["r"]
    assert_same_run(b, sl.load(tmp_path / "r"))


WRITER = """
import os, signal, sys
import numpy as np
from sdelens import _io

path, tag, stage = sys.argv[1], int(sys.argv[2]), sys.argv[3]
die = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
exchange = _io._exchange
if stage == "before_swap":
    _io._exchange = die
elif stage == "after_swap":
    _io._exchange = lambda a, b: (exchange(a, b), die())
big = np.random.default_rng(tag).normal(size=3_000_000)
records = {"run": ({"big": big, "tag": np.array(tag)}, {"tag": tag})}
print("start", flush=True)
_io.write(path, records, summary={"tag": tag}, force=True)
"""


def test_a_killed_writer_leaves_the_old_or_the_new_result(tmp_path):
    """Kill the writer at random moments of a replacement, and just before and just after the
    swap: the result directory always reads back whole, as the old or as the new result, and
    stale temporaries go with the next write."""
    path = tmp_path / "r"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)

    def write(tag, stage="none", delay=None):
        command = [sys.executable, str(script), str(path), str(tag), stage]
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
            assert child.stdout.readline().strip() == "start"
            if delay is not None:
                time.sleep(delay)
                child.send_signal(signal.SIGKILL)
            child.wait()
        summary, records, _, _ = _io.read(path)
        arrays, manifest = records["run"]
        assert summary["tag"] == manifest["tag"] == int(arrays["tag"])
        assert arrays["big"].shape == (3_000_000,)
        return summary["tag"]

    assert write(0) == 0
    assert write(1, "before_swap") == 0
    assert write(2, "after_swap") == 2
    current, rng = 2, np.random.default_rng(0)
    for tag in range(3, 11):  # a write takes ~1 s here
        got = write(tag, delay=rng.uniform(0.0, 1.5))
        assert got in (current, tag)
        current = got
    assert write(99) == 99
    assert [p.name for p in tmp_path.iterdir() if p.name != "writer.py"] == ["r"]


# -- damaged results are a ValueError naming the file -------------------------------------------


def test_damaged_results_name_the_file(tmp_path, runs):
    a, _ = runs
    a.save(tmp_path / "r")
    npz, summary_file = tmp_path / "r" / "runs.npz", tmp_path / "r" / "summary.json"
    good_npz, good_summary = npz.read_bytes(), summary_file.read_text()
    for damaged in (good_npz[: len(good_npz) // 2], b"", b"not a zip at all"):
        npz.write_bytes(damaged)
        with pytest.raises(ValueError, match=r"runs.npz cannot be read .*truncated or damaged"):
            sl.load(tmp_path / "r")
    npz.write_bytes(good_npz)
    for text, message in [
        ("{", r"summary.json is not valid JSON"),
        ("[1, 2]", r"summary.json is not an sdelens summary"),
        ('{"format": {"name": "sdelens-results", "version": "2"}}', "not an sdelens result"),
        ('{"format": "sdelens-results"}', "not an sdelens result"),
        ('{"format": {"name": "sdelens-results", "version": 2}, "runs": [1]}', "'runs' entry"),
    ]:
        summary_file.write_text(text)
        with pytest.raises(ValueError, match=message):
            sl.load_results(tmp_path / "r")
    manifest = json.loads(good_summary)
    del manifest["runs"]["run"]["kind"]
    summary_file.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"summary.json: run 'run' is incomplete .*KeyError"):
        sl.load(tmp_path / "r")
    summary_file.write_text(good_summary)
    assert_same_run(a, sl.load(tmp_path / "r"))
