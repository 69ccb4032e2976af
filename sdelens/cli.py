"""`sdelens` command line: parses options, calls the public API, writes results.

JAX, diffrax and matplotlib are imported inside the commands, so that `--help` and usage errors
answer at once.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import typer

app = typer.Typer(
    help="Optimizers through the lens of their SDEs: integrate an optimizer's SDE, run the "
    "optimizer under the same noise, and compare.",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
)

OPTIMIZERS = ("sgd", "signsgd", "rmsprop", "rmspropw", "adam", "adamw", "entropysgd")
FORMS = ("default", "malladi")
NOISES = ("gaussian", "student-t", "minibatch")
PROBLEMS = (
    "quadratic",
    "mlp-breast-cancer",
    "mlp-digits",
    "cnn-digits",
    "resnet-digits",
    "transformer-digits",
)
SOLVERS = ("euler", "milstein", "heun")


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


def _usage_errors(fn):
    """User mistakes exit 2 with one line, no traceback; figures are closed after each command."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileExistsError) as err:
            typer.echo(f"Error: {err}", err=True)
            raise typer.Exit(code=2) from None
        finally:
            import matplotlib.pyplot as plt

            plt.close("all")  # the figures are on disk; a long session must not keep them

    return wrapper


# Hyperparameter options shared by every command that builds an optimizer.
BETA = typer.Option(0.99, help="RMSprop(W) decay beta, in [0, 1).")
BETA1 = typer.Option(0.9, help="Adam(W) beta1, in [0, 1).")
BETA2 = typer.Option(0.99, help="Adam(W) beta2, in [0, 1).")
EPS = typer.Option(1e-8, help="RMSprop/Adam eps (outside the square root), >= 0.")
WEIGHT_DECAY = typer.Option(
    1.0, help="Decoupled weight decay theta of rmspropw/adamw (> 0); ignored by the others."
)
GAMMA = typer.Option(1.0, help="Entropy-SGD coupling gamma (> 0).")
INNER_LR = typer.Option(0.02, help="Entropy-SGD inner (SGLD) step size (> 0).")
INNER_STEPS = typer.Option(20, help="Entropy-SGD inner steps L (>= 1).")
TEMPERATURE = typer.Option(0.01, help="Entropy-SGD temperature T (>= 0).")
# Problem and run options shared by the commands.
DIM = typer.Option(3, help="Dimension d of the quadratic.")
COND = typer.Option(4.0, help="Curvatures h = linspace(1, cond, d).")
NOISE = typer.Option("gaussian", help=f"One of: {', '.join(NOISES)}.")
DF = typer.Option(3.0, help="Student-t degrees of freedom (> 0; <= 2 means infinite variance).")
SEED = typer.Option(0, help="Random seed.")
FORCE = typer.Option(False, help="Overwrite --out if it exists.")


def _optimizer(
    name: str,
    lr: float,
    beta=0.99,
    beta1=0.9,
    beta2=0.99,
    eps=1e-8,
    weight_decay=1.0,
    entropy: dict | None = None,
):
    """The optimizer named on the command line; `rmspropw`/`adamw` take `weight_decay > 0`,
    `entropysgd` the keywords in `entropy` (gamma, inner_lr, inner_steps, temperature)."""
    import sdelens as sl

    if name not in OPTIMIZERS:
        raise ValueError(f"--optimizer={name!r} is invalid: choose one of {', '.join(OPTIMIZERS)}.")
    if name in ("rmspropw", "adamw") and not weight_decay > 0:
        raise ValueError(
            f"--weight-decay={weight_decay} is invalid for {name}: it must be > 0 "
            f"(use --optimizer {name[:-1]} for no weight decay)."
        )
    if name == "entropysgd":
        return sl.EntropySGD(lr=lr, **(entropy or {}))
    theta = weight_decay if name.endswith("w") else 0.0
    if name.startswith("rmsprop"):
        return sl.RMSprop(lr=lr, beta=beta, eps=eps, weight_decay=theta)
    if name.startswith("adam"):
        return sl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=theta)
    return {"sgd": sl.SGD, "signsgd": sl.SignSGD}[name](lr=lr)


