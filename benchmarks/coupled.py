"""Coupled optimizer–SDE runs against independent ones: how many paths each needs for the same
standard error of the weak error, and weak-order slopes from a tenth of the paths.

    python benchmarks/coupled.py            # the table of benchmarks/README.md ("Coupled runs")
    python benchmarks/coupled.py --quick    # tiny sizes, a smoke test

Problem: the command line's standard quadratic (`sl.Quadratic.standard(3)`: h = 1, 2.5, 4,
Gaussian noise of std 1, 1.5, 2, or Student-t noise of df 3 and these scales), `x0 = 1`, `η =
0.01`, 2000 steps saved every 10, the SDE with 4 substeps per optimizer step (with one substep
SGD's coupled SDE *is* its optimizer). For each optimizer both comparisons run on the same
number of paths; the ratio of the two standard errors squared, `(se_independent / se_paired)²`,
is how many times more paths independent runs need for the paired standard error (median over
the saves after the start, and at the save of the largest gap). Then `weak_order` of SGD and
Adam over `η ∈ {0.0125, 0.025, 0.05, 0.1}` on `[0, 2]`: coupled with `paths / 10` against
independent with `paths`.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import sdelens as sl

OPTIMIZERS = {
    "sgd": sl.SGD(lr=0.01),
    "signsgd": sl.SignSGD(lr=0.01),
    "adam": sl.Adam(lr=0.01, beta1=0.9, beta2=0.99),
    "signsgd, student-t (df 3)": sl.SignSGD(lr=0.01),
}


def paths_rows(n_paths: int, n_steps: int, save_every: int, substeps: int) -> list[dict]:
    rows = []
    for name, opt in OPTIMIZERS.items():
        noise = "student-t" if "student" in name else "gaussian"
        prob = sl.Quadratic.standard(3, noise=noise, df=3.0)
        out = {}
        for coupled in (False, True):
            started = time.perf_counter()
            both = sl.optimizer_vs_sde(
                opt, prob, jnp.ones(3), n_steps=n_steps, n_paths=n_paths, save_every=save_every,
                substeps=substeps, coupled=coupled, key=jax.random.key(0),
            )  # fmt: skip
            out[coupled] = (both.comparison, time.perf_counter() - started)
        (free, t_free), (tied, t_tied) = out[False], out[True]
        later = slice(1, None)
        ratio = (tied.se_independent[later] / tied.se_diff[later]) ** 2
        worst = int(np.nanargmax(np.abs(tied.diff[later])))
        rows.append(
            {
                "optimizer": name,
                "paths": n_paths,
                "max rel gap (independent)": free.max_rel_mean_loss_error,
                "max rel gap (coupled)": tied.max_rel_mean_loss_error,
                "SE independent (median)": float(np.median(free.se_diff[later])),
                "SE paired (median)": float(np.median(tied.se_diff[later])),
                "paths ratio (median)": float(np.median(ratio)),
                "paths ratio (at the largest gap)": float(ratio[worst]),
                "strong error (end)": float(tied.strong_error[-1]),
                "seconds independent": t_free,
                "seconds coupled": t_tied,
            }
        )
    return rows


def weak_order_rows(n_paths: int, substeps: int) -> list[dict]:
    rows = []
    prob = sl.Quadratic.standard(3)
    lrs = [0.0125, 0.025, 0.05, 0.1]  # Adam keeps (1 - β₁)/η: β₁ = 0 at η = 0.1
    for name in ("sgd", "adam"):
        opt = OPTIMIZERS[name]
        for coupled, paths in ((False, n_paths), (True, n_paths // 10)):
            started = time.perf_counter()
            w = sl.weak_order(
                opt, prob, lrs=lrs, horizon=2.0, x0=jnp.ones(3), n_paths=paths, n_saves=10,
                substeps=substeps, key=jax.random.key(1), coupled=coupled,
            )  # fmt: skip
            rows.append(
                {
                    "optimizer": name,
                    "coupled": coupled,
                    "paths": paths,
                    "errors": [float(e) for e in w.error],
                    "se": [float(e) for e in w.se],
                    "max se/error": float(np.max(w.se / w.error)),
                    "slope": w.slope,
                    "seconds": time.perf_counter() - started,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--paths", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    paths, steps, every = (64, 100, 10) if args.quick else (args.paths, 2000, 10)
    rows = paths_rows(paths, steps, every, 4)
    print(
        "| optimizer | paths | max rel gap indep. | coupled | SE indep. | SE paired | "
        "paths ratio (median) | at largest gap | strong error (end) | s indep. | s coupled |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['optimizer']} | {r['paths']} | {r['max rel gap (independent)']:.4f} | "
            f"{r['max rel gap (coupled)']:.4f} | {r['SE independent (median)']:.2e} | "
            f"{r['SE paired (median)']:.2e} | {r['paths ratio (median)']:.1f} | "
            f"{r['paths ratio (at the largest gap)']:.1f} | {r['strong error (end)']:.4f} | "
            f"{r['seconds independent']:.1f} | {r['seconds coupled']:.1f} |"
        )
    weak = weak_order_rows(64 if args.quick else 4000, 4)
    print("\n| optimizer | coupled | paths | weak errors | SE | max SE/error | slope | s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in weak:
        errors = ", ".join(f"{e:.2e}" for e in r["errors"])
        ses = ", ".join(f"{e:.1e}" for e in r["se"])
        print(
            f"| {r['optimizer']} | {r['coupled']} | {r['paths']} | {errors} | {ses} | "
            f"{r['max se/error']:.2f} | {r['slope']:.2f} | {r['seconds']:.1f} |"
        )
    if args.json:
        print(json.dumps({"paths": rows, "weak_order": weak}))


if __name__ == "__main__":
    main()
