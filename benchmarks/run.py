"""sdelens against hand-written JAX baselines of the same computation, in one process.

    python benchmarks/run.py            # full size: d=100, 1000 paths x 1000 steps
    python benchmarks/run.py --quick    # tiny sizes, a smoke test

For each case: compile time (first call minus the median of later calls) and the median run time
of `--repeats` calls, each ending in `block_until_ready`. Ratios are sdelens / baseline, measured
in the same run; the targets come from the core issue (<= 1.15x). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import diffrax
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp

import sdelens as sl
from sdelens._simulate import _optimize_paths, _solve_paths

TARGET = 1.15


def _once(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def timed(fns, repeats: int) -> list[tuple[float, float]]:
    """(compile seconds, median run seconds) of each function, timed in interleaved rounds so
    that a slow moment of the machine hits every contender alike."""
    first = [_once(fn) for fn in fns]
    runs = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            runs[i].append(_once(fn))
    medians = [statistics.median(r) for r in runs]
    return [(max(f - m, 0.0), m) for f, m in zip(first, medians, strict=True)]


def baseline_sde(kind: str, h, s, lr: float, n_steps: int, save_every: int):
    """Euler-Maruyama of the SGD / SignSGD SDE on f = ½ Σ h x², scan over steps, vmap over paths."""

    def drift_and_diffusion(x):
        g = h * x
        if kind == "sgd":
            return -g, jnp.sqrt(lr) * s
        m = jsp.erf(g / (jnp.sqrt(2.0) * s))
        return -m, jnp.sqrt(lr) * jnp.sqrt(jnp.clip(1.0 - m**2, 0.0))

    def path(x0, key):
        def step(x, k):
            b, sigma = drift_and_diffusion(x)
            dw = jnp.sqrt(lr) * jax.random.normal(jax.random.fold_in(key, k), x.shape)
            return x + lr * b + sigma * dw, None

        def block(x, i):
            x, _ = jax.lax.scan(step, x, i * save_every + jnp.arange(save_every))
            return x, x

        _, xs = jax.lax.scan(block, x0, jnp.arange(n_steps // save_every))
        xs = jnp.concatenate([x0[None], xs])
        return xs, 0.5 * jnp.sum(h * xs**2, axis=-1)

    return jax.jit(jax.vmap(path))


def baseline_optimizer(kind: str, h, s, lr: float, n_steps: int, save_every: int):
    """x ← x - η u(∇f + s ξ), u = identity (SGD) or sign (SignSGD); same key scheme as sdelens."""
    update = (lambda g: g) if kind == "sgd" else jnp.sign

    def run(x0, key):
        def step(x, k):
            g = h * x + s * jax.random.normal(jax.random.fold_in(key, k), x.shape)
            return x - lr * update(g), None

        def block(x, i):
            x, _ = jax.lax.scan(step, x, i * save_every + jnp.arange(save_every))
            return x, x

        _, xs = jax.lax.scan(block, x0, jnp.arange(n_steps // save_every))
        xs = jnp.concatenate([x0[None], xs])
        return xs, 0.5 * jnp.sum(h * xs**2, axis=-1)

    return jax.jit(jax.vmap(run))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--paths", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if args.quick:
        args.dim, args.paths, args.steps, args.save_every, args.repeats = 10, 64, 100, 10, 2
    d, n, steps, save = args.dim, args.paths, args.steps, args.save_every
    lr = 1e-2
    h, s = jnp.linspace(1.0, 4.0, d), jnp.linspace(0.5, 2.0, d)
    prob = sl.Quadratic(h=h, noise=sl.GaussianNoise(scale=s))
    x0 = jnp.ones(d)
    x0s = jnp.broadcast_to(x0, (n, d))
    keys = jax.random.split(jax.random.key(0), n)

    print(
        f"machine: {platform.machine()} {platform.processor() or ''} | {os.cpu_count()} cores | "
        f"jax {jax.__version__} | devices {jax.devices()}"
    )
    print(f"sizes: d={d}, {n} paths x {steps} steps, save every {save}, median of {args.repeats}\n")
    rows = []
    for kind, opt in (("sgd", sl.SGD(lr=lr)), ("signsgd", sl.SignSGD(lr=lr))):
        sde = sl.sde_for(opt, prob)
        cases = {
            f"simulate {kind}": (
                baseline_sde(kind, h, s, lr, steps, save),
                lambda opt=opt: sl.simulate(opt, prob, x0, steps, n, jax.random.key(1), save).x,
                lambda sde=sde: _solve_paths(sde, diffrax.Euler(), False, x0s, keys, steps, save),
            ),
            f"run_optimizer {kind}": (
                baseline_optimizer(kind, h, s, lr, steps, save),
                lambda opt=opt: (
                    sl.run_optimizer(opt, prob, x0, steps, n, jax.random.key(1), save).x
                ),
                lambda opt=opt: _optimize_paths(opt, prob, x0s, keys, steps, save),
            ),
        }
        for name, (baseline, public, core) in cases.items():
            (base_c, base_t), (pub_c, pub_t), (_, core_t) = timed(
                [lambda b=baseline: b(x0s, keys), public, core], args.repeats
            )
            rows.append((name, base_t, core_t, pub_t, base_c, pub_c))
    header = (
        "| case | baseline s | sdelens core s | sdelens public s | core/baseline | "
        "public/baseline | compile baseline s | compile sdelens s | target <= 1.15x |"
    )
    print(header)
    print("|" + "---|" * 9)
    for name, base_t, core_t, pub_t, base_c, pub_c in rows:
        ratio = pub_t / base_t
        verdict = "PASS" if ratio <= TARGET else "MISS"
        print(
            f"| {name} | {base_t:.3f} | {core_t:.3f} | {pub_t:.3f} | {core_t / base_t:.2f}x | "
            f"{ratio:.2f}x | {base_c:.2f} | {pub_c:.2f} | {verdict} |"
        )


if __name__ == "__main__":
    main()
