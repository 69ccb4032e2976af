"""The command line with the optimizers of any kind: `--optimizer optax:NAME --opt-arg`,
Lion, SAM/USAM (`--rho`), SGD momentum, `--form moments --nodes`, and their usage errors."""

import json

import pytest
from typer.testing import CliRunner

import sdelens as sl
from sdelens.cli import app

runner = CliRunner()
QUICK = ["--steps", "100", "--paths", "64", "--save-every", "20"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(
    "args,name,hyper",
    [
        (
            ["--optimizer", "optax:adabelief", "--opt-arg", "b1=0.8", "--opt-arg", "b2=0.99"],
            "optax:adabelief",
            {"coordinatewise": True},
        ),
        (["--optimizer", "lion", "--beta1", "0.8"], "lion", {"beta1": 0.8, "weight_decay": 0.0}),
        (["--optimizer", "lionw", "--weight-decay", "0.1"], "lionw", {"weight_decay": 0.1}),
        (["--optimizer", "usam", "--rho", "0.1"], "usam", {"rho": 0.1, "normalize": False}),
        (["--optimizer", "sgd", "--momentum", "0.5"], "sgd", {"momentum": 0.5}),
        (["--optimizer", "adam", "--form", "moments", "--nodes", "8"], "adam", {"beta1": 0.9}),
    ],
)
def test_compare_with_any_optimizer(tmp_path, args, name, hyper):
    out = tmp_path / "r"
    result = invoke("compare", *args, *QUICK, "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    runs = sl.load_results(out).runs
    config = runs["sde"].config
    assert config["optimizer"]["name"] == name
    assert {k: config["optimizer"][k] for k in hyper} == hyper
    if "optax" in name or "moments" in args:
        assert config["form"] == "moments" and config["rule"] == "quadrature"
    if "--nodes" in args:
        assert config["nodes"] == 8
    assert not runs["sde"].diverged and not runs["optimizer"].diverged
    assert summary["metrics"]["max_z"] < 5  # optimizer and SDE agree within Monte Carlo error


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--optimizer", "optax:nothere"], "--optimizer='optax:nothere' is invalid"),
        (["--optimizer", "optax:adam", "--opt-arg", "b9=1"], "'b9' is not an argument of optax"),
        (["--optimizer", "optax:adam", "--opt-arg", "junk"], "--opt-arg='junk' is invalid"),
        (["--optimizer", "sam", "--rho", "0"], "--rho="),
        (["--optimizer", "sgd", "--momentum", "1"], "--momentum="),
        (["--optimizer", "adam", "--form", "moments", "--nodes", "1"], "--nodes=1 is invalid"),
        (["--optimizer", "adam", "--nodes", "8"], "--nodes=8 is invalid with --form='default'"),
        (["--optimizer", "sgd", "--form", "second_order", "--momentum", "0.9"], "--momentum="),
    ],
)
def test_usage_errors(tmp_path, args, needle):
    result = invoke("compare", *args, *QUICK, "--out", tmp_path / "x")
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
