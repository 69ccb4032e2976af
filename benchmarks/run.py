"""sdelens against baselines of the same computation: one table of ratios measured in one run.

    python benchmarks/run.py                  # the grid below (~12 min on 2 cores)
    python benchmarks/run.py --quick          # tiny sizes, a smoke test
    python benchmarks/run.py --case adam 10 1000 --steps 100   # one case as JSON
    python benchmarks/run.py --case adam 32 1000 --functions simulate   # only its simulate row
    python benchmarks/run.py --functions moments   # only the moments SDE rows, as a table

The last table is `benchmarks/limit.py`'s: `simulate` against the cheapest SDE step this machine
can do, and the share of the memory bandwidth a step reaches. On a GPU or TPU the script runs
unchanged: the backend is detected, the device recorded, and the large path counts sized to the
device's memory (10⁶ to 10⁷).

Problem: the command line's standard quadratic, `sl.Quadratic.standard(d, cond=4.0,
scale=1.0)` (`problem` below, shared by `grid.py` and `vs_torchsde.py`): f = ½ Σ hᵢ xᵢ² with
h = linspace(1, 4, d) and Gaussian gradient noise of std scale · linspace(1, 2, d); x0 = 1.

Grid: SignSGD and Adam, d in {10, 1000}, paths in {1e3, 1e5}, plus one row `simulate adam` at
d = 32 with 1e3 paths (with the d = 10 rows: the typed state's cost at small d); steps chosen so
that each call does ~2e7 coordinate-steps (at least 5, at most 1000), saving at the first and
last step. Each (optimizer, d, paths) case runs in its own process, so its peak RSS is its own.
Rows `moments SDE {signsgd, adam, lion}` at d = 1000 with 1e3 paths (the only rows with Lion).

- `simulate` vs a hand-written `lax.scan` Euler–Maruyama of the same SDE (the SDE's own drift
  and diffusion on its typed state, `jax.random.normal` increments) under `vmap`
  (target <= 1.15x);
- `run_optimizer` vs a hand-written scan of the optimizer's update, `jax.random.normal` noise
  from `fold_in(key, k)` (what one would write; target <= 1.0x: the optimizer draws its noise
  with the SDE's fused counter-based scheme), and vs `simulate` of its SDE on the same problem,
  paths and steps (row `run_optimizer/simulate`, target <= 1.2x);
- `simulate(..., form="moments")`, the moment-matched SDE (`MomentsSDE`, default nodes: 16 for
  the quadrature rule), vs `simulate` with the hand-derived SDE (form default), same steps,
  keys and `keep="stats"` (target <= 3x; "moments" in `--functions`);
- `simulate` vs torchsde's `sdeint` (Euler, SignSGD SDE, same paths and steps, one CPU thread
  each; `vs_torchsde.py`, needs `make bench`'s peers environment) (target >= 8x faster);
- a network problem (`networks.py`): the SGD SDE step vs a full-batch gradient step.

"core" is the jitted function alone (`sdelens._kernels.solve_paths` / `optimize_paths`: the
state named tuple at the saves and the loss, `(states, loss)`, which the baselines compute too);
"public" is the user-facing call with `keep="stats"` (validation, key splitting, statistics on
device, divergence check). Compile time is the first call minus the median of the later ones;
contenders are timed in interleaved rounds (median of `--repeats`) so that a slow moment of the
machine hits all alike. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp

import sdelens as sl
from sdelens._kernels import optimize_paths, solve_paths

HERE = Path(__file__).resolve().parent
TARGET = 1.15
OPTIMIZER_TARGET = 1.0  # run_optimizer against its hand-written scan
OPTIMIZER_VS_SDE_TARGET = 1.2  # run_optimizer against simulate of its SDE
TORCHSDE_TARGET = 8.0
MOMENTS_TARGET = 3.0
LR = 1e-2
# The benchmark problem: `sl.Quadratic.standard(d, cond=COND, scale=SCALE)`.
COND, SCALE = 4.0, 1.0
OPTIMIZERS = ("signsgd", "adam")
FUNCTIONS = ("simulate", "run_optimizer")
# The moment-matched SDE against the hand-derived one (`moments_row`).
MOMENTS = "moments"
MOMENTS_OPTIMIZERS = ("signsgd", "adam", "lion")
# Cases beyond the grid: (optimizer, d, paths, functions).
EXTRA_CASES = (
    ("adam", 32, 1000, ("simulate",)),
    *((name, 1000, 1000, (MOMENTS,)) for name in MOMENTS_OPTIMIZERS),
)
# The smoke test (also run by the test suite) times one moments row, in an existing process.
QUICK_EXTRA_CASES = (("adam", 32, 64, ("simulate", MOMENTS)),)


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


def steps_for(d: int, paths: int) -> int:
    return int(min(1000, max(5, round(2e7 / (d * paths)))))


def problem(d: int) -> sl.Quadratic:
    """The command line's standard quadratic: `h = linspace(1, 4, d)`, Gaussian noise of std
    `SCALE · linspace(1, 2, d)`."""
    return sl.Quadratic.standard(d, cond=COND, scale=SCALE)


def optimizer(name: str):
    return {
        "signsgd": sl.SignSGD(lr=LR),
        "adam": sl.Adam(lr=LR, beta1=0.9, beta2=0.99),
        "lion": sl.Lion(lr=LR),  # beta1 = 0.9, beta2 = 0.99
    }[name]


def baseline_sde(sde, n_steps: int):
    """Euler–Maruyama `y ← y + b(t, y) dt + G(t, y) √dt ξ` with the SDE's own `b` and `G` on
    its typed state, `ξ = jax.random.normal(fold_in(key, k))`: what a user would write by hand
    with JAX. Returns what `solve_paths` returns: `(states, loss)`, the state named tuple at
    the saves (the first and last step) and the loss there."""
    dt = sde.lr

    def path(x0, key):
        y0 = sde.initial_state(x0)
        shape = sde.brownian_shape(x0)

        def step(y, k):
            t = k * dt
            xi = jax.random.normal(jax.random.fold_in(key, k), shape)
            drift = sde.drift(t, y, None)
            kick = sde.diffusion(t, y, None).mv(jnp.sqrt(dt) * xi)
            return jax.tree.map(lambda yi, bi, gi: yi + dt * bi + gi, y, drift, kick), None

        y, _ = jax.lax.scan(step, y0, jnp.arange(n_steps))
        states = jax.tree.map(lambda first, last: jnp.stack([first, last]), y0, y)
        return states, jax.vmap(sde.problem.loss)(sde.parameters(states))

    return jax.jit(jax.vmap(path))


def baseline_optimizer(name: str, prob: sl.Quadratic, opt, n_steps: int):
    """The update written out (SignSGD: `x - η sign(g)`; Adam: bias-corrected, ε outside the
    root), `g = ∇f + Z` from `prob.stochastic_grad(x, fold_in(key, k))` (`jax.random.normal`,
    what one would write; `run_optimizer` draws the same law from the counter-based scheme);
    returns what `optimize_paths` returns: `(states, loss)`, the optimizer's state named tuple
    (`ParamState(x)`, `AdamState(x, m, v)`) at the saves and the loss there."""

    def run(x0, key):
        def step(carry, k):
            x, m, v = carry
            g = prob.stochastic_grad(x, jax.random.fold_in(key, k))
            if name == "signsgd":
                return (x - opt.lr * jnp.sign(g), m, v), None
            m = opt.beta1 * m + (1 - opt.beta1) * g
            v = opt.beta2 * v + (1 - opt.beta2) * g**2
            m_hat = m / (1 - opt.beta1 ** (k + 1))
            v_hat = v / (1 - opt.beta2 ** (k + 1))
            return (x - opt.lr * m_hat / (jnp.sqrt(v_hat) + opt.eps), m, v), None

        zeros = jnp.zeros_like(x0)
        start = (x0, zeros, zeros)
        end, _ = jax.lax.scan(step, start, jnp.arange(n_steps))
        saved = [jnp.stack([first, last]) for first, last in zip(start, end, strict=True)]
        states = sl.ParamState(saved[0]) if name == "signsgd" else sl.AdamState(*saved)
        return states, jax.vmap(prob.loss)(states.x)

    return jax.jit(jax.vmap(run))


def run_case(
    name: str, d: int, paths: int, n_steps: int, repeats: int, functions=FUNCTIONS
) -> list[dict]:
    """Time one (optimizer, d, paths) case: `functions` (simulate, run_optimizer, moments)
    against their baselines."""
    prob, opt = problem(d), optimizer(name)
    sde = sl.sde_for(opt, prob)
    x0 = jnp.ones(d)
    x0s = jnp.broadcast_to(x0, (paths, d))
    keys = jax.random.split(jax.random.key(0), paths)
    key = jax.random.key(1)
    sde_by_hand = baseline_sde(sde, n_steps)
    optimizer_by_hand = baseline_optimizer(name, prob, opt, n_steps)
    contenders = {
        "simulate": (
            lambda: sde_by_hand(x0s, keys),
            lambda: solve_paths(sde, diffrax.Euler(), False, x0s, keys, n_steps, n_steps),
            lambda: sl.simulate(opt, prob, x0, n_steps, paths, key, n_steps, keep="stats").stats,
        ),
        "run_optimizer": (
            lambda: optimizer_by_hand(x0s, keys),
            lambda: optimize_paths(opt, prob, x0s, keys, n_steps, n_steps),
            lambda: (
                sl.run_optimizer(opt, prob, x0, n_steps, paths, key, n_steps, keep="stats").stats
            ),
        ),
    }
    rows = []
    public = {}
    for function in (f for f in functions if f in FUNCTIONS):
        fns = contenders[function]
        (base_c, base_t), (core_c, core_t), (pub_c, pub_t) = timed(
            [fns[0], fns[1], _stats_ready(fns[2])], repeats
        )
        target = OPTIMIZER_TARGET if function == "run_optimizer" else TARGET
        public[function] = (pub_t, pub_c + core_c)
        rows.append(
            {
                "case": f"{function} {name}",
                "d": d,
                "paths": paths,
                "steps": n_steps,
                "baseline": "hand-written lax.scan",
                "baseline_s": base_t,
                "core_s": core_t,
                "sdelens_s": pub_t,
                "compile_baseline_s": base_c,
                # The core's first call compiles what the public call then reuses.
                "compile_sdelens_s": core_c + pub_c,
                "ratio": pub_t / base_t,
                "target": f"<= {target:g}",
                "passed": pub_t / base_t <= target,
            }
        )
    if set(FUNCTIONS) <= set(public):
        (sim_t, sim_c), (opt_t, opt_c) = public["simulate"], public["run_optimizer"]
        rows.append(
            {
                "case": f"run_optimizer/simulate {name}",
                "d": d,
                "paths": paths,
                "steps": n_steps,
                "baseline": "simulate (public call, same run)",
                "baseline_s": sim_t,
                "sdelens_s": opt_t,
                "compile_baseline_s": sim_c,
                "compile_sdelens_s": opt_c,
                "ratio": opt_t / sim_t,
                "target": f"<= {OPTIMIZER_VS_SDE_TARGET:g}",
                "passed": opt_t / sim_t <= OPTIMIZER_VS_SDE_TARGET,
            }
        )
    if MOMENTS in functions:
        rows.append(moments_row(name, d, paths, n_steps, repeats))
    peak = _peak_rss_gb()
    for row in rows:
        row["peak_rss_gb"] = peak
    return rows


def moments_row(name: str, d: int, paths: int, n_steps: int, repeats: int) -> dict:
    """`sl.simulate(..., form="moments")`, the moment-matched SDE at its default nodes, against
    `sl.simulate` with the hand-derived SDE (form default): same problem, steps, keys and
    `keep="stats"`, so the ratio is the cost of one moment-matched step (one gradient, the
    update at every node, the per-coordinate covariance and its Cholesky factor) over one
    hand-derived step."""
    prob, opt = problem(d), optimizer(name)
    x0, key = jnp.ones(d), jax.random.key(1)
    moments = sl.sde_for(opt, prob, form=MOMENTS)

    def call(form):
        def run():
            return sl.simulate(opt, prob, x0, n_steps, paths, key, n_steps, form=form, keep="stats")

        return _stats_ready(lambda: run().stats)

    (base_c, base_t), (mom_c, mom_t) = timed([call("default"), call(MOMENTS)], repeats)
    return {
        "case": f"moments SDE {name}",
        "d": d,
        "paths": paths,
        "steps": n_steps,
        "baseline": f"simulate, {type(sl.sde_for(opt, prob)).__name__} (form default)",
        "baseline_s": base_t,
        "sdelens_s": mom_t,
        "compile_baseline_s": base_c,
        "compile_sdelens_s": mom_c,
        "ratio": mom_t / base_t,
        "target": f"<= {MOMENTS_TARGET:g}",
        "passed": mom_t / base_t <= MOMENTS_TARGET,
        "rule": moments.rule,
        "nodes": moments.nodes,
    }


def _stats_ready(fn):
    """The public calls return numpy statistics: nothing left to block on."""
    return lambda: (fn(), jnp.zeros(()))[1]


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def torchsde_rows(sizes, repeats: int) -> list[dict]:
    import vs_torchsde

    if not vs_torchsde.PEERS_PYTHON.exists():
        print(f"(no {vs_torchsde.PEERS_PYTHON}: torchsde rows skipped; `make bench` creates it)")
        return []
    rows = []
    for d, paths in sizes:
        n_steps = steps_for(d, paths)
        ours, theirs = vs_torchsde.compare(d, paths, n_steps, n_steps, repeats)
        speedup = theirs["seconds"] / ours["seconds"]
        rows.append(
            {
                "case": "simulate signsgd vs torchsde",
                "d": d,
                "paths": paths,
                "steps": n_steps,
                "baseline": "torchsde sdeint (euler), 1 thread",
                "baseline_s": theirs["seconds"],
                "sdelens_s": ours["seconds"],
                "compile_baseline_s": 0.0,
                "compile_sdelens_s": ours["compile"],
                "ratio": ours["seconds"] / theirs["seconds"],
                "target": f">= {TORCHSDE_TARGET:g}x faster ({speedup:.1f}x)",
                "passed": speedup >= TORCHSDE_TARGET,
                "peak_rss_gb": ours["peak_rss_gb"],
            }
        )
    return rows


def network_rows(quick: bool) -> list[dict]:
    args = ["--json"] + (["--quick", "--problem", "mlp-breast-cancer"] if quick else [])
    out = subprocess.run(
        [sys.executable, str(HERE / "networks.py"), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def print_table(rows: list[dict]) -> None:
    print(
        "| case | d | paths | steps | baseline | baseline s | sdelens s | sdelens/baseline | "
        "target | core/baseline | compile baseline s | compile sdelens s | peak RSS GB |"
    )
    print("|" + "---|" * 13)
    for r in rows:
        verdict = "" if r["target"] == "-" else " PASS" if r["passed"] else " MISS"
        core = f"{r['core_s'] / r['baseline_s']:.2f}" if "core_s" in r else "-"
        print(
            f"| {r['case']} | {r['d']} | {r['paths']:g} | {r['steps']} | {r['baseline']} | "
            f"{r['baseline_s']:.3f} | {r['sdelens_s']:.3f} | {r['ratio']:.2f} | "
            f"{r['target']}{verdict} | {core} | {r['compile_baseline_s']:.2f} | "
            f"{r['compile_sdelens_s']:.2f} | {r['peak_rss_gb']:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--case", nargs=3, metavar=("OPTIMIZER", "D", "PATHS"))
    parser.add_argument(
        "--functions",
        nargs="+",
        choices=(*FUNCTIONS, MOMENTS),
        help="the rows of --case (default: simulate run_optimizer); without --case, only the "
        "cases with these rows (no torchsde or network rows)",
    )
    parser.add_argument("--steps", type=int)
    parser.add_argument("--no-peers", action="store_true", help="skip the torchsde rows")
    args = parser.parse_args()
    if args.case:
        name, d, paths = args.case[0], int(args.case[1]), int(args.case[2])
        functions = args.functions or FUNCTIONS
        if name not in OPTIMIZERS and set(functions) - {MOMENTS}:
            parser.error(f"--case {name}: only --functions {MOMENTS} (no hand-written baseline)")
        n_steps = args.steps or steps_for(d, paths)
        print(json.dumps(run_case(name, d, paths, n_steps, args.repeats, functions)))
        return
    import limit  # limit.py imports this module's helpers: imported when run.py is running

    info = limit.device_info()
    dims = (4,) if args.quick else (10, 1000)

    def path_counts(d):
        """10³ and 10⁵ paths on a CPU; on an accelerator 10³ and as many as its memory holds
        (10⁶ to 10⁷, `limit.sized_paths`)."""
        if args.quick:
            return (64,)
        return (1000, limit.sized_paths(d, info, 100_000))

    repeats = 1 if args.quick else args.repeats
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} | {os.cpu_count()} cores | "
        f"jax {jax.__version__} | {jax.device_count()} {jax.default_backend()} device(s): "
        f"{info['device']} | median of {repeats}\n",
        flush=True,
    )
    cases = [
        (name, d, paths, FUNCTIONS) for name in OPTIMIZERS for d in dims for paths in path_counts(d)
    ]
    cases += QUICK_EXTRA_CASES if args.quick else EXTRA_CASES
    if args.functions:
        cases = [
            (name, d, paths, tuple(f for f in functions if f in args.functions))
            for name, d, paths, functions in cases
        ]
        cases = [case for case in cases if case[3]]
    rows = []
    for name, d, paths, functions in cases:
        if args.quick:  # a smoke test: in this process (a fresh one per case measures RSS)
            rows += run_case(name, d, paths, 20, repeats, functions)
            continue
        command = [sys.executable, __file__, "--case", name, str(d), str(paths)]
        command += ["--functions", *functions, "--repeats", str(repeats)]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        rows += json.loads(out.strip().splitlines()[-1])
        print(f"done: {name} d={d} paths={paths}", file=sys.stderr, flush=True)
    if not args.no_peers and not args.functions:
        rows += torchsde_rows([(d, p) for d in dims for p in path_counts(d)], repeats)
    if not args.functions:
        rows += network_rows(args.quick)
    print_table(rows)
    if not args.functions:
        print("\nNear the limit (benchmarks/limit.py): ns per coordinate-step", flush=True)
        if args.quick:
            limit.print_rows(limit.limit_rows(16, 64, 10, 1, info), info)
        else:
            subprocess.run([sys.executable, str(HERE / "limit.py")], check=True)


if __name__ == "__main__":
    main()
