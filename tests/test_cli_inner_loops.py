"""`sdelens inner-loops`: Entropy-SGD's inner-loop variants at equal gradient evaluations from
the command line; results on disk, the tables, and usage errors naming the option."""

import json

from typer.testing import CliRunner

from sdelens.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_inner_loops_writes_results_and_tables(tmp_path):
    out = tmp_path / "il"
    result = invoke(
        "inner-loops",
        *("--variants", "warm", "--inner-steps", 4, "--inner-steps-grid", 4),
        *("--budget", 40, "--runs", 2, "--saves", 2, "--steps", 2, "--paths", 8),
        *("--out", out),
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["command"] == "inner-loops"
    metrics = summary["metrics"]
    assert set(metrics["compute_fair"]) == {"sgd", "warm"}
    assert metrics["compute_fair"]["warm"]["grad_evals"] == 40
    assert metrics["variants"]["warm"] == {
        "inner_steps": 4,
        "grads_per_step": 4,
        "inner": "sgld",
        "warm_start": True,
        "control_variate": False,
        "anchor_batches": 1,
    }
    assert metrics["estimator"]["inner_steps"] == [4]
    assert metrics["estimator"]["warm"]["mse"][0] > 0
    assert {p.name for p in out.glob("*.png")} >= {"estimator_error.png", "loss_vs_grad_evals.png"}
    assert "local-entropy gradient error" in result.stdout and "warm" in result.stdout


def test_inner_loops_usage_errors(tmp_path):
    for args, where in (
        (("--variants", "restart,hmc"), "--variants='hmc' is invalid"),
        (("--inner-steps-grid", "2,1.5"), "--inner-steps-grid='2,1.5' is invalid"),
        (("--problem", "quadratic", "--noise", "minibatch"), "minibatch"),
    ):
        result = invoke("inner-loops", *args, "--out", tmp_path / "x")
        assert result.exit_code == 2, result.output
        assert where in result.output and "Traceback" not in result.output
