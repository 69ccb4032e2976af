"""Throughput and peak memory of `simulate` and `run_optimizer` over a grid of sizes.

    python benchmarks/grid.py [--steps 200]

SignSGD and Adam on the benchmark problem of `run.py` (`run.problem(d)`: the command line's
standard quadratic `sl.Quadratic.standard(d, cond=4.0, scale=1.0)`, f = ½ Σ hᵢ xᵢ² with
h = linspace(1, 4, d) and Gaussian noise of std scale · linspace(1, 2, d)), x0 = 1,
d in {10, 1000}, paths in {1e3, 1e5}, statistics only (`keep="stats"`, chunks of 10⁴ paths).
Each case runs in its own process so its peak resident memory is its own; the time is the
median of the repeats after one warm-up call (whose extra time is reported as compile time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CASE = r"""
import json, resource, statistics, sys, time
import jax, jax.numpy as jnp
import sdelens as sl
from run import problem  # run in benchmarks/
kind, opt_name, d, n, steps, repeats = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
prob = problem(d)
opt = sl.SignSGD(lr=1e-2) if opt_name == "signsgd" else sl.Adam(lr=1e-2, beta1=0.9, beta2=0.99)
fn = sl.simulate if kind == "simulate" else sl.run_optimizer
def once():
    t = time.perf_counter()
    x0, key = jnp.ones(d), jax.random.key(0)
    fn(opt, prob, x0, steps, n, key, steps // 2, keep="stats", chunk_size=10_000)
    return time.perf_counter() - t
first = once()
times = [once() for _ in range(repeats)]
median = statistics.median(times)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
print(json.dumps({"seconds": median, "compile": max(first - median, 0.0), "peak_gb": peak}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"{args.steps} steps, statistics only, chunks of 10^4 paths, median of {args.repeats}\n")
    print("| function | optimizer | d | paths | seconds | path-steps/s | compile s | peak RSS GB |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in ("run_optimizer", "simulate"):
        for opt in ("signsgd", "adam"):
            for d in (10, 1000):
                for n in (1_000, 100_000):
                    argv = [kind, opt, str(d), str(n), str(args.steps), str(args.repeats)]
                    out = subprocess.run(
                        [sys.executable, "-c", CASE, *argv],
                        capture_output=True,
                        text=True,
                        cwd=HERE,
                    )
                    if out.returncode:
                        print(f"| {kind} | {opt} | {d} | {n} | failed: {out.stderr[-200:]!r} |")
                        continue
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    rate = n * args.steps / r["seconds"]
                    print(
                        f"| {kind} | {opt} | {d} | {n:.0e} | {r['seconds']:.2f} | {rate:.2e} | "
                        f"{r['compile']:.2f} | {r['peak_gb']:.2f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
