"""Every Python example in the README runs as written."""

import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples write results/ relative to the working directory
    exec(compile(BLOCKS[index], f"README block {index}", "exec"), {})
    plt.close("all")


def test_readme_has_examples():
    assert len(BLOCKS) >= 2
