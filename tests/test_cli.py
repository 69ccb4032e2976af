"""The `sdelens` command line: outputs on disk, and usage errors (exit 2, one line)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import sdelens as sl
from sdelens.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_demo_writes_summary_runs_and_figures(tmp_path):
    out = tmp_path / "demo"
    result = invoke("demo", "--out", out, "--paths", 200, "--steps", 400)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    metrics = summary["metrics"]
    assert set(metrics["final_mean_loss"]) == {"optimizer", "sde"}
    assert metrics["diverged"] == {"optimizer": False, "sde": False}
    assert 0 <= metrics["max_rel_mean_loss_error"] < 0.5
    assert set(metrics["optimizers"]) == {"sgd", "signsgd"}
    assert summary["versions"]["jax"] and summary["config"]["n_paths"] == 200
    runs = sl.load(out)
    assert runs["signsgd_sde"].x.shape == (200, 41, 3)
    assert {p.name for p in out.glob("*.png")} >= {"sgd_trajectories.png", "signsgd_stationary.png"}
    assert "signsgd" in result.stdout


def test_compare_writes_required_summary(tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", "--optimizer", "sgd", "--steps", 200, "--paths", 100, "--out", out]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert {"config", "versions", "metrics"} <= set(summary)
    m = summary["metrics"]
    assert isinstance(m["max_rel_mean_loss_error"], float)
    assert m["final_mean_loss"]["optimizer"] > 0 and m["final_mean_loss"]["sde"] > 0
    again = invoke(*args)
    assert again.exit_code == 2 and "--force" in again.output
    assert invoke(*args, "--force").exit_code == 0


def test_compare_warns_on_divergence(tmp_path):
    out = tmp_path / "div"
    result = invoke(
        "compare", "--optimizer", "sgd", "--lr", 0.7, "--steps", 400, "--paths", 8, "--out", out
    )
    assert result.exit_code == 0, result.output
    assert "diverged" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["diverged"]["optimizer"] is True


def test_stationary_sweep_writes_slopes(tmp_path):
    out = tmp_path / "st"
    result = invoke(
        "stationary",
        "--scales",
        "0.5,1,2",
        "--steps",
        2000,
        "--paths",
        100,
        "--lr",
        0.005,
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    slopes = json.loads((out / "summary.json").read_text())["metrics"]["noise_scaling"]["slopes"]
    assert (
        abs(slopes["sgd"]["optimizer"] - 2) < 0.25
        and abs(slopes["signsgd"]["optimizer"] - 1) < 0.25
    )
    assert (out / "noise_scaling.png").is_file()
    with np.load(out / "runs.npz") as data:
        assert data["extra/noise_scaling/values"].tolist() == [0.5, 1.0, 2.0]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["compare", "--optimizer", "adamx"], "--optimizer='adamx'"),
        (["compare", "--noise", "cauchy"], "--noise='cauchy'"),
        (["compare", "--lr", "-1"], "lr=-1.0"),
        (["compare", "--lr", "nan"], "lr=nan"),
        (["compare", "--scale", "0"], "scale="),
        (["compare", "--noise", "student-t", "--df", "0"], "df="),
        (["compare", "--optimizer", "sgd", "--noise", "student-t", "--df", "1.5"], "SignSGD"),
        (["compare", "--steps", "0"], "n_steps=0"),
        (["compare", "--paths", "0"], "n_runs=0"),
        (["compare", "--steps", "100", "--save-every", "30"], "save_every=30"),
        (["compare", "--dim", "0"], "--dim=0"),
        (["compare", "--solver", "rk4"], "--solver='rk4'"),
        (["compare", "--lr", "abc"], "--lr"),
        (["stationary", "--scales", "1"], "--scales"),
        (["stationary", "--scales", "a,b"], "--scales"),
    ],
)
def test_usage_errors_exit_2_without_traceback(tmp_path, args, needle):
    result = invoke(*args, "--out", tmp_path / "x")
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("command", ["demo", "compare", "stationary"])
def test_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "--out" in result.output


def test_compare_adamw_in_both_forms(tmp_path):
    for form in ("default", "malladi"):
        out = tmp_path / form
        args = ["compare", "--optimizer", "adamw", "--weight-decay", 0.5, "--form", form]
        result = invoke(*args, "--steps", 200, "--paths", 64, "--out", out)
        assert result.exit_code == 0, result.output
        summary = json.loads((out / "summary.json").read_text())
        assert summary["config"]["form"] == form and summary["config"]["weight_decay"] == 0.5
        runs = sl.load(out)
        assert runs["sde"].state.shape == (64, 21, 9)  # (x, m, v) for d = 3
        assert runs["sde"].config["optimizer"]["weight_decay"] == 0.5
        assert runs["sde"].config["form"] == form


def test_scaling_command_verdicts(tmp_path):
    good = invoke(
        "scaling", "--optimizer", "signsgd", "--steps", 800, "--saves", 100, "--out", tmp_path / "a"
    )
    assert good.exit_code == 0, good.output
    assert "rule sqrt (kappa=4) holds" in good.output
    bad = invoke(
        "scaling",
        "--optimizer",
        "signsgd",
        "--rule",
        "linear",
        "--steps",
        800,
        "--saves",
        100,
        "--out",
        tmp_path / "b",
    )
    assert "rule linear (kappa=4) FAILS" in bad.output
    metrics = json.loads((tmp_path / "b" / "summary.json").read_text())["metrics"]
    assert metrics["holds"] is False and metrics["stationary_rel_diff"] > 0.5
    assert (tmp_path / "b" / "scaling.png").is_file()


def test_stationary_weight_decay_sweep(tmp_path):
    out = tmp_path / "wd"
    result = invoke(
        "stationary",
        "--optimizers",
        "adam,adamw",
        "--scales",
        "0.5,2",
        "--weight-decays",
        "0.5,2",
        "--steps",
        600,
        "--paths",
        50,
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    assert metrics["weight_decay"]["values"] == [0.5, 2.0]
    assert (out / "weight_decay.png").is_file() and (out / "noise_scaling.png").is_file()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["compare", "--optimizer", "adamw", "--weight-decay", "0"], "--weight-decay=0.0"),
        (["compare", "--optimizer", "adam", "--beta1", "1"], "beta1=1.0"),
        (["compare", "--optimizer", "adam", "--form", "ito"], "form='ito'"),
        (["compare", "--optimizer", "sgd", "--form", "malladi"], "form='malladi'"),
        (["scaling", "--kappa", "0"], "kappa="),
        (["scaling", "--rule", "cubic"], "rule='cubic'"),
        (["stationary", "--optimizers", "adam", "--weight-decays", "1"], "--weight-decays"),
    ],
)
def test_adaptive_usage_errors(tmp_path, args, needle):
    result = invoke(*args, "--out", tmp_path / "x")
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_compare_statistics_only_in_chunks(tmp_path):
    out = tmp_path / "stats"
    args = ["compare", "--keep", "stats", "--chunk-size", 64, "--paths", 200, "--steps", 200]
    result = invoke(*args, "--out", out)
    assert result.exit_code == 0, result.output
    runs = sl.load(out)
    assert runs["sde"].x is None and runs["sde"].stats.count.tolist()[-1] == 200
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    assert metrics["stationary_loss_se"]["optimizer"] is None
    assert (out / "trajectories.png").is_file() and not (out / "stationary.png").exists()
    bad = invoke("compare", "--chunk-size", -1, "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "chunk_size=-1" in bad.output
