"""`sdelens.progress`: a bar or plain lines with the time left for long loops (chunks, sweeps,
studies), nothing at all (and no rich import) without a reporter, stdout of the CLI untouched."""

import io
import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest
from typer.testing import CliRunner

import sdelens as sl
from sdelens import _progress
from sdelens.cli import app
from sdelens.studies._common import say

PROB = sl.Quadratic(h=jnp.array([1.0, 2.0]), noise=sl.GaussianNoise(scale=jnp.array([0.5, 1.0])))
X0 = jnp.array([1.0, -1.0])


class Clock:
    """A fake `time` module: `perf_counter` moves only when told to."""

    def __init__(self):
        self.now = 100.0

    def perf_counter(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(_progress, "time", fake)
    return fake


def test_lines_report_every_step_with_the_time_left(clock):
    buf = io.StringIO()
    with sl.progress("lines", stream=buf):
        with _progress.task("noise scale sweep", 4) as t:
            for _ in range(4):
                clock.now += 2.0
                t.advance()
    assert buf.getvalue().splitlines() == [
        "noise scale sweep: 1/4, 2.0 s elapsed, about 6.0 s left",
        "noise scale sweep: 2/4, 4.0 s elapsed, about 4.0 s left",
        "noise scale sweep: 3/4, 6.0 s elapsed, about 2.0 s left",
        "noise scale sweep: 4/4, 8.0 s elapsed",
    ]


def test_the_estimate_is_the_mean_time_per_completed_unit(clock):
    buf = io.StringIO()
    with sl.progress("lines", stream=buf), _progress.task("runs", 10) as t:
        clock.now += 30.0  # the first unit compiles
        t.advance(2)
        clock.now += 10.0
        t.advance(3)
    assert buf.getvalue().splitlines() == [
        "runs: 2/10, 30 s elapsed, about 2 min 00 s left",
        "runs: 5/10, 40 s elapsed, about 40 s left",
    ]


def test_nested_tasks_are_indented_and_tasks_of_one_unit_are_not_shown(clock):
    buf = io.StringIO()
    with sl.progress("lines", stream=buf):
        with _progress.task("sweep", 2) as outer:
            for i in range(2):
                _progress.note(f"point {i}")
                with _progress.task("chunks", 2) as inner:
                    for _ in range(2):
                        clock.now += 1.0
                        inner.advance()
                with _progress.task("single chunk", 1) as one:
                    one.advance()
                outer.advance()
    lines = buf.getvalue().splitlines()
    assert [re.sub(r",.*", "", line) for line in lines] == [
        "point 0",
        "  chunks: 1/2",
        "  chunks: 2/2",
        "sweep: 1/2",
        "point 1",
        "  chunks: 1/2",
        "  chunks: 2/2",
        "sweep: 2/2",
    ]
    assert lines[3] == "sweep: 1/2, 2.0 s elapsed, about 2.0 s left"


def test_off_silences_an_enclosing_reporter_and_kinds_are_checked():
    buf = io.StringIO()
    with sl.progress("lines", stream=buf):
        with sl.progress("off"):
            assert not _progress.active()
            _progress.note("hidden")
            with _progress.task("hidden", 3) as t:
                t.advance()
        assert _progress.active()
        _progress.note("shown")
    assert buf.getvalue() == "shown\n" and not _progress.active()
    with pytest.raises(ValueError, match="kind='fancy' is invalid"):
        with sl.progress("fancy"):
            pass


def test_auto_is_lines_off_a_terminal_and_bar_draws_with_rich():
    buf = io.StringIO()
    with sl.progress(stream=buf), _progress.task("job", 2) as t:
        t.advance(2)
    assert buf.getvalue().startswith("job: 2/2, ")
    bar = io.StringIO()
    with sl.progress("bar", stream=bar):
        with _progress.task("job", 3) as t:
            _progress.note("a [b]note[/b] kept as typed")
            t.advance(3)
    text = bar.getvalue()
    assert "a [b]note[/b] kept as typed" in text
    assert re.search(r"job .*3/3", text), text


@pytest.mark.parametrize(
    "seconds, text", [(0.42, "0.4 s"), (12.4, "12 s"), (185, "3 min 05 s"), (7620, "2 h 07 min")]
)
def test_durations(seconds, text):
    assert _progress.duration(seconds) == text


def test_without_a_reporter_nothing_is_printed_and_rich_is_not_imported():
    """Tasks and notes with no reporter (and the lines reporter) load neither rich nor JAX."""
    code = textwrap.dedent(
        """
        import io, sys
        from sdelens import _progress
        with _progress.task("loop", 1000) as t:
            for _ in range(1000):
                t.advance()
        _progress.note("nobody listens")
        buf = io.StringIO()
        with _progress.reporting("lines", stream=buf), _progress.task("loop", 2) as t:
            t.advance(2)
        assert buf.getvalue().startswith("loop: 2/2"), buf.getvalue()
        print("rich" in sys.modules, "jax" in sys.modules)
        with _progress.reporting("bar", stream=io.StringIO()), _progress.task("loop", 2) as t:
            t.advance(2)
        print("rich" in sys.modules)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "EAGER_IMPORT"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "True"]
    assert result.stderr == ""


def test_chunked_ensembles_report_their_chunks(capfd):
    buf, opt = io.StringIO(), sl.SGD(lr=0.01)
    args = dict(n_steps=20, key=jax.random.key(0), save_every=10)
    with sl.progress("lines", stream=buf):
        sl.simulate(opt, PROB, X0, n_paths=20, chunk_size=8, **args)
        sl.run_optimizer(opt, PROB, X0, n_runs=20, chunk_size=8, keep="stats", **args)
        sl.simulate(opt, PROB, X0, n_paths=20, **args)  # one chunk: no task of its own
    lines = buf.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == 2 * [
        f"chunks of 8 paths: {i}/3" for i in (1, 2, 3)
    ]
    assert "left" in lines[0] and "left" not in lines[2]
    sl.simulate(opt, PROB, X0, n_paths=20, chunk_size=8, **args)  # no reporter: silent
    assert capfd.readouterr() == ("", "")


def test_a_studys_callback_gets_its_messages_and_the_reporter_does_not():
    buf, messages = io.StringIO(), []
    with sl.progress("lines", stream=buf):
        say(messages.append, "to the callback")
        say(None, "to the reporter")
    assert messages == ["to the callback"] and buf.getvalue() == "to the reporter\n"


def test_cli_reports_progress_on_stderr_and_keeps_stdout(tmp_path):
    out = tmp_path / "st"
    args = ["stationary", "--optimizers", "sgd", "--scales", "0.5,1", "--steps", "40"]
    args += ["--paths", "4", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    err = result.stderr.splitlines()
    assert err[0] == "  sgd: noise scale 0.5 (1/2)"  # the study's messages, as before
    assert re.fullmatch(r"noise scale sweep: 1/2, .* elapsed, about .* left", err[1]), err
    assert re.fullmatch(r"noise scale sweep: 2/2, .* elapsed", err[-1]), err
    stdout = result.stdout.splitlines()
    assert stdout[0] == f"Results in {out}/ (summary.json, runs.npz, 1 PNG figures)"
    assert stdout[1].split() == ["optimizer", "source", "log-log", "slope", "vs", "noise"]
    assert len(stdout) == 6 and "sweep" not in result.stdout
