"""One SDE step on a network against one full-batch gradient step of the same network.

    python benchmarks/networks.py                        # mlp-digits, 8 paths x 200 steps
    python benchmarks/networks.py --problem lstm-text    # the recurrent rows (40 steps)
    python benchmarks/networks.py --problem mlp-digits,cnn-digits
    python benchmarks/networks.py --quick                # tiny sizes, a smoke test

Baseline: a hand-written `lax.scan` of `x ← x - η (∇f(x) + s ξ)` under `vmap` over paths (one
full-batch gradient per step). Contenders: `simulate` of the SGD SDE with Gaussian noise (target
<= 1.5x), of the Adam SDE (target <= 1.2x on the feed-forward problems, <= 1.5x on the
recurrent ones), and on the feed-forward problems the SGD SDE with `MinibatchNoise` (exact
covariance: one vector-Jacobian product of the per-example losses; diagonal: per-example
gradients, chunked). Ratios are medians of interleaved repeats in the same run; compile time is
reported separately.

The SDEs integrate with Euler through `EulerIncrementTerm` (drift and diffusion from one call,
so the gradient they share is computed once), as `simulate` does for every Itô Euler run.

Each problem also reports the ensemble's gradient against one path's: `vmap(grad)` over the
paths' parameters against `paths ×` one path's gradient (1.0: the ensemble batches no better
than a loop over paths; below 1: the paths share work).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource

import equinox as eqx
import jax
import jax.numpy as jnp
from run import timed

import sdelens as sl

TARGET = 1.5
ADAM_TARGET = {"feedforward": 1.2, "recurrent": 1.5}
RECURRENT = ("lstm-text", "gru-text", "lstm-synthetic", "gru-mnist1d")


def baseline(prob, lr, s, n_steps, save_every):
    def path(x0, key):
        def step(x, k):
            xi = jax.random.normal(jax.random.fold_in(key, k), x.shape)
            return x - lr * (prob.grad(x) + s * xi), None

        def block(x, i):
            x, _ = jax.lax.scan(step, x, i * save_every + jnp.arange(save_every))
            return x, prob.loss(x)

        return jax.lax.scan(block, x0, jnp.arange(n_steps // save_every))

    return eqx.filter_jit(lambda x0s, keys: jax.vmap(path)(x0s, keys))


def contenders(name: str, gaussian, init, lr: float) -> dict[str, tuple[object, object, str]]:
    """`{row: (optimizer, problem, target)}` for one problem."""
    family = "recurrent" if name in RECURRENT else "feedforward"
    rows = {
        "SGD SDE, Gaussian noise": (sl.SGD(lr), gaussian, f"<= {TARGET}"),
        "Adam SDE, Gaussian noise": (
            sl.Adam(1e-3, beta2=0.99),
            gaussian,
            f"<= {ADAM_TARGET[family]}",
        ),
    }
    if family == "feedforward":
        for covariance in ("exact", "diagonal"):
            noise = sl.MinibatchNoise(32, covariance=covariance)
            rows[f"SGD SDE, minibatch 32 {covariance}"] = (
                sl.SGD(lr),
                sl.network_problem(name, noise, key=init),
                "-",
            )
    return rows


def ensemble_ratio(prob, x0s, repeats: int) -> tuple[float, float, float]:
    """`(one path s, ensemble s, ensemble / (paths × one path))` of the full-batch gradient."""
    one = eqx.filter_jit(lambda p, x: p.grad(x))
    many = eqx.filter_jit(lambda p, xs: jax.vmap(p.grad)(xs))
    (_, t_one), (_, t_many) = timed([lambda: one(prob, x0s[0]), lambda: many(prob, x0s)], repeats)
    return t_one, t_many, t_many / (x0s.shape[0] * t_one)


def bench_problem(name: str, args, paths: int, steps: int, repeats: int) -> list[dict]:
    save_every, lr, s = steps // 4, 0.05, 0.01
    init = jax.random.key(0)  # the model's initialisation, the same for every contender
    gaussian = sl.network_problem(name, sl.GaussianNoise(s), key=init)
    # Distinct points per path, so that no path's work can be shared with another's.
    x0s = gaussian.x0 + 1e-3 * jax.random.normal(jax.random.key(2), (paths, gaussian.dim))
    keys = jax.random.split(jax.random.key(0), paths)
    base = baseline(gaussian, lr, s, steps, save_every)
    cases = contenders(name, gaussian, init, lr)

    def sim(opt, prob):
        def go():
            return sl.simulate(opt, prob, x0s, steps, paths, jax.random.key(1), save_every).x

        return go

    fns = [lambda: base(x0s, keys)] + [sim(opt, prob) for opt, prob, _ in cases.values()]
    results = timed(fns, repeats)
    (base_compile, base_time), rest = results[0], results[1:]
    t_one, t_many, ensemble = ensemble_ratio(gaussian, x0s, repeats)
    print(
        f"{name}: d={gaussian.dim}, n_train={gaussian.data.n_train}, {paths} paths x {steps} "
        f"steps; {platform.processor() or platform.machine()}, "
        f"{jax.device_count()} {jax.default_backend()} device(s), load {os.getloadavg()[0]:.1f}"
    )
    print(f"{'case':34s} {'compile s':>9s} {'run s':>8s} {'ratio':>6s}  target")
    print(f"{'baseline: scan of x - lr (grad + s xi)':34s} {base_compile:9.2f} {base_time:8.3f}")
    rows = []
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    for (case, (_, _, target)), (compile_s, run_s) in zip(cases.items(), rest, strict=True):
        ratio = run_s / base_time
        print(f"{case:34s} {compile_s:9.2f} {run_s:8.3f} {ratio:6.2f}  {target}")
        rows.append(
            {
                "case": f"{name}: {case}",
                "d": gaussian.dim,
                "paths": paths,
                "steps": steps,
                "baseline": "scan of x - lr (grad + s xi)",
                "baseline_s": base_time,
                "sdelens_s": run_s,
                "compile_baseline_s": base_compile,
                "compile_sdelens_s": compile_s,
                "ratio": ratio,
                "target": target,
                "passed": target == "-" or ratio <= float(target.split()[-1]),
                "peak_rss_gb": peak,
            }
        )
    print(
        f"ensemble gradient: one path {t_one * 1e3:.1f} ms, {paths} paths {t_many * 1e3:.1f} ms, "
        f"ensemble / ({paths} x one) = {ensemble:.2f}\n"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--problem", default="mlp-digits", help="comma-separated problems")
    parser.add_argument("--paths", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="200 (recurrent: 40)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()
    rows = []
    for name in args.problem.split(","):
        steps = args.steps or (40 if name in RECURRENT else 200)
        paths, steps, repeats = (2, 20, 2) if args.quick else (args.paths, steps, args.repeats)
        rows += bench_problem(name, args, paths, steps, repeats)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
