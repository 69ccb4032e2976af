"""Entropy-SGD against SGD and Adam on character LSTMs at equal gradient evaluations
(docs/math.md §7.10): does Chaudhari et al.'s recurrent-network result (char-LSTM 1.217 vs Adam
1.226 bits per character) hold here?

    .venv/bin/python benchmarks/entropy_recurrent.py --problems lstm-synthetic --budget 1200
    .venv/bin/python benchmarks/entropy_recurrent.py --problems lstm-text --sensitivity ""

For each problem (`lstm-text`: the Python documentation text; `lstm-synthetic`: a source whose
entropy rate, 1.5538 bits per character, is the best achievable test loss), both with
`--chars` characters in windows of 32 and minibatches of 32:

1. **Tuning**, the same effort per optimizer: four learning rates each, a factor 3 apart
   (Entropy-SGD: four inner step sizes `η'` at the authors' outer step), `--budget` gradient
   evaluations, two tuning seeds (not the evaluation's); the best final test bits per character
   wins.
2. **Evaluation**: the tuned optimizers (and Entropy-SGD with warm start, and with the paper's
   scoping) on `--seeds` fresh seeds, each a different initialisation AND different noise
   (`compute_fair` with `x0` of shape `(n_runs, d)`): test bits per character against
   gradient evaluations, effective epochs and seconds, mean ± standard error, and the paired
   difference Entropy-SGD - Adam (same initialisations).
3. **Sensitivity**: Entropy-SGD's final test bits per character over `γ × L` (two seeds).

Entropy-SGD runs in the authors' recurrent setting (docs/math.md §7.3): `L = 5`, outer step
`x ← x - (x - μ)` (`lr = 1`, `gamma_in_outer_step=False`) with Nesterov momentum 0.9,
`γ = 0.03`, `T = 1e-5`, `α = 0.75`. Not run by the tests; it takes tens of minutes on two
CPU cores. JAX runs in float32; nothing global is changed but the compilation cache.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import sdelens as sl

ENTROPY = {
    "lr": 1.0,
    "gamma": 0.03,
    "inner_steps": 5,
    "temperature": 1e-5,
    "alpha": 0.75,
    "momentum": 0.9,
    "nesterov": True,
    "gamma_in_outer_step": False,
}
# the tuned value: SGD's and Adam's lr, Entropy-SGD's inner step size η'
GRIDS = {
    "sgd": (0.1, 0.3, 1.0, 3.0),
    "adam": (1e-3, 3e-3, 1e-2, 3e-2),
    "entropysgd": (0.1, 0.3, 1.0, 3.0),
}
SENSITIVITY = {"gamma": (0.003, 0.03, 0.3), "inner_steps": (2, 5, 10)}


def make(kind: str, value: float) -> sl.AbstractOptimizer:
    if kind == "sgd":
        return sl.SGD(value, momentum=0.9, nesterov=True)
    if kind == "adam":
        return sl.Adam(value, beta2=0.999)
    return sl.EntropySGD(inner_lr=value, **ENTROPY)


def dataset(name: str, chars: int) -> sl.nn.Dataset:
    if name == "lstm-text":
        return sl.nn.load_text(seq_len=32, max_chars=chars)
    return sl.nn.load_synthetic(seq_len=32, n_chars=chars)


def problem_and_starts(data, seeds, batch: int):
    """The problem and one initialisation per seed, `(len(seeds), d)`."""
    probs = [
        sl.network_problem("lstm", sl.MinibatchNoise(batch), key=jax.random.key(s), data=data)
        for s in seeds
    ]
    return probs[0], jnp.stack([p.x0 for p in probs])


def final_bpc(prob, opt, x0s, budget: int, key) -> np.ndarray:
    """Final test bits per character of each run, `budget` gradients (no timing)."""
    n_steps = budget // opt.grads_per_step
    run = sl.run_optimizer(opt, prob, x0s, n_steps=n_steps, key=key, save_every=n_steps)
    if run.diverged:
        return np.full(x0s.shape[0], np.nan)
    return np.asarray(sl.evaluate(prob, run)["loss"])[:, -1] / np.log(2.0)


def tune(prob, x0s, budget, key) -> dict:
    out = {}
    for kind, values in GRIDS.items():
        scores = [final_bpc(prob, make(kind, v), x0s, budget, key) for v in values]
        means = [float(np.mean(s)) for s in scores]
        best = int(np.nanargmin(means))
        out[kind] = {"values": list(values), "test_bpc": means, "best": values[best]}
        print(
            f"  tune {kind}: {dict(zip(values, np.round(means, 4), strict=True))} -> {values[best]}"
        )
    return out


def mean_se(values) -> tuple[float, float]:
    values = np.asarray(values, float)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


def evaluate_tuned(prob, x0s, best: dict, budget: int, n_saves: int, key) -> dict:
    entropy = make("entropysgd", best["entropysgd"])
    optimizers = {
        "sgd": make("sgd", best["sgd"]),
        "adam": make("adam", best["adam"]),
        "entropysgd": entropy,
        "entropysgd-warm": entropy.replace(warm_start=True),
        "entropysgd-scoped": entropy.replace(scoping=1e-3),
    }
    fair = sl.compute_fair(
        prob,
        list(optimizers.values()),
        x0s,
        grad_budget=budget,
        n_runs=x0s.shape[0],
        n_saves=n_saves,
        key=key,
    )
    rows, curves = {}, {}
    for label, (name, run) in zip(optimizers, fair.runs.items(), strict=True):
        bpc = np.asarray(fair.test_loss[name]) / np.log(2.0)  # (runs, saves)
        final, final_se = mean_se(bpc[:, -1])
        best_so_far, best_se = mean_se(bpc[:, 1:].min(axis=1))
        train, train_se = mean_se(np.asarray(run.loss)[:, -1] / np.log(2.0))
        rows[label] = {
            "hyperparameters": optimizers[label].hyperparameters(),
            "final_test_bpc": final,
            "final_test_bpc_se": final_se,
            "min_test_bpc": best_so_far,
            "min_test_bpc_se": best_se,
            "final_train_bpc": train,
            "final_train_bpc_se": train_se,
            "grad_evals": int(fair.grad_evals[name][-1]),
            "effective_epochs": float(fair.epochs[name][-1]),
            "seconds": float(fair.seconds[name][-1]),
            "diverged": bool(run.diverged),
        }
        curves[label] = {
            "grad_evals": fair.grad_evals[name].tolist(),
            "epochs": fair.epochs[name].tolist(),
            "seconds": fair.seconds[name].tolist(),
            "test_bpc_mean": bpc.mean(axis=0).tolist(),
            "test_bpc_se": (bpc.std(axis=0, ddof=1) / np.sqrt(bpc.shape[0])).tolist(),
        }
        rows[label]["_final_per_run"] = bpc[:, -1].tolist()
    for other in ("adam", "sgd"):
        diff = np.subtract(rows["entropysgd"]["_final_per_run"], rows[other]["_final_per_run"])
        mean, se = mean_se(diff)
        rows[f"entropysgd_minus_{other}"] = {"final_test_bpc": mean, "final_test_bpc_se": se}
    return {"table": rows, "curves": curves}


def sensitivity(prob, x0s, inner_lr: float, budget: int, key) -> dict:
    base = make("entropysgd", inner_lr)
    grid = np.full((len(SENSITIVITY["gamma"]), len(SENSITIVITY["inner_steps"])), np.nan)
    for i, gamma in enumerate(SENSITIVITY["gamma"]):
        for j, steps in enumerate(SENSITIVITY["inner_steps"]):
            opt = base.replace(gamma=gamma, inner_steps=steps)
            grid[i, j] = float(np.mean(final_bpc(prob, opt, x0s, budget, key)))
    print(f"  sensitivity gamma x L (rows gamma {SENSITIVITY['gamma']}):\n{np.round(grid, 3)}")
    return {**{k: list(v) for k, v in SENSITIVITY.items()}, "test_bpc": grid.tolist()}


def figure(reports: list[dict], path: str) -> None:
    """Test bits per character against gradient evaluations and seconds, mean ± 2 SE, one row
    of panels per problem (from the reports this script writes)."""
    import matplotlib.pyplot as plt

    problems = [(n, e) for r in reports for n, e in r["problems"].items()]
    fig, axes = plt.subplots(len(problems), 2, figsize=(11, 4 * len(problems)), squeeze=False)
    for row, (name, entry) in zip(axes, problems, strict=True):
        for i, (label, curve) in enumerate(entry["curves"].items()):
            mean, se = np.asarray(curve["test_bpc_mean"]), np.asarray(curve["test_bpc_se"])
            for ax, x in zip(row, ("epochs", "seconds"), strict=True):
                xs = np.asarray(curve[x])
                ax.plot(xs[1:], mean[1:], "o-", color=f"C{i}", label=label)
                ax.fill_between(
                    xs[1:], (mean - 2 * se)[1:], (mean + 2 * se)[1:], color=f"C{i}", alpha=0.2
                )
        rate = dict(entry["meta"]).get("entropy_rate_bits")
        for ax, x in zip(row, ("effective epochs", "seconds (compilation excluded)"), strict=True):
            if rate is not None:
                ax.axhline(float(rate), color="k", ls="--", lw=1, label="entropy rate")
            ax.set_xlabel(x)
            ax.set_ylabel("test bits per character")
            ax.set_title(name, fontsize=10)
        row[0].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="lstm-synthetic,lstm-text")
    parser.add_argument("--chars", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--budget", type=int, default=600)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--saves", type=int, default=6)
    parser.add_argument("--sensitivity", default="lstm-synthetic")
    parser.add_argument("--out", default="")
    parser.add_argument(
        "--figure", default="", help="PNG of the test curves (needs --out or --from)"
    )
    parser.add_argument("--from", dest="sources", default="", help="reports to draw, no runs")
    args = parser.parse_args()
    if args.sources:
        reports = []
        for source in args.sources.split(","):
            with open(source) as handle:
                reports.append(json.load(handle))
        figure(reports, args.figure or "entropy_recurrent.png")
        return
    report = {"settings": vars(args), "entropy_sgd": ENTROPY, "grids": GRIDS, "problems": {}}
    for name in args.problems.split(","):
        started = time.perf_counter()
        data = dataset(name, args.chars)
        print(f"{name}: {data.n_train} training windows, {data.x_test.shape[0]} test windows")
        prob, tune_starts = problem_and_starts(data, [100, 101], args.batch)
        tuned = tune(prob, tune_starts, args.budget, jax.random.key(1))
        best = {k: v["best"] for k, v in tuned.items()}
        _, starts = problem_and_starts(data, list(range(args.seeds)), args.batch)
        result = evaluate_tuned(prob, starts, best, args.budget, args.saves, jax.random.key(0))
        entry = {"tuning": tuned, **result, "meta": dict(data.meta)}
        if name in args.sensitivity.split(","):
            entry["sensitivity"] = sensitivity(
                prob, tune_starts, best["entropysgd"], args.budget, jax.random.key(2)
            )
        entry["minutes"] = (time.perf_counter() - started) / 60
        report["problems"][name] = entry
        print(f"  {'optimizer':18s} final test bpc     min test bpc      train bpc   epochs")
        for label, row in result["table"].items():
            if "final_train_bpc" not in row:
                print(
                    f"  {label:18s} {row['final_test_bpc']:+.4f} ± {row['final_test_bpc_se']:.4f}"
                )
                continue
            print(
                f"  {label:18s} {row['final_test_bpc']:.4f} ± {row['final_test_bpc_se']:.4f}"
                f"   {row['min_test_bpc']:.4f} ± {row['min_test_bpc_se']:.4f}"
                f"   {row['final_train_bpc']:.4f}   {row['effective_epochs']:.1f}"
            )
        print(f"  ({entry['minutes']:.1f} min)")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=1)
    if args.figure:
        figure([report], args.figure)


if __name__ == "__main__":
    main()
