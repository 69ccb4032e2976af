"""`sdelens.cli`: the thin command line. Outputs on disk, usage errors (exit 2, one line naming
the option as typed, no traceback), and `--help` answering without importing JAX."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import problem_module
from typer.testing import CliRunner

import sdelens as sl
from sdelens.cli import app

runner = CliRunner()
COMMANDS = [
    "demo",
    "compare",
    "stationary",
    "scaling",
    "entropy",
    "stability",
    "variational",
    "inner-loops",
]


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
    assert summary["versions"]["jax"] and summary["config"]["paths"] == 200
    results = sl.load_results(out)
    names = {"sgd_optimizer", "sgd_sde", "signsgd_optimizer", "signsgd_sde"}
    assert set(results.runs) == names
    assert sl.load(out, "signsgd_sde").x.shape == (200, 41, 3)
    assert results.runs["signsgd_sde"].config["n_paths"] == 200
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
    assert summary["config"]["command"] == "compare" and summary["config"]["optimizer"] == "sgd"
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
        (["compare", "--lr", "-1"], "--lr=-1.0"),
        (["compare", "--lr", "nan"], "--lr=nan"),
        (["compare", "--scale", "0"], "--scale="),
        (["compare", "--noise", "student-t", "--df", "0"], "--df="),
        (["compare", "--optimizer", "sgd", "--noise", "student-t", "--df", "1.5"], "SignSGD"),
        (["compare", "--steps", "0"], "--steps=0"),
        (["compare", "--paths", "0"], "--paths=0"),
        (["compare", "--steps", "100", "--save-every", "30"], "--save-every=30"),
        (["compare", "--dim", "0"], "--dim=0"),
        (["compare", "--solver", "rk4"], "--solver='rk4'"),
        (["compare", "--lr", "abc"], "--lr"),
        (["stationary", "--scales", "1"], "--scales"),
        (["stationary", "--scales", "a,b"], "--scales"),
        (["stationary", "--scales", "1,1"], "--scales=[1.0, 1.0] is invalid: the values must be"),
        (["stationary", "--burn-in", "1.5"], "--burn-in=1.5"),
        (["stationary", "--optimizers", ","], "--optimizers=','"),
        (["stationary", "--optimizers", "rmspropw", "--weight-decays", "-1,2"], "--weight-decays="),
        (["compare", "--covariance", "foo"], "--covariance='foo'"),
        (["stability", "--lrs", "a"], "--lrs='a' is invalid"),
        (["stability", "--gammas", "0,1"], "--gammas="),
        (["stability", "--inner-steps", "0"], "--inner-steps=0"),
    ],
)
def test_usage_errors_exit_2_without_traceback(tmp_path, args, needle):
    result = invoke(*args, "--out", tmp_path / "x")
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "--out" in result.output


def test_top_level_help_lists_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    assert all(command in result.output for command in COMMANDS)


FAST = textwrap.dedent(
    """
    import sys
    import sdelens
    import sdelens.cli
    assert "jax" not in sys.modules and "matplotlib" not in sys.modules, "imported at once"
    sys.argv = ["sdelens", *sys.argv[1:]]
    try:
        sdelens.cli.main()
    except SystemExit as stop:
        code = stop.code
    assert "jax" not in sys.modules, "jax imported"
    print("exit", code)
    """
)


def _run_python(*args):
    env = {**os.environ, "SDELENS_JAX_CACHE": "off"}
    env.pop("EAGER_IMPORT", None)
    return subprocess.run(
        [sys.executable, "-c", FAST, *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["--help"], 0, "compare"),
        (["compare", "--help"], 0, "--out"),
        (["compare", "--lr", "abc"], 2, "--lr"),
        (["scaling", "--no-such-option"], 2, "--no-such-option"),
    ],
    ids=["help", "compare-help", "bad-number", "unknown-option"],
)
def test_help_and_usage_errors_do_not_import_jax(args, code, needle):
    """`import sdelens` and `import sdelens.cli` load neither JAX nor matplotlib, so `--help`
    and usage errors caught while parsing answer at once."""
    result = _run_python(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"exit {code}" in result.stdout
    assert needle in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_console_script_answers_help():
    script = Path(sys.executable).parent / "sdelens"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Usage: sdelens" in result.stdout
    bad = subprocess.run(
        [str(script), "compare", "--lr", "abc"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "--lr" in bad.stderr and "Traceback" not in bad.stderr


def test_compare_adamw_in_both_forms(tmp_path):
    for form in ("default", "malladi"):
        out = tmp_path / form
        args = ["compare", "--optimizer", "adamw", "--weight-decay", 0.5, "--form", form]
        result = invoke(*args, "--steps", 200, "--paths", 64, "--out", out)
        assert result.exit_code == 0, result.output
        summary = json.loads((out / "summary.json").read_text())
        assert summary["config"]["form"] == form and summary["config"]["weight_decay"] == 0.5
        runs = sl.load_results(out).runs
        assert set(runs) == {"optimizer", "sde"}
        state = runs["sde"].state
        assert state._fields == ("x", "m", "v") and type(state).__name__ == "AdamState"
        assert all(field.shape == (64, 21, 3) for field in state)  # (x, m, v) for d = 3
        assert np.concatenate(list(state), axis=-1).shape == (64, 21, 9)
        assert runs["optimizer"].state._fields == ("x", "m", "v")
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


def test_scaling_with_the_default_saves(tmp_path):
    """The README's command: 800 steps and 800/kappa = 200 scaled steps with the default
    `--saves 200` (the old default did not divide them)."""
    out = tmp_path / "adamw"
    args = ["scaling", "--optimizer", "adamw", "--kappa", 4, "--steps", 800, "--paths", 200]
    result = invoke(*args, "--out", out)
    assert result.exit_code == 0, result.output
    assert "rule compagnoni (kappa=4)" in result.output
    runs = sl.load_results(out).runs
    assert set(runs) == {"base", "scaled"}
    assert runs["base"].steps.size == runs["scaled"].steps.size == 201  # 200 saves + the start
    np.testing.assert_array_equal(runs["scaled"].steps, np.arange(201))
    np.testing.assert_array_equal(runs["base"].steps, 4 * np.arange(201))
    config = json.loads((out / "summary.json").read_text())["config"]
    assert config["saves"] == 200 and config["kappa"] == 4.0


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
        (["compare", "--optimizer", "adam", "--beta1", "1"], "--beta1=1.0"),
        (["compare", "--optimizer", "adam", "--form", "ito"], "--form='ito'"),
        (["compare", "--optimizer", "sgd", "--form", "malladi"], "--form='malladi'"),
        (["scaling", "--kappa", "0"], "--kappa="),
        (["scaling", "--rule", "cubic"], "--rule='cubic'"),
        (["stationary", "--optimizers", "adam", "--weight-decays", "1"], "--weight-decays"),
        (["entropy", "--sweep", "gamma=1"], "--sweep='gamma=1' is invalid"),
        (["entropy", "--problem", "quadratic"], "--problem='quadratic' is invalid"),
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
    sde = sl.load(out, "sde")
    assert sde.x is None and sde.state is None and sde.stats.count.tolist()[-1] == 200
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    assert metrics["stationary_loss_se"]["optimizer"] > 0  # from the kept block means
    assert (out / "trajectories.png").is_file() and (out / "stationary.png").is_file()
    bad = invoke("compare", "--chunk-size", -1, "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "--chunk-size=-1" in bad.output


def test_compare_on_a_network(tmp_path):
    out = tmp_path / "net"
    args = ["compare", "--problem", "mlp-breast-cancer", "--optimizer", "signsgd", "--lr", "0.002"]
    args += ["--steps", "40", "--paths", "4", "--save-every", "20", "--out", str(out)]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    accuracy = json.loads((out / "summary.json").read_text())["metrics"]["final_test_accuracy"]
    assert 0.85 < accuracy["optimizer"] <= 1.0 and 0.85 < accuracy["sde"] <= 1.0
    assert (out / "test_accuracy.png").is_file()
    bad = invoke("compare", "--problem", "vgg-cifar", "--out", out / "x")
    assert bad.exit_code == 2 and "--problem='vgg-cifar'" in bad.output
    bad = invoke("compare", "--noise", "minibatch", "--out", out / "y")
    assert bad.exit_code == 2 and "--noise='minibatch' needs a network problem" in bad.output


def test_stability_command(tmp_path):
    """The measured region against the closed-form boundary lr_max = 2.861 (gamma 1, inner lr
    0.02, L = 20 on the 3-d quadratic): lr 1 and 2.5 are stable, 3 and 4 are not."""
    out = tmp_path / "stab"
    grid = ["--lrs", "1,2.5,3,4", "--gammas", "1", "--inner-lrs", "0.02", "--steps", 300]
    result = invoke("stability", *grid, "--out", out)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    row = lines[next(i for i, line in enumerate(lines) if line.startswith("-----")) + 1].split()
    lr_max = sl.studies.entropy_sgd_lr_max(sl.Quadratic.standard(3, 4.0, 1.0), 1.0, 0.02)
    assert float(row[2]) == pytest.approx(float(lr_max), rel=1e-3) and 2.5 < lr_max < 3.0
    assert float(row[3]) == 2.5 and row[4] == "4/4"
    assert "agree at 100.0% of 4 points." in result.stdout
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    assert metrics["n_points"] == 4 and metrics["agreement"] == 1.0
    assert (out / "stability_inner_lr_0.02.png").is_file()


def test_entropy_command(tmp_path):
    out = tmp_path / "ent"
    args = ["entropy", "--problem", "mlp-breast-cancer", "--train-size", "128", "--budget", "60"]
    args += ["--runs", "2", "--saves", "2"]
    args += ["--no-landscape", "--sweep", "gamma=0.01,0.1;inner_steps=2,3"]
    args += ["--sweep", "temperature=0,0.001;inner_lr=0.05,0.1,0.2", "--out", str(out)]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    assert set(metrics["compute_fair"]) == {"sgd", "adam", "entropysgd"}
    assert all(m["grad_evals"] == 60 for m in metrics["compute_fair"].values())
    grids = metrics["sensitivity"]
    assert [np.asarray(g["final_loss"]).shape for g in grids] == [(2, 2), (2, 3)]
    assert len(metrics["hessian"]["sgd"]["top_eigenvalues"]) == 10
    assert "preference" not in metrics  # --no-landscape
    pngs = ["loss_vs_grad_evals", "loss_vs_seconds", "hessian_spectra"]
    for png in pngs + ["sensitivity_gamma_inner_steps", "sensitivity_temperature_inner_lr"]:
        assert (out / f"{png}.png").is_file()
    assert set(sl.load_results(out).runs) == {"sgd", "adam", "entropysgd"}
    bad = invoke("entropy", "--sweep", "beta=1,2", "--out", tmp_path / "b")
    assert bad.exit_code == 2 and "--sweep" in bad.output
    bad = invoke("entropy", "--gamma", "0", "--out", tmp_path / "c")
    assert bad.exit_code == 2 and "--gamma=0.0" in bad.output


def _final_losses(output: str) -> tuple[float, float]:
    """`final E f opt`, `final E f SDE` of the one row of the compare table."""
    lines = output.splitlines()
    row = lines[next(i for i, line in enumerate(lines) if line.startswith("-----")) + 1]
    return float(row.split()[1]), float(row.split()[2])


def test_compare_on_your_own_problem(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the module is imported from the current directory
    module = problem_module(
        tmp_path,
        """
        import jax.numpy as jnp
        import sdelens as sl

        def make():  # d = 3 from the noise
            loss = lambda x: jnp.sum(jnp.log(jnp.cosh(x)))
            return sl.Problem(loss, sl.GaussianNoise(jnp.full(3, 0.1)))

        def dimensionless():
            return sl.Problem(lambda x: jnp.sum(x**2), sl.GaussianNoise(0.1))
        """,
    )
    out = tmp_path / "own"
    args = ["compare", "--problem", f"{module}:make", "--optimizer", "sgd", "--lr", 0.1]
    result = invoke(*args, "--steps", 20, "--paths", 8, "--x0", 0.5, "--out", out)
    assert result.exit_code == 0, result.output
    opt, sde = _final_losses(result.stdout)
    start = 3 * np.log(np.cosh(0.5))  # 0.3672
    assert 0 < opt < start and 0 < sde < start
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    assert metrics["final_mean_loss"]["optimizer"] == pytest.approx(opt, rel=1e-3)
    assert metrics["final_mean_loss"]["sde"] == pytest.approx(sde, rel=1e-3)
    run = sl.load(out, "optimizer")
    assert run.x.shape == (8, 3, 3)
    np.testing.assert_array_equal(run.x[:, 0], 0.5)  # --x0 in each of the d coordinates
    bad = invoke("compare", "--problem", f"{module}:dimensionless", "--out", tmp_path / "x")
    assert bad.exit_code == 2 and "has neither an x0 nor a dimension for --x0" in bad.output
    for spec, needle in [
        (f"{module}:nothing", f"--problem='{module}:nothing' is invalid: module "),
        ("no_such_module_xyz:make", "--problem='no_such_module_xyz:make' is invalid: no module"),
        ("module-make", "--problem='module-make' is invalid: choose one of"),
    ]:
        bad = invoke("compare", "--problem", spec, "--out", tmp_path / "x")
        lines = bad.output.strip().splitlines()
        assert bad.exit_code == 2 and len(lines) == 1, bad.output
        assert lines[0].startswith(f"Error: {needle}") and "Traceback" not in bad.output
    bad = invoke("entropy", "--problem", f"{module}:make", "--out", tmp_path / "x")
    assert bad.exit_code == 2 and "entropy needs a network problem" in bad.output
    assert not (tmp_path / "x").exists()


def test_compare_on_your_text(tmp_path):
    """`--text`: an LSTM language model on the user's file, its hash in summary.json, and the
    model learns the file's deterministic cycle (loss well below the uniform log 4)."""
    text = "abcd" * 600  # 2400 characters, the next one always determined
    path = tmp_path / "cycle.txt"
    path.write_text(text, encoding="utf-8")
    out = tmp_path / "lm"
    args = ["compare", "--problem", "lstm-text", "--text", path, "--optimizer", "adam"]
    result = invoke(*args, "--lr", 0.03, "--steps", 60, "--paths", 2, "--out", out)
    assert result.exit_code == 0, result.output
    opt, sde = _final_losses(result.stdout)
    assert opt < 0.5 * np.log(4) and sde < 0.5 * np.log(4)
    provenance = json.loads((out / "summary.json").read_text())["config"]["data_provenance"]
    assert provenance["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert provenance["characters"] == str(len(text))  # meta values are strings
    assert json.loads(provenance["vocab"]) == list("abcd")
    (tmp_path / "short.txt").write_text("abc", encoding="utf-8")
    for problem, file, needle in [
        ("lstm-text", tmp_path / "none.txt", "--text='{}' is invalid"),
        ("lstm-text", tmp_path / "short.txt", "--text='{}' is too short for seq_len=32"),
        ("mlp-digits", path, "--text='{}' is invalid with --problem='mlp-digits'"),
    ]:
        bad = invoke("compare", "--problem", problem, "--text", file, "--out", tmp_path / "x")
        lines = bad.output.strip().splitlines()
        assert bad.exit_code == 2 and len(lines) == 1, bad.output
        assert lines[0].startswith("Error: " + needle.format(file)), lines
    assert not (tmp_path / "x").exists()


def test_compare_trains_the_costliest_networks_on_a_subset_by_default(tmp_path):
    """At the defaults `compare` trains mlp-mnist1d on 1000 of its 4000 examples, says so and
    records it; `--train-size 0` takes them all, a bad size is refused before computing."""
    out = tmp_path / "quick"
    args = ["compare", "--problem", "mlp-mnist1d", "--steps", 4, "--save-every", 2]
    result = invoke(*args, "--paths", 2, "--out", out)
    assert result.exit_code == 0, result.output
    assert "mlp-mnist1d: the quick look, 1000 training examples and 2 paths" in result.output
    assert json.loads((out / "summary.json").read_text())["config"]["train_size"] == 1000
    result = invoke(*args, "--paths", 2, "--train-size", 0, "--out", tmp_path / "all")
    assert result.exit_code == 0 and "the quick look" not in result.output, result.output
    config = json.loads((tmp_path / "all" / "summary.json").read_text())["config"]
    assert config["train_size"] == 4000
    bad = invoke(*args, "--train-size", -1, "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "--train-size=-1" in bad.output, bad.output
    assert not (tmp_path / "bad").exists()


def test_compare_on_your_data(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 2
    x = rng.normal(size=(60, 4)) + 2.0 * labels[:, None]  # two separable classes
    data = tmp_path / "mine.npz"
    np.savez(data, x_train=x[:48], y_train=labels[:48], x_test=x[48:], y_test=labels[48:])
    out = tmp_path / "net"
    args = ["compare", "--problem", "mlp", "--data", data, "--optimizer", "sgd", "--lr", 0.5]
    result = invoke(*args, "--steps", 20, "--paths", 4, "--out", out)
    assert result.exit_code == 0, result.output
    opt, sde = _final_losses(result.stdout)
    assert 0 < opt < np.log(2) and 0 < sde < np.log(2)  # below chance: it learned
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["data"] == str(data) and summary["config"]["problem"] == "mlp"
    accuracy = summary["metrics"]["final_test_accuracy"]
    assert 0.75 <= accuracy["optimizer"] <= 1.0 and 0.75 <= accuracy["sde"] <= 1.0
    (tmp_path / "broken.npz").write_bytes(data.read_bytes()[:200])
    np.savez(tmp_path / "one.npz", x=x, y=np.zeros(60))
    for problem, file, needle in [
        ("mlp", tmp_path / "nothing.npz", "is invalid: no such file."),
        ("mlp", tmp_path / "broken.npz", "is invalid: not a readable .npz file"),
        ("mlp", tmp_path / "one.npz", "is invalid: y has only one class (label 0)"),
        ("mlp-digits", data, "is invalid with --problem='mlp-digits': with data, the problem is"),
    ]:
        bad = invoke("compare", "--problem", problem, "--data", file, "--out", tmp_path / "x")
        lines = bad.output.strip().splitlines()
        assert bad.exit_code == 2 and len(lines) == 1, bad.output
        assert lines[0].startswith(f"Error: --data='{file}' {needle}"), lines
    bad = invoke("compare", "--problem", "mlp", "--out", tmp_path / "x")
    assert bad.exit_code == 2 and "--problem='mlp' is invalid without data" in bad.output
    assert "--data='mine.npz'" in bad.output
    bad = invoke("entropy", "--data", data, "--out", tmp_path / "x")  # default mlp-digits
    assert bad.exit_code == 2 and "--data=" in bad.output and "--problem='mlp-digits'" in bad.output
    assert not (tmp_path / "x").exists()


def test_force_never_touches_what_sdelens_did_not_write(tmp_path, monkeypatch):
    paper = tmp_path / "paper"
    paper.mkdir()
    (paper / "thesis.tex").write_text("years of work")
    monkeypatch.chdir(tmp_path)
    for out in [paper, ".", "", "..", paper / "thesis.tex"]:
        result = invoke("demo", "--paths", 10, "--steps", 20, "--out", out, "--force")
        assert result.exit_code == 2, (out, result.output)
        lines = result.output.strip().splitlines()
        assert (
            len(lines) == 1 and lines[0].startswith("Error: --out=") and "Traceback" not in lines[0]
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paper"]
    assert [p.name for p in paper.iterdir()] == ["thesis.tex"]
    result = invoke("demo", "--paths", 10, "--steps", 20, "--out", paper)
    assert result.exit_code == 2 and "exists: pass --force to replace it" in result.output
    unwritable = invoke("demo", "--out", paper / "thesis.tex" / "run")
    assert unwritable.exit_code == 2 and "nothing can be written in" in unwritable.output


def test_compare_warns_when_entropy_sgd_is_outside_its_models_domain(tmp_path):
    """At the defaults the inner chain needs 25 inner steps to relax and runs L = 20: the
    two-timescale model is outside its domain, said on the console and in summary.json;
    with L = 100 it is inside and nothing is said."""
    out = tmp_path / "ent"
    result = invoke(
        "compare", "--optimizer", "entropysgd", "--steps", 10, "--paths", 8, "--out", out
    )
    assert result.exit_code == 0, result.output
    assert "Warning: entropysgd: the two-timescale SDE assumes" in result.output
    assert "relaxation time is 25 inner steps against L = 20" in result.output
    assert "--form finite_chain models the finite chain" in result.output
    validity = json.loads((out / "summary.json").read_text())["metrics"]["model_validity"]
    assert validity["valid"] is False and validity["relaxation_over_inner_steps"] == 1.25
    args = ["compare", "--optimizer", "entropysgd", "--inner-steps", 100, "--steps", 10]
    result = invoke(*args, "--paths", 8, "--out", tmp_path / "ok")
    assert result.exit_code == 0 and "Warning" not in result.output, result.output
    # the finite-chain model has no such domain: no warning, no validity in summary.json
    args = ["compare", "--optimizer", "entropysgd", "--form", "finite_chain", "--steps", 10]
    result = invoke(*args, "--paths", 8, "--out", tmp_path / "chain")
    assert result.exit_code == 0 and "Warning" not in result.output, result.output
    assert "finite_chain form" in result.output
    metrics = json.loads((tmp_path / "chain" / "summary.json").read_text())["metrics"]
    assert "model_validity" not in metrics


CACHE_RACE = textwrap.dedent(
    """
    import pathlib, sys, warnings
    from sdelens.cli import _enable_compilation_cache
    _enable_compilation_cache()
    import jax
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    double = lambda x: 2.0 * x
    assert float(jax.jit(double)(1.0)) == 2.0
    entries = [p for p in pathlib.Path(sys.argv[1]).iterdir() if p.is_file()]
    for entry in entries:  # what a command reads while another is still writing the entry
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    jax.clear_caches()
    with warnings.catch_warnings(record=True) as seen:
        assert float(jax.jit(double)(3.0)) == 6.0
    print(len(entries), [str(w.message) for w in seen])
    """
)


def test_compilation_cache_entry_read_half_written_is_recompiled_quietly(tmp_path):
    """The CLI keeps compiled programs in `SDELENS_JAX_CACHE`; JAX writes an entry in place, so
    a second command can read one half-written. It compiles instead, without a warning."""
    env = {**os.environ, "SDELENS_JAX_CACHE": str(tmp_path)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    result = subprocess.run(
        [sys.executable, "-c", CACHE_RACE, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    count, _, messages = result.stdout.strip().partition(" ")
    assert int(count) >= 1 and messages == "[]", result.stdout
