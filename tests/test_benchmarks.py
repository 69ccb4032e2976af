"""The benchmark script keeps running (timings themselves are never asserted)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_script_runs_quick():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--no-peers"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    lines = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0]]
    rows = [dict(zip(header, (cell.strip() for cell in line), strict=True)) for line in lines[1:]]
    cases = [row["case"] for row in rows]
    for function in ("simulate", "run_optimizer"):
        for optimizer in ("signsgd", "adam"):
            assert f"{function} {optimizer}" in cases
    assert sum("SDE" in case for case in cases) == 4  # the network rows
    for row in rows:
        assert float(row["sdelens/baseline"]) > 0
        assert float(row["peak RSS GB"]) > 0