def _quadratic(dim: int, cond: float, noise: str, scale: float, df: float):
    """`h = linspace(1, cond, d)`; noise std (scale) grows over the coordinates like `h`."""
    import jax.numpy as jnp

    import sdelens as sl

    if isinstance(dim, bool) or dim < 1:
        raise ValueError(f"--dim={dim} is invalid: must be an integer >= 1.")
    if not cond >= 1:
        raise ValueError(f"--cond={cond} is invalid: the condition number must be >= 1.")
    spread = jnp.linspace(1.0, 2.0, dim) if dim > 1 else jnp.ones(1)
    if noise == "gaussian":
        model = sl.GaussianNoise(scale=scale * spread)
    elif noise == "student-t":
        model = sl.StudentTNoise(df=df, scale=scale * spread)
    else:
        raise ValueError(f"--noise={noise!r} is invalid: choose one of {', '.join(NOISES)}.")
    return sl.Quadratic(h=jnp.linspace(1.0, cond, dim), noise=model)


def _problem(name, *, dim, cond, noise, scale, df, batch_size, covariance, seed):
    """The quadratic (`_quadratic`) or a network problem of `sdelens.network_problem`, with
    `scale` the Gaussian noise std (quadratic default 1, networks 0.01) or minibatch noise."""
    import jax

    import sdelens as sl

    if name not in PROBLEMS:
        raise ValueError(f"--problem={name!r} is invalid: choose one of {', '.join(PROBLEMS)}.")
    if name == "quadratic":
        if noise == "minibatch":
            raise ValueError("--noise=minibatch needs a network --problem (it samples data).")
        return _quadratic(dim, cond, noise, 1.0 if scale is None else scale, df)
    if noise == "gaussian":
        model = sl.GaussianNoise(0.01 if scale is None else scale)
    elif noise == "minibatch":
        model = sl.MinibatchNoise(batch_size, covariance=covariance)
    else:
        raise ValueError(f"--noise={noise!r} is invalid for networks: gaussian or minibatch.")
    return sl.network_problem(name, model, key=jax.random.key(seed))


def _solver(name: str):
    import diffrax

    solvers = {"euler": diffrax.Euler, "milstein": diffrax.ItoMilstein, "heun": diffrax.Heun}
    if name not in solvers:
        raise ValueError(f"--solver={name!r} is invalid: choose one of {', '.join(SOLVERS)}.")
    return solvers[name]()


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise FileExistsError(f"--out={out} exists: pass --force to overwrite it.")


