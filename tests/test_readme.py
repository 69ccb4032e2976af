"""Every Python example and every command line of the README runs as written, and the
command lines do what their comments say."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from helpers import assert_cli_figures_labelled, record_cli_figures
from typer.testing import CliRunner

from sdelens.cli import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
BASH = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
COMMANDS = [line for block in BASH for line in block.splitlines() if line.startswith("sdelens ")]
# The other lines of a block with command lines (a heredoc writing a module, `python -c` writing
# data) set them up: they run first, in bash, in the same directory.
SETUP = {
    line: "\n".join(other for other in block.splitlines() if not other.startswith("sdelens "))
    for block in BASH
    for line in block.splitlines()
    if line.startswith("sdelens ")
}


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples write results/ relative to the working directory
    exec(compile(BLOCKS[index], f"README block {index}", "exec"), {})
    plt.close("all")


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_runs(line, tmp_path, monkeypatch):
    """Exit 0, a results directory where the command writes one, the verdict its comment
    promises ("holds" / "fails"), and labelled figures (`assert_cli_figures_labelled`)."""
    monkeypatch.chdir(tmp_path)
    if SETUP[line].strip():  # with this interpreter as `python`, as in the activated venv
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        setup = ["bash", "-euc", SETUP[line]]
        subprocess.run(setup, cwd=tmp_path, env={**os.environ, "PATH": path}, check=True)
    args = shlex.split(line, comments=True)[1:]
    drawn = record_cli_figures(monkeypatch)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (line, result.output)
    if "--help" in args:
        return
    out = Path(args[args.index("--out") + 1]) if "--out" in args else Path("results") / args[0]
    assert (out / "summary.json").is_file(), line
    assert_cli_figures_labelled(drawn, out, line)
    plt.close("all")
    comment = line.partition("#")[2]
    if "holds" in comment:
        assert " holds: " in result.output, result.output
    if "fails" in comment:
        assert " FAILS: " in result.output, result.output


def test_readme_has_commands():
    assert len(COMMANDS) >= 10 and any(c.startswith("sdelens entropy") for c in COMMANDS)
