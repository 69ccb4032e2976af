"""`sdelens variational`: Gaussian variational inference vs local entropy and smoothing on the
two-well landscapes (docs/math.md §7.8): outputs on disk, the table, usage errors."""

import json

import pytest
from typer.testing import CliRunner

from sdelens.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_variational_command(tmp_path):
    """At T = 0.15 and γ = 1 every objective prefers the wide minimum in 1-D and 2-D (the
    log-det flips are at T ≈ 0.088 and 0.044), and at T = 0.05 local entropy and variational
    inference still prefer the narrow one in 1-D but not in 2-D."""
    out = tmp_path / "var"
    args = ["variational", "--temperatures", "0.05,0.15", "--gammas", "1", "--steps", 300]
    result = invoke(*args, "--no-network", "--out", out)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("-")) + 1
    rows = [line.split() for line in lines[start : start + 4]]
    assert rows == [
        ["1", "0.05", "1", "narrow", "wide", "narrow", "narrow"],
        ["1", "0.15", "1", "wide", "wide", "wide", "wide"],
        ["2", "0.05", "1", "wide", "wide", "wide", "wide"],
        ["2", "0.15", "1", "wide", "wide", "wide", "wide"],
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["command"] == "variational" and summary["config"]["steps"] == 300
    metrics = summary["metrics"]
    assert set(metrics) == {"landscape_1d", "landscape_2d"}
    assert metrics["landscape_1d"]["temperatures"] == [0.05, 0.15]
    assert {p.name for p in out.glob("*.png")} == {
        "variational_preference_1d.png",
        "variational_widths_1d.png",
        "variational_preference_2d.png",
        "variational_widths_2d.png",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--temperatures", "a"], "--temperatures='a' is invalid"),
        (["--temperatures=-1"], "--temperatures=[-1] is invalid"),
        (["--gammas", "0,1"], "--gammas=[0, 1] is invalid"),
        (["--steps", "0"], "--steps=0 is invalid"),
    ],
)
def test_variational_usage_errors(tmp_path, args, message):
    result = invoke("variational", *args, "--out", tmp_path / "bad")
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "bad").exists()


def test_variational_help():
    result = invoke("variational", "--help")
    assert result.exit_code == 0
    assert all(o in result.output for o in ("--temperatures", "--gammas", "--no-network", "--out"))
    assert "variational" in invoke("--help").output
