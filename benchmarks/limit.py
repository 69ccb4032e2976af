"""How close `simulate` comes to the cheapest SDE step this machine can do, and how much of the
device's memory bandwidth a step reaches.

    python benchmarks/limit.py              # d = 1000, 1000 paths (CPU) or sized to the device
    python benchmarks/limit.py --quick      # tiny sizes, a smoke test

**The practical limit** of one Euler–Maruyama step per coordinate: one Gaussian increment and one
update `x ← x - η h x + √η s ξ` (SGD's SDE on the benchmark quadratic), written as the tightest
`lax.scan` we know, every path's state `(paths, d)` in one array, in several variants of the
draw:

- `sdelens draws`: `ξ` from the counter-based hash of sdelens's Brownian paths
  (`sdelens._brownian.step_normals`, Threefry-2x32 of `(key_i, t_k, t_{k+1})`, `√2 erf⁻¹(u)`),
  the draws `simulate` makes at this size (one path by one, two 24-bit normals per hash);
- `sdelens draws, fast inverse`: the same hashes through `sdelens._brownian.fast_inverse_normal`
  (if present) instead of XLA's `erf_inv`;
- `sdelens hashes, no inverse (bound)`: the same hashes' uniforms used without an inverse
  normal, the cost of a free inverse: a bound on what any faster inverse than `erf_inv` could
  save (not normals, so never the limit);
- `jax.random.normal`: `ξ = normal(fold_in(key, k), (paths, d))`, what one would write;
- `no draw (memory floor)`: the update with a fixed `ξ`, the cost of reading and writing the
  state alone.

The limit is the fastest variant that draws fresh normals. Against it: `simulate` of SGD's SDE
on the same problem (`keep="stats"`, one save), per coordinate-step, target <= 1.3x.

**Bandwidth.** A copy `y = x + 1` of a large array measures the bandwidth the device really
delivers (bytes read + written per second); each row reports the state traffic of its steps
(`2 · 4 bytes` per coordinate-step: read and write `x` in float32) as a fraction of it.

**Accelerators.** Nothing here is CPU-specific: the backend is detected (`jax.default_backend()`),
the device's kind recorded, and on a GPU/TPU the number of paths is sized to its memory
(`memory_stats()["bytes_limit"]`: a quarter of it for the state, between 10⁶ and 10⁷ paths);
throughput is printed in path-steps per second.
"""

from __future__ import annotations

import argparse
import json
import math
import platform

import jax
import jax.numpy as jnp
import numpy as np
from run import LR, problem, timed

import sdelens as sl
from sdelens import _brownian

TARGET = 1.3


def device_info() -> dict:
    """The backend, the first device's kind, and its memory limit in bytes (None on a CPU,
    which reports none)."""
    device = jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    limit = (stats or {}).get("bytes_limit")
    return {
        "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "devices": jax.device_count(),
        "memory_bytes": limit,
    }


def sized_paths(d: int, info: dict, default: int) -> int:
    """Paths for one run: `default` on a CPU; on an accelerator as many as a quarter of its
    memory holds in float32 state (several copies are live in a step), 10⁶ to 10⁷."""
    if info["backend"] == "cpu" or not info["memory_bytes"]:
        return default
    fit = info["memory_bytes"] // (4 * 4 * d)
    return int(min(10**7, max(10**6, fit)))


