"""One SDE step on a network against one full-batch gradient step of the same network.

    python benchmarks/networks.py            # mlp-digits, 8 paths x 200 steps
    python benchmarks/networks.py --quick    # tiny sizes, a smoke test

Baseline: a hand-written `lax.scan` of `x ← x - η (∇f(x) + s ξ)` under `vmap` over paths (one
full-batch gradient per step). Contenders: `simulate` of the SGD SDE with Gaussian noise (target
<= 1.5x), and with `MinibatchNoise` (exact covariance: one extra vector-Jacobian product of the
per-example losses; diagonal: per-example gradients, chunked), and the Adam SDE. Ratios are
medians of interleaved repeats in the same run; compile time is reported separately.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource

import equinox as eqx
import jax
import jax.numpy as jnp
from run import timed

import sdelens as sl

TARGET = 1.5


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--problem", default="mlp-digits")
    parser.add_argument("--paths", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()
    paths, steps, repeats = (2, 20, 2) if args.quick else (args.paths, args.steps, args.repeats)
    save_every, lr, s = steps // 4, 0.05, 0.01
    init = jax.random.key(0)  # the model's initialisation, the same for every contender
    gaussian = sl.network_problem(args.problem, sl.GaussianNoise(s), key=init)
    x0s = jnp.broadcast_to(gaussian.x0, (paths, gaussian.dim))
    keys = jax.random.split(jax.random.key(0), paths)
    base = baseline(gaussian, lr, s, steps, save_every)

    def sim(opt, prob):
        def go():
            return sl.simulate(
                opt, prob, gaussian.x0, steps, paths, jax.random.key(1), save_every
            ).x

        return go

    contenders = {
        "SGD SDE, Gaussian noise": sim(sl.SGD(lr), gaussian),
        "Adam SDE, Gaussian noise": sim(sl.Adam(1e-3, beta2=0.99), gaussian),
        "SGD SDE, minibatch 32 exact": sim(
            sl.SGD(lr), sl.network_problem(args.problem, sl.MinibatchNoise(32), key=init)
        ),
        "SGD SDE, minibatch 32 diagonal": sim(
            sl.SGD(lr),
            sl.network_problem(
                args.problem, sl.MinibatchNoise(32, covariance="diagonal"), key=init
            ),
        ),
    }
    fns = [lambda: base(x0s, keys)] + list(contenders.values())
    results = timed(fns, repeats)
    (_, base_time), rest = results[0], results[1:]
    print(
        f"{args.problem}: d={gaussian.dim}, n_train={gaussian.data.n_train}, {paths} paths x "
        f"{steps} steps; {platform.processor() or platform.machine()}, "
        f"{jax.device_count()} {jax.default_backend()} device(s)"
    )
    print(f"{'case':34s} {'compile s':>9s} {'run s':>8s} {'ratio':>6s}")
    name = "baseline: scan of x - lr (grad + s xi)"
    print(f"{name:34s} {results[0][0]:9.2f} {base_time:8.3f} {1:6.2f}")
    for (name, _), (compile_s, run_s) in zip(contenders.items(), rest, strict=True):
        print(f"{name:34s} {compile_s:9.2f} {run_s:8.3f} {run_s / base_time:6.2f}")
    print(f"target for the Gaussian SGD SDE: <= {TARGET}x")
    if args.json:
        print(json.dumps(json_rows(args.problem, gaussian.dim, paths, steps, results, contenders)))


def json_rows(problem, dim, paths, steps, results, contenders) -> list[dict]:
    """The rows in `run.py`'s table: each contender against the full-batch gradient scan."""
    (base_compile, base_time), rest = results[0], results[1:]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return [
        {
            "case": f"{problem}: {name}",
            "d": dim,
            "paths": paths,
            "steps": steps,
            "baseline": "scan of x - lr (grad + s xi)",
            "baseline_s": base_time,
            "sdelens_s": run_s,
            "compile_baseline_s": base_compile,
            "compile_sdelens_s": compile_s,
            "ratio": run_s / base_time,
            "target": f"<= {TARGET}" if i == 0 else "-",
            "passed": run_s / base_time <= TARGET if i == 0 else True,
            "peak_rss_gb": peak,
        }
        for i, (name, (compile_s, run_s)) in enumerate(zip(contenders, rest, strict=True))
    ]


if __name__ == "__main__":
    main()
