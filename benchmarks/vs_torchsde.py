"""sdelens `simulate` against torchsde's `sdeint` on the same SDE, one CPU thread each.

    python benchmarks/vs_torchsde.py [--paths 1000 --steps 1000 --dim 100]

The SignSGD SDE on the benchmark problem of `run.py` (`run.problem(d)`: the command line's
standard quadratic `sl.Quadratic.standard(d, cond=4.0, scale=1.0)`, f = ½ Σ hᵢ xᵢ² with
h = linspace(1, 4, d) and Gaussian noise of std s = scale · linspace(1, 2, d)), x0 = 1: drift
-erf(∇f/(√2 s)), diagonal diffusion √η √(1 - drift²), Euler–Maruyama with dt = η, saving every
100 steps (the torch side writes the same h and s out, from `run.COND` and `run.SCALE`). Each
side runs in its own process restricted to one thread: JAX through XLA flags, torch through
`torch.set_num_threads(1)` (on this 2-core machine torch is ~20x slower with 2 threads). torch
and torchsde live in a separate environment (`benchmarks/.venv-peers`, made by `make bench`);
they are never dependencies of sdelens. The reported time is the median of `--repeats` runs after
one warm-up (JAX's compile time is printed separately).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from run import COND, LR, SCALE

HERE = Path(__file__).resolve().parent
PEERS_PYTHON = HERE / ".venv-peers" / "bin" / "python"
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

JAX_SIDE = r"""
import json, resource, statistics, sys, time
import jax, jax.numpy as jnp
import sdelens as sl
from run import problem  # run in benchmarks/
d, n, steps, save, repeats = map(int, sys.argv[1:6])
lr = float(sys.argv[8])
prob = problem(d)
def once():
    t = time.perf_counter()
    run = sl.simulate(sl.SignSGD(lr=lr), prob, jnp.ones(d), steps, n, jax.random.key(0), save)
    return time.perf_counter() - t, run
first, run = once()
times = [once()[0] for _ in range(repeats)]
median = statistics.median(times)
loss = float(run.mean_loss[-1])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
out = {"seconds": median, "compile": first - median, "final_loss": loss, "peak_rss_gb": peak}
print(json.dumps(out))
"""

TORCH_SIDE = r"""
import json, math, statistics, sys, time
import torch, torchsde
torch.set_num_threads(1)
d, n, steps, save, repeats = map(int, sys.argv[1:6])
cond, scale, lr = map(float, sys.argv[6:9])
# run.problem(d) = sl.Quadratic.standard(d, cond, scale), written out
h = torch.linspace(1.0, cond, d)
s = scale * torch.linspace(1.0, 2.0, d)

class SignSGDSDE(torch.nn.Module):
    noise_type, sde_type = "diagonal", "ito"
    def f(self, t, y):
        return -torch.erf(h * y / (math.sqrt(2.0) * s))
    def g(self, t, y):
        m = torch.erf(h * y / (math.sqrt(2.0) * s))
        return math.sqrt(lr) * torch.sqrt(torch.clamp(1.0 - m * m, min=0.0))

sde = SignSGDSDE()
y0 = torch.ones(n, d)
ts = torch.arange(0, steps + 1, save, dtype=torch.float32) * lr
def once():
    t = time.perf_counter()
    with torch.no_grad():
        ys = torchsde.sdeint(sde, y0, ts, method="euler", dt=lr)
    return time.perf_counter() - t, ys
first, ys = once()
times = [once()[0] for _ in range(repeats)]
loss = 0.5 * (h * ys[-1] ** 2).sum(-1).mean().item()
print(json.dumps({"seconds": statistics.median(times), "final_loss": loss}))
"""


def run_side(python: str, code: str, args: list[str], env: dict) -> dict:
    out = subprocess.run(
        [python, "-c", code, *args], env=env, capture_output=True, text=True, check=True, cwd=HERE
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(d: int, paths: int, steps: int, save_every: int, repeats: int) -> tuple[dict, dict]:
    """(sdelens, torchsde) results of the SignSGD SDE, each side in its own one-thread process."""
    sizes = [str(v) for v in (d, paths, steps, save_every, repeats, COND, SCALE, LR)]
    env = {**os.environ, "XLA_FLAGS": SINGLE_THREAD_XLA, "OMP_NUM_THREADS": "1"}
    return run_side(sys.executable, JAX_SIDE, sizes, env), run_side(
        str(PEERS_PYTHON), TORCH_SIDE, sizes, env
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--paths", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not PEERS_PYTHON.exists():
        sys.exit(f"{PEERS_PYTHON} is missing: run `make bench` to create the peers environment.")
    ours, theirs = compare(args.dim, args.paths, args.steps, args.save_every, args.repeats)
    speedup = theirs["seconds"] / ours["seconds"]
    print(f"SignSGD SDE, d={args.dim}, {args.paths} paths x {args.steps} steps, one thread each\n")
    print("| | seconds (median) | final E f | compile s |")
    print("|---|---|---|---|")
    print(
        f"| sdelens simulate | {ours['seconds']:.3f} | {ours['final_loss']:.5f} | "
        f"{ours['compile']:.2f} |"
    )
    print(f"| torchsde sdeint (euler) | {theirs['seconds']:.3f} | {theirs['final_loss']:.5f} | - |")
    verdict = "PASS" if speedup >= 8 else "MISS"
    print(f"\nsdelens is {speedup:.1f}x faster (target >= 8x: {verdict})")


if __name__ == "__main__":
    main()