def _table(rows: list[tuple], header: tuple) -> str:
    cells = [tuple(str(c) for c in header)] + [
        tuple(f"{c:.4g}" if isinstance(c, float) else str(c) for c in r) for r in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _warn_divergence(name: str, both) -> None:
    for kind, r in (("optimizer", both.ref), ("SDE", both.run)):
        if r.diverged:
            _say(
                f"Warning: {name} {kind} diverged (non-finite) at step {r.first_bad_step}; "
                f"{r.n_diverged}/{r.n_paths} paths non-finite at the end. Means use finite paths."
            )


def _compare_rows(name: str, both, metrics: dict) -> list[tuple]:
    stat = metrics.get("stationary_loss", {})
    return [
        (
            name,
            metrics["final_mean_loss"]["optimizer"],
            metrics["final_mean_loss"]["sde"],
            stat.get("theory", float("nan")),
            metrics["max_rel_mean_loss_error"],
            metrics["max_z"],
            "yes" if both.ref.diverged or both.run.diverged else "no",
        )
    ]


_COMPARE_HEADER = (
    "optimizer",
    "final E f opt",
    "final E f SDE",
    "theory E f",
    "max rel err",
    "max z",
    "diverged",
)


def _run_compare(
    opt, prob, x0, *, steps, paths, seed, save_every, solver, form="default", keep="paths", chunk=0
):
    import sdelens as sl

    _say(f"{opt.name}: optimizer and SDE ({form} form), {paths} paths x {steps} steps ...")
    started = time.perf_counter()
    both = sl.optimizer_vs_sde(
        opt,
        prob,
        x0,
        n_steps=steps,
        n_paths=paths,
        seed=seed,
        save_every=save_every,
        solver=solver,
        form=form,
        keep=keep,
        chunk_size=chunk or None,
    )
    _say(f"  done in {time.perf_counter() - started:.1f} s")
    _warn_divergence(opt.name, both)
    return both


@app.command()
@_usage_errors
def demo(
    out: Path = typer.Option(Path("results/demo"), help="Results directory."),
    force: bool = FORCE,
    paths: int = typer.Option(2000, help="Paths (runs) per ensemble."),
    steps: int = typer.Option(2000, help="Optimizer steps."),
) -> None:
    """SGD and SignSGD vs their SDEs on the embedded 3-d quadratic; writes results and plots."""
    import jax.numpy as jnp

    import sdelens as sl

    _check_out(out, force)
    prob = sl.Quadratic(
        h=jnp.array([1.0, 2.0, 4.0]), noise=sl.GaussianNoise(scale=jnp.array([0.5, 1.0, 2.0]))
    )
    x0 = jnp.array([1.5, -1.0, 0.5])
    runs, figures, per_opt, rows = {}, {}, {}, []
    for opt in (sl.SGD(lr=1e-2), sl.SignSGD(lr=1e-2)):
        both = _run_compare(
            opt, prob, x0, steps=steps, paths=paths, seed=0, save_every=10, solver=None
        )
        metrics = both.metrics()
        per_opt[opt.name] = metrics
        rows += _compare_rows(opt.name, both, metrics)
        # The first numbers reach the user before the second ensemble and the figures.
        _, loss_opt, loss_sde, theory, *_ = rows[-1]
        _say(f"  final E f: optimizer {loss_opt:.5f}, SDE {loss_sde:.5f}, theory {theory:.5f}")
        runs[f"{opt.name}_optimizer"], runs[f"{opt.name}_sde"] = both.ref, both.run
        figures.update({f"{opt.name}_{k}": v for k, v in both.figures().items()})
    figures["signsgd_phases"] = sl.plot.phases(runs["signsgd_optimizer"], prob.noise, prob)
    summary = {
        "config": {
            "command": "demo",
            "problem": {"h": [1.0, 2.0, 4.0], "noise": "gaussian", "scale": [0.5, 1.0, 2.0]},
            "x0": x0.tolist(),
            "lr": 1e-2,
            "n_steps": steps,
            "n_paths": paths,
            "save_every": 10,
            "seed": 0,
        },
        "metrics": {**per_opt["signsgd"], "optimizers": per_opt},
    }
    sl.save(out, runs, summary=summary, figures=figures, force=force)
    typer.echo(_table(rows, _COMPARE_HEADER))
    typer.echo(f"Results in {out}/ (summary.json, runs.npz, {len(figures)} PNG figures)")


def _config(command: str, params: dict) -> dict:
    """The command's options as they were given, for summary.json."""
    skip = {"out", "force"}
    return {"command": command, **{k: v for k, v in params.items() if k not in skip}}


@app.command("compare")
@_usage_errors
def compare_cmd(
    optimizer: str = typer.Option("signsgd", help=f"One of: {', '.join(OPTIMIZERS)}."),
    lr: float = typer.Option(1e-2, help="Learning rate (> 0)."),
    beta: float = BETA,
    beta1: float = BETA1,
    beta2: float = BETA2,
    eps: float = EPS,
    weight_decay: float = WEIGHT_DECAY,
    gamma: float = GAMMA,
    inner_lr: float = INNER_LR,
    inner_steps: int = INNER_STEPS,
    temperature: float = TEMPERATURE,
    form: str = typer.Option("default", help=f"SDE form, one of: {', '.join(FORMS)}."),
    problem: str = typer.Option("quadratic", help=f"One of: {', '.join(PROBLEMS)}."),
    dim: int = DIM,
    cond: float = COND,
    noise: str = NOISE,
    scale: float = typer.Option(
        None,
        help="Gaussian noise scale. Quadratic (default 1): coordinate i gets "
        "scale * linspace(1, 2, d)[i]; networks (default 0.01): on the full-batch gradient.",
    ),
    df: float = DF,
    batch_size: int = typer.Option(32, help="Minibatch size of --noise minibatch (networks)."),
    covariance: str = typer.Option("exact", help="Minibatch noise in the SDE: exact or diagonal."),
    x0: float = typer.Option(
        1.0, help="Quadratic start point: every coordinate equal to this (networks: their init)."
    ),
    steps: int = typer.Option(None, help="Optimizer steps (quadratic 2000, networks 200)."),
    paths: int = typer.Option(
        None, help="Paths (runs) per ensemble (quadratic 1000, networks 16)."
    ),
    seed: int = SEED,
    save_every: int = typer.Option(10, help="Save every n steps (must divide --steps)."),
    solver: str = typer.Option("euler", help=f"SDE solver, one of: {', '.join(SOLVERS)}."),
    keep: str = typer.Option("paths", help="paths (every path) or stats (statistics only)."),
    chunk_size: int = typer.Option(0, help="Paths per jitted call (0: all at once)."),
    out: Path = typer.Option(Path("results/compare"), help="Results directory."),
    force: bool = FORCE,
) -> None:
    """One optimizer vs its SDE on a quadratic or a network: mean loss over time, stationary law
    (quadratic) or test accuracy (networks), weak error."""
    config = _config("compare", locals())
    import jax.numpy as jnp

    import sdelens as sl

    _check_out(out, force)
    entropy = {
        "gamma": gamma,
        "inner_lr": inner_lr,
        "inner_steps": inner_steps,
        "temperature": temperature,
    }
    opt = _optimizer(optimizer, lr, beta, beta1, beta2, eps, weight_decay, entropy)
    prob = _problem(
        problem,
        dim=dim,
        cond=cond,
        noise=noise,
        scale=scale,
        df=df,
        batch_size=batch_size,
        covariance=covariance,
        seed=seed,
    )
    network = problem != "quadratic"
    steps = steps if steps is not None else (200 if network else 2000)
    paths = paths if paths is not None else (16 if network else 1000)
    both = _run_compare(
        opt,
        prob,
        prob.x0 if network else jnp.full((dim,), x0),
        steps=steps,
        paths=paths,
        seed=seed,
        save_every=save_every,
        solver=_solver(solver),
        form=form,
        keep=keep,
        chunk=chunk_size,
    )
    metrics = both.metrics()
    figures = both.figures()
    if optimizer == "signsgd" and keep == "paths" and not network:
        figures["phases"] = sl.plot.phases(both.ref, prob.noise, prob)
    sl.save(
        out,
        {"optimizer": both.ref, "sde": both.run},
        summary={"config": config, "metrics": metrics},
        figures=figures,
        force=force,
    )
    typer.echo(_table(_compare_rows(opt.name, both, metrics), _COMPARE_HEADER))
    typer.echo(f"Results in {out}/")


def _floats(name: str, text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(
            f"{name}={text!r} is invalid: a comma-separated list of numbers."
        ) from None
    if not values:
        raise ValueError(f"{name}={text!r} is invalid: give at least one value.")
    return values


@app.command("stationary")
@_usage_errors
def stationary_cmd(
    optimizers: str = typer.Option("sgd,signsgd", help="Comma-separated optimizers."),
    scales: str = typer.Option(
        "0.25,0.5,1,2,4", help="Comma-separated noise scales (>= 2 values)."
    ),
    weight_decays: str = typer.Option(
        "", help="Comma-separated weight decays: also sweep them for rmspropw/adamw."
    ),
    lr: float = typer.Option(1e-2, help="Learning rate (> 0)."),
    beta: float = BETA,
    beta1: float = BETA1,
    beta2: float = BETA2,
    eps: float = EPS,
    weight_decay: float = WEIGHT_DECAY,
    dim: int = DIM,
    cond: float = COND,
    noise: str = NOISE,
    df: float = DF,
    steps: int = typer.Option(3000, help="Optimizer steps per run (start at the minimum)."),
    paths: int = typer.Option(500, help="Paths per ensemble."),
    seed: int = SEED,
    save_every: int = typer.Option(10, help="Save every n steps (must divide --steps)."),
    burn_in: float = typer.Option(0.5, help="Fraction of the horizon discarded before averaging."),
    out: Path = typer.Option(Path("results/stationary"), help="Results directory."),
    force: bool = FORCE,
) -> None:
    """Stationary loss against the noise level (and weight decay): optimizer, SDE and theory."""
    config = _config("stationary", locals())
    import jax.numpy as jnp

    import sdelens as sl

    _check_out(out, force)
    names = [n.strip() for n in optimizers.split(",") if n.strip()]
    opts = [_optimizer(n, lr, beta, beta1, beta2, eps, weight_decay) for n in names]
    levels = _floats("--scales", scales)
    if len(levels) < 2:
        raise ValueError(f"--scales={scales!r} is invalid: a slope needs at least 2 noise levels.")
    thetas = _floats("--weight-decays", weight_decays) if weight_decays.strip() else []
    decayed = [o for o in opts if getattr(o, "weight_decay", 0.0) > 0]
    if thetas and not decayed:
        raise ValueError("--weight-decays needs rmspropw or adamw among --optimizers.")
    _quadratic(dim, cond, noise, levels[0], df)  # validates the options before any run
    sizes = dict(n_steps=steps, n_paths=paths, seed=seed, save_every=save_every, burn_in=burn_in)
    progress = lambda msg: _say(f"  {msg}")  # noqa: E731
    sweeps = {
        "noise_scaling": sl.noise_sweep(
            opts,
            lambda s: _quadratic(dim, cond, noise, s, df),
            levels,
            jnp.zeros(dim),
            progress=progress,
            **sizes,
        )
    }
    if thetas:
        sweeps["weight_decay"] = sl.weight_decay_sweep(
            decayed,
            _quadratic(dim, cond, noise, levels[-1], df),
            thetas,
            jnp.zeros(dim),
            progress=progress,
            **sizes,
        )
    _save_sweeps(out, sweeps, config, force)
    rows = [(n, k, v) for n, d in sweeps["noise_scaling"].slopes.items() for k, v in d.items()]
    typer.echo(_table(rows, ("optimizer", "source", "log-log slope vs noise")))
    if thetas:
        sweep = sweeps["weight_decay"]
        rows = [
            (n, f"{theta:g}", *(float(d[k][i]) for k in ("optimizer", "sde", "theory")))
            for n, d in sweep.loss.items()
            for i, theta in enumerate(sweep.values)
        ]
        typer.echo(_table(rows, ("optimizer", "weight decay", "E f opt", "E f SDE", "theory")))
    typer.echo(f"Results in {out}/")


def _save_sweeps(out: Path, sweeps: dict, config: dict, force: bool) -> None:
    """Sweeps keep their curves (runs.npz extra arrays), not the hundreds of runs behind them."""
    import sdelens as sl

    arrays, metrics, figures = {}, {}, {}
    for label, sweep in sweeps.items():
        for name, flags in sweep.diverged.items():
            for kind, bad in flags.items():
                if bad:
                    _say(
                        f"Warning: {name} {kind} diverged in the {label} sweep; its points are NaN."
                    )
        arrays[f"{label}/values"] = sweep.values
        for name, by_kind in sweep.loss.items():
            for kind, values in by_kind.items():
                arrays[f"{label}/{name}/{kind}/loss"] = values
                arrays[f"{label}/{name}/{kind}/se"] = sweep.se[name][kind]
        metrics[label] = sweep.metrics()
        figures[label] = sweep.figure()
    summary = {"config": config, "metrics": metrics}
    sl.save(out, {}, summary=summary, figures=figures, arrays=arrays, force=force)


@app.command("scaling")
@_usage_errors
def scaling_cmd(
    optimizer: str = typer.Option("adamw", help=f"One of: {', '.join(OPTIMIZERS)}."),
    kappa: float = typer.Option(4.0, help="Batch-size factor: B -> kappa B (noise / sqrt(kappa))."),
    rule: str = typer.Option(
        "", help="linear, sqrt, malladi or compagnoni; empty: the optimizer's own rule."
    ),
    lr: float = typer.Option(1e-2, help="Base learning rate (> 0)."),
    beta: float = BETA,
    beta1: float = BETA1,
    beta2: float = BETA2,
    eps: float = EPS,
    weight_decay: float = WEIGHT_DECAY,
    dim: int = DIM,
    cond: float = COND,
    scale: float = typer.Option(1.0, help="Base noise scale (Gaussian)."),
    x0: float = typer.Option(0.2, help="Start point (small: the noise-dominated regime)."),
    steps: int = typer.Option(
        4000, help="Base optimizer steps (the scaled run takes steps/kappa)."
    ),
    paths: int = typer.Option(1000, help="Runs per setting."),
    saves: int = typer.Option(400, help="Saves per run (must divide steps and steps/kappa)."),
    seed: int = SEED,
    rtol: float = typer.Option(0.1, help="Relative tolerance for 'the rule holds'."),
    out: Path = typer.Option(Path("results/scaling"), help="Results directory."),
    force: bool = FORCE,
) -> None:
    """Verify a batch-size scaling rule: base vs scaled setting, per sample processed."""
    config = _config("scaling", locals())
    import jax.numpy as jnp

    import sdelens as sl

    _check_out(out, force)
    opt = _optimizer(optimizer, lr, beta, beta1, beta2, eps, weight_decay)
    prob = _quadratic(dim, cond, "gaussian", scale, 3.0)
    _say(f"{opt.name}: base and kappa={kappa:g} settings, {paths} runs each ...")
    check = sl.verify_scaling(
        opt,
        prob,
        jnp.full((dim,), x0),
        kappa,
        rule or None,
        n_steps=steps,
        n_paths=paths,
        seed=seed,
        n_saves=saves,
        rtol=rtol,
    )
    for name, r in (("base", check.base_run), ("scaled", check.scaled_run)):
        if r.diverged:
            _say(f"Warning: the {name} run diverged at step {r.first_bad_step}.")
    metrics = check.metrics()
    figures = {"scaling": sl.plot.scaling(check)}
    runs = {"base": check.base_run, "scaled": check.scaled_run}
    sl.save(out, runs, summary={"config": config, "metrics": metrics}, figures=figures, force=force)
    rows = [
        (k, check.stationary_loss[k], check.stationary_loss_se[k], check.samples_to_threshold[k])
        for k in ("base", "scaled")
    ]
    typer.echo(_table(rows, ("setting", "stationary E f", "SE", "samples to threshold")))
    verdict = "holds" if check.holds else "FAILS"
    typer.echo(
        f"rule {check.rule} (kappa={kappa:g}) {verdict}: floors differ by "
        f"{check.stationary_rel_diff:.1%}, curves by {check.curve_gap:.1%} beyond 4 SE."
    )
    typer.echo(f"Results in {out}/")


def _enable_compilation_cache() -> None:
    """Keep compiled XLA programs on disk between CLI calls (`SDELENS_JAX_CACHE`, default
    `~/.cache/sdelens/jax`; `off` disables it). Only the CLI does this: the library never sets
    global JAX flags."""
    import os

    where = os.environ.get("SDELENS_JAX_CACHE", str(Path.home() / ".cache" / "sdelens" / "jax"))
    if where.lower() == "off":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)


def _sweep_axes(text: str) -> list[tuple[str, list]]:
    """`"gamma=0.01,0.1;inner_steps=2,5"` -> `[("gamma", [0.01, 0.1]), ("inner_steps", [2, 5])]`."""
    axes = []
    for part in text.split(";"):
        name, sep, values = part.partition("=")
        if not sep or name.strip() not in ENTROPY_SWEEPABLE:
            raise ValueError(
                f"--sweep={text!r} is invalid: two 'name=v1,v2,...' parts joined by ';', names "
                f"from {', '.join(ENTROPY_SWEEPABLE)}."
            )
        numbers = _floats("--sweep", values)
        if name.strip() == "inner_steps":
            numbers = [int(v) for v in numbers]
        axes.append((name.strip(), numbers))
    if len(axes) != 2:
        raise ValueError(f"--sweep={text!r} is invalid: exactly two hyperparameters.")
    return axes


ENTROPY_SWEEPABLE = ("gamma", "inner_steps", "temperature", "inner_lr", "lr", "alpha")


@app.command("entropy")
@_usage_errors
def entropy_cmd(
    problem: str = typer.Option("mlp-digits", help=f"Network: {', '.join(PROBLEMS[1:])}."),
    noise: str = typer.Option("minibatch", help="minibatch or gaussian."),
    batch_size: int = typer.Option(32, help="Minibatch size (--noise minibatch)."),
    scale: float = typer.Option(0.01, help="Gaussian noise std (--noise gaussian)."),
    train_size: int = typer.Option(0, help="Use only this many training examples (0: all)."),
    budget: int = typer.Option(3000, help="Stochastic-gradient evaluations per run."),
    runs: int = typer.Option(4, help="Runs per optimizer."),
    saves: int = typer.Option(10, help="Saves per run."),
    sgd_lr: float = typer.Option(0.1, help="Baseline SGD learning rate."),
    adam_lr: float = typer.Option(3e-3, help="Baseline Adam learning rate."),
    lr: float = typer.Option(1.0, help="Entropy-SGD outer learning rate eta."),
    gamma: float = typer.Option(0.03, help="Entropy-SGD coupling gamma (> 0)."),
    inner_lr: float = typer.Option(0.1, help="Entropy-SGD inner step size eta' (> 0)."),
    inner_steps: int = typer.Option(5, help="Entropy-SGD inner steps L (>= 1)."),
    temperature: float = typer.Option(1e-5, help="Entropy-SGD temperature T (>= 0)."),
    alpha: float = typer.Option(0.75, help="Entropy-SGD averaging weight alpha in (0, 1]."),
    momentum: float = typer.Option(0.9, help="Entropy-SGD outer momentum in [0, 1)."),
    nesterov: bool = typer.Option(True, help="Nesterov momentum (the authors' code)."),
    gamma_in_outer_step: bool = typer.Option(
        False, help="x <- x - lr*gamma*(x - mu) (paper) instead of x - lr*(x - mu) (code)."
    ),
    inner: str = typer.Option("sgld", help="Inner sampler: sgld or sghmc."),
    scoping: float = typer.Option(0.0, help="gamma_k = gamma (1 + scoping)^k."),
    sweep: list[str] = typer.Option(
        [],
        help="Sensitivity grid over two hyperparameters, e.g. "
        "'gamma=0.01,0.03,0.1;inner_steps=2,5,10'; repeat for more grids (e.g. "
        "'temperature=1e-5,1e-3;inner_lr=0.03,0.1').",
    ),
    spectrum: bool = typer.Option(True, help="Hessian spectra at the final points (SLQ)."),
    landscape: bool = typer.Option(True, help="Local entropy vs smoothing on a 1-D landscape."),
    seed: int = SEED,
    out: Path = typer.Option(Path("results/entropy"), help="Results directory."),
    force: bool = FORCE,
) -> None:
    """Entropy-SGD vs SGD and Adam at equal gradient evaluations on a network; Hessian spectra
    at the points they reach; optional sensitivity grid; local entropy vs smoothing."""
    config = _config("entropy", locals())
    import jax
    import numpy as np

    import sdelens as sl

    _check_out(out, force)
    if problem not in PROBLEMS[1:]:
        raise ValueError(
            f"--problem={problem!r} is invalid: choose one of {', '.join(PROBLEMS[1:])}."
        )
    grids = [_sweep_axes(text) for text in sweep]
    if noise == "minibatch":
        model = sl.MinibatchNoise(batch_size)
    elif noise == "gaussian":
        model = sl.GaussianNoise(scale)
    else:
        raise ValueError(f"--noise={noise!r} is invalid: minibatch or gaussian.")
    prob = sl.network_problem(
        problem, model, key=jax.random.key(seed), train_size=train_size or None
    )
    entropy = sl.EntropySGD(
        lr=lr,
        gamma=gamma,
        inner_lr=inner_lr,
        inner_steps=inner_steps,
        temperature=temperature,
        alpha=alpha,
        momentum=momentum,
        nesterov=nesterov,
        gamma_in_outer_step=gamma_in_outer_step,
        inner=inner,
        scoping=scoping,
    )
    optimizers = [sl.SGD(sgd_lr), sl.Adam(adam_lr), entropy]
    _say(
        f"{problem} (d={prob.dim}): {len(optimizers)} optimizers x {runs} runs, {budget} "
        "gradient evaluations each ..."
    )
    fair = sl.compute_fair(
        prob, optimizers, grad_budget=budget, n_runs=runs, n_saves=saves, seed=seed
    )
    metrics, figures = {"compute_fair": fair.metrics()}, fair.figures()
    for name, run in fair.runs.items():
        if run.diverged:
            _say(f"Warning: {name} diverged at step {run.first_bad_step}.")
    rows = [
        (
            name,
            m["grad_evals"],
            m["effective_epochs"],
            m["final_loss"],
            m["final_test_accuracy"],
            m["seconds"],
        )
        for name, m in metrics["compute_fair"].items()
    ]
    if spectrum:
        _say("Hessian spectra (Lanczos + SLQ) at each optimizer's final point of run 0 ...")
        spectra = {
            name: sl.hessian_spectrum(prob, run.x[0, -1], jax.random.key(seed))
            for name, run in fair.runs.items()
            if np.all(np.isfinite(run.x[0, -1]))
        }
        metrics["hessian"] = {
            name: {
                "top_eigenvalues": s.top.tolist(),
                "trace": s.trace,
                "trace_se": s.trace_se,
                "near_zero_fraction": s.near_zero_fraction,
            }
            for name, s in spectra.items()
        }
        figures["hessian_spectra"] = sl.plot.hessian_spectra(spectra)
    for (x_name, x_values), (y_name, y_values) in grids:
        _say(f"Sensitivity grid {x_name} x {y_name} ({len(x_values) * len(y_values)} settings) ...")
        grid = sl.sensitivity(
            prob,
            entropy,
            x_name,
            x_values,
            y_name,
            y_values,
            grad_budget=budget,
            n_runs=max(runs // 2, 1),
            seed=seed,
        )
        metrics.setdefault("sensitivity", []).append(
            {
                "x": x_name,
                "x_values": x_values,
                "y": y_name,
                "y_values": y_values,
                "final_loss": grid.loss.tolist(),
                "final_test_accuracy": grid.accuracy.tolist(),
                "diverged": grid.diverged.tolist(),
            }
        )
        figures[f"sensitivity_{x_name}_{y_name}"] = sl.plot.sensitivity(grid)
    if landscape:
        loss, narrow, wide = sl.flatness.two_minima()
        temperatures, gammas = [0.002, 0.01, 0.05, 0.1, 0.3], [0.3, 1.0, 3.0]
        pref = sl.minimum_preference(loss, narrow, wide, temperatures, gammas)
        metrics["preference"] = {
            "temperatures": temperatures,
            "gammas": gammas,
            "entropy_wide_minus_narrow": pref.entropy_gap.tolist(),
            "smoothing_wide_minus_narrow": pref.smoothing_gap.tolist(),
        }
        figures["preference"] = sl.plot.preference(pref)
        figures["landscape"] = sl.plot.landscape(
            loss, narrow, wide, gamma=1.0, temperatures=[0.01, 0.15]
        )
    sl.save(
        out, fair.runs, summary={"config": config, "metrics": metrics}, figures=figures, force=force
    )
    header = ("optimizer", "grad evals", "epochs", "final loss", "test acc", "seconds")
    typer.echo(_table(rows, header))
    typer.echo(f"Results in {out}/")


def main() -> None:
    """Entry point of the `sdelens` console script."""
    _enable_compilation_cache()
    app(prog_name="sdelens")


if __name__ == "__main__":
    main()
