"""SDE against optimizer on the recurrent problems, through the command line (the full look).

    python benchmarks/recurrent_sde.py                       # lstm-text, 4 optimizers x 2 noises
    python benchmarks/recurrent_sde.py --problem gru-text --optimizers adam,lion
    python benchmarks/recurrent_sde.py --quick               # 20 steps, 2 paths: a smoke test

Each cell is one `sdelens compare --problem P --optimizer O --noise N --train-size 0 --paths 16`
(200 steps, `lr` per optimizer below) in a fresh process, timed end to end (imports, compilation,
both ensembles, figures): the issue's "under 2 minutes on 2 CPU cores". The table reports the final
mean training loss (nats per character) of each side, the largest relative gap of the mean loss
over the saves with its z-score, and the command's verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LRS = {"sgd": 0.5, "signsgd": 1e-3, "adam": 3e-3, "lion": 3e-4}


def run_cell(problem: str, optimizer: str, noise: str, quick: bool, out: Path) -> dict:
    cmd = [
        str(Path(sys.executable).parent / "sdelens"), "compare", "--problem", problem,
        "--optimizer", optimizer, "--noise", noise, "--lr", str(LRS[optimizer]),
        "--out", str(out),
    ]  # fmt: skip
    # the full look (all 96 windows, 16 paths), as measured before the quick look got smaller
    full = ["--train-size", "0", "--paths", "16"]
    cmd += ["--steps", "20", "--paths", "2", "--save-every", "10"] if quick else full
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return {"seconds": seconds, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    return {"seconds": seconds, **metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="lstm-text")
    parser.add_argument("--optimizers", default="sgd,signsgd,adam,lion")
    parser.add_argument("--noises", default="gaussian,minibatch")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(f"{args.problem}; {os.cpu_count()} CPU cores, load {os.getloadavg()[0]:.1f}\n")
    print("| optimizer | lr | noise | optimizer loss | SDE loss | max rel. gap (z) | verdict | s |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for noise in args.noises.split(","):
            for opt in args.optimizers.split(","):
                r = run_cell(args.problem, opt, noise, args.quick, Path(tmp) / f"{opt}-{noise}")
                if "error" in r:
                    print(f"| {opt} | {LRS[opt]} | {noise} | | | | error: {r['error']} | "
                          f"{r['seconds']:.0f} |")  # fmt: skip
                    continue
                final = r["final_mean_loss"]
                print(
                    f"| {opt} | {LRS[opt]} | {noise} | {final['optimizer']:.4f} | "
                    f"{final['sde']:.4f} | {r['max_rel_mean_loss_error']:.1%} "
                    f"({r['max_z']:.1f}) | {r['verdict']} | {r['seconds']:.0f} |"
                )


if __name__ == "__main__":
    main()