def bandwidth(n_bytes: int, repeats: int) -> float:
    """Bytes per second of `y = x + 1` on an array of `n_bytes` (read + write)."""
    x = jnp.ones(n_bytes // 4, jnp.float32)
    copy = jax.jit(lambda a: a + 1.0)
    ((_, seconds),) = timed([lambda: copy(x)], repeats)
    return 2 * n_bytes / seconds


def _scan(step, x0, n_steps):
    def run(x0):
        x, _ = jax.lax.scan(lambda x, k: (step(x, k), None), x0, jnp.arange(n_steps))
        return x

    return jax.jit(run)


def variants(d: int, paths: int, n_steps: int):
    """`{name: (function, draws fresh normals)}`: the tight scans described above."""
    prob = problem(d)
    h, s = prob.h, prob.noise.scale
    decay, kick = 1.0 - LR * h, math.sqrt(LR) * s
    keys = jax.random.split(jax.random.key(0), paths)
    words = jax.vmap(_brownian.key_words)(keys)  # (paths, 2)
    ts = LR * jnp.arange(n_steps + 1, dtype=jnp.float32)

    def hashed(inverse):
        def draws(w, k):
            key = _brownian._step_key(w, ts[k], ts[k + 1])
            if inverse is None:  # exactly the draws of sdelens's paths
                return _brownian.standard_normal(key, (d,), jnp.float32)
            counters = jnp.arange((d + 1) // 2, dtype=jnp.uint32)
            a, b = _brownian.threefry2x32(key, (counters, jnp.zeros((), jnp.uint32)))
            bits = jnp.stack([a, b], axis=-1).reshape(-1)[:d] >> np.uint32(8)
            return inverse(_brownian._centred_uniform(bits, 24, np.dtype(np.float32)))

        def step(x, k):
            xi = jax.vmap(draws, in_axes=(0, None))(words, k)
            return decay * x + kick * xi

        return step

    def jax_random(x, k):
        xi = jax.random.normal(jax.random.fold_in(jax.random.key(1), k), x.shape)
        return decay * x + kick * xi

    fixed = jax.random.normal(jax.random.key(2), (paths, d))

    def floor(x, k):
        return decay * x + kick * fixed

    x0 = jnp.ones((paths, d))
    out = {"sdelens draws": (_scan(hashed(None), x0, n_steps), True)}
    if hasattr(_brownian, "fast_inverse_normal"):
        fast = _scan(hashed(_brownian.fast_inverse_normal), x0, n_steps)
        out["sdelens draws, fast inverse"] = (fast, True)
    # The hashes' uniforms used as they are: what a free inverse-normal would cost (a bound on
    # any faster inverse; not normals, so never the limit).
    out["sdelens hashes, no inverse (bound)"] = (_scan(hashed(lambda u: u), x0, n_steps), False)
    out["jax.random.normal"] = (_scan(jax_random, x0, n_steps), True)
    out["no draw (memory floor)"] = (_scan(floor, x0, n_steps), False)
    return out, x0


def limit_rows(d: int, paths: int, n_steps: int, repeats: int, info: dict) -> list[dict]:
    """The variants, the limit, and `simulate` (SGD's SDE and, for reference, SignSGD's and
    Adam's) against it, per coordinate-step; each row with its share of the bandwidth."""
    fns, x0 = variants(d, paths, n_steps)
    prob = problem(d)
    x0_path, key = jnp.ones(d), jax.random.key(3)

    def sim(opt):
        def go():
            run = sl.simulate(opt, prob, x0_path, n_steps, paths, key, n_steps, keep="stats")
            return jnp.asarray(run.stats.loss_mean)

        return go

    contenders = {name: (lambda f=f: f(x0)) for name, (f, _) in fns.items()}
    contenders["simulate sgd"] = sim(sl.SGD(lr=LR))
    contenders["simulate signsgd"] = sim(sl.SignSGD(lr=LR))
    contenders["simulate adam"] = sim(sl.Adam(lr=LR, beta1=0.9, beta2=0.99))
    results = dict(zip(contenders, timed(list(contenders.values()), repeats), strict=True))
    per = {name: t / (d * paths * n_steps) for name, (_, t) in results.items()}
    fresh = [name for name, (_, draws) in fns.items() if draws]
    limit_name = min(fresh, key=per.get)
    rate = bandwidth(max(8 * d * paths, 2**27), repeats)  # beyond the caches
    rows = []
    for name, seconds in per.items():
        ratio = seconds / per[limit_name]
        rows.append(
            {
                "case": name,
                "d": d,
                "paths": paths,
                "steps": n_steps,
                "ns per coordinate-step": seconds * 1e9,
                "path-steps/s": 1.0 / (seconds * d),
                "over limit": ratio,
                "target": f"<= {TARGET}" if name == "simulate sgd" else "-",
                "passed": ratio <= TARGET if name == "simulate sgd" else None,
                "bandwidth share": 8.0 / seconds / rate,
                "limit": name == limit_name,
            }
        )
    return rows


def print_rows(rows: list[dict], info: dict) -> None:
    print(
        f"backend {info['backend']} | device {info['device']} x{info['devices']} | "
        f"memory {info['memory_bytes'] or 'n/a'} | {platform.machine()}\n"
    )
    print(
        "| case | d | paths | steps | ns per coordinate-step | path-steps/s | x limit | "
        "target | share of bandwidth |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mark = " (limit)" if r["limit"] else ""
        verdict = "" if r["passed"] is None else (" PASS" if r["passed"] else " MISS")
        print(
            f"| {r['case']}{mark} | {r['d']} | {r['paths']:g} | {r['steps']} | "
            f"{r['ns per coordinate-step']:.2f} | {r['path-steps/s']:.3g} | "
            f"{r['over limit']:.2f} | {r['target']}{verdict} | {r['bandwidth share']:.1%} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--d", type=int, default=1000)
    parser.add_argument("--paths", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()
    info = device_info()
    d, steps, repeats = (16, 10, 1) if args.quick else (args.d, args.steps, args.repeats)
    paths = 64 if args.quick else sized_paths(d, info, args.paths)
    rows = limit_rows(d, paths, steps, repeats, info)
    print_rows(rows, info)
    if args.json:
        print(json.dumps({"device": info, "rows": rows}, default=float))


if __name__ == "__main__":
    main()
