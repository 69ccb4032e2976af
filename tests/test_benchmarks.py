"""The benchmark script keeps running (timings themselves are never asserted)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_script_runs_quick():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--repeats", "1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    rows = [
        line
        for line in out.splitlines()
        if line.startswith("| simulate") or line.startswith("| run_")
    ]
    assert len(rows) == 4
    for row in rows:
        ratio = float(row.split("|")[6].strip().rstrip("x"))
        assert ratio > 0


def test_network_benchmark_runs_quick():
    out = subprocess.run(
        [sys.executable, "networks.py", "--quick", "--problem", "mlp-breast-cancer"],
        cwd=ROOT / "benchmarks",
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    ratios = [float(line.split()[-1]) for line in out.splitlines() if "SDE," in line]
    assert len(ratios) == 4 and all(r > 0 for r in ratios)
