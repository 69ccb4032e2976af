"""`sdelens` command line: parse the options, make one API call, save, print.

Every option is declared once, in `OPTIONS`; a command names the options it takes (groups of
them are shared) and may change their defaults. JAX, diffrax and matplotlib are imported inside
the commands, so that `--help` and usage errors answer at once.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import sys
import types
import warnings
from pathlib import Path

import typer

from sdelens import _progress  # no JAX: progress bars and lines on stderr

app = typer.Typer(
    help="Optimizers through the lens of their SDEs: integrate an optimizer's SDE, run the "
    "optimizer under the same noise, and compare.",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
)

OPTIONS = {  # name: (type, default, help)
    "optimizer": (
        str,
        "signsgd",
        "sgd, signsgd, rmsprop, rmspropw, adam, adamw, lion, lionw, sam, usam, entropysgd, or "
        "optax:NAME (any optax optimizer, e.g. optax:adabelief; arguments with --opt-arg).",
    ),
    "opt_arg": (
        list[str],
        [],
        "An argument of the optax:NAME optimizer, key=value, e.g. b1=0.9 (repeatable).",
    ),
    "optimizers": (str, "sgd,signsgd", "Comma-separated optimizers."),
    "lr": (float, 1e-2, "Learning rate (> 0)."),
    "beta": (float, 0.99, "RMSprop(W) decay beta, in [0, 1)."),
    "beta1": (float, 0.9, "Adam(W) and Lion beta1, in [0, 1)."),
    "beta2": (float, 0.99, "Adam(W) and Lion beta2, in [0, 1)."),
    "eps": (float, 1e-8, "RMSprop/Adam eps (outside the square root), >= 0."),
    "weight_decay": (float, 1.0, "Decoupled weight decay of rmspropw/adamw/lionw (> 0)."),
    "rho": (float, 0.05, "SAM/USAM perturbation radius rho (> 0)."),
    "gamma": (float, 1.0, "Entropy-SGD coupling gamma (> 0)."),
    "inner_lr": (float, 0.02, "Entropy-SGD inner step size eta' (> 0)."),
    "inner_steps": (int, 20, "Entropy-SGD inner steps L (>= 1)."),
    "temperature": (float, 0.01, "Entropy-SGD temperature T (>= 0)."),
    "alpha": (float, 0.75, "Entropy-SGD averaging weight alpha in (0, 1]."),
    "momentum": (float, 0.0, "SGD heavy-ball and Entropy-SGD outer momentum, in [0, 1)."),
    "nesterov": (bool, False, "Nesterov momentum (SGD, and Entropy-SGD as the authors' code)."),
    "gamma_in_outer_step": (
        bool,
        True,
        "x <- x - lr*gamma*(x - mu) (paper), else x - lr*(x - mu).",
    ),
    "inner": (str, "sgld", "Entropy-SGD inner sampler: sgld or sghmc."),
    "scoping": (float, 0.0, "Entropy-SGD scoping: gamma_k = gamma (1 + scoping)^k."),
    "friction": (float, 0.1, "Entropy-SGD SGHMC friction, in (0, 1]."),
    "anchor_batches": (int, 1, "Entropy-SGD control variate: anchor gradients per outer step."),
    "variants": (
        str,
        "restart,warm,cv,sghmc,warm-sghmc",
        "Comma-separated Entropy-SGD inner loops: restart, warm, cv, sghmc, warm-sghmc.",
    ),
    "inner_steps_grid": (str, "1,2,5,10,20", "Comma-separated inner steps L (quadratic sweep)."),
    "form": (
        str,
        "default",
        "SDE form: default, malladi (RMSprop, Adam), second_order (SGD), finite_chain "
        "(Entropy-SGD) or moments (the moment-matched SDE of any optimizer; the default of "
        "optax:NAME).",
    ),
    "nodes": (int, 0, "Quadrature nodes or Monte Carlo draws of --form moments (0: default)."),
    "problem": (
        str,
        "quadratic",
        "quadratic, a network (e.g. mlp-digits), mlp/cnn/resnet/transformer with --data, "
        "or module:function returning a problem (README).",
    ),
    "data": (Path, None, "Your .npz dataset, for --problem mlp, cnn, resnet or transformer."),
    "text": (
        Path,
        None,
        "Your UTF-8 text file, for --problem lstm-text or gru-text (instead of the Python "
        "documentation; windows of 32 characters from the first 4000).",
    ),
    "dim": (int, 3, "Dimension d of the quadratic."),
    "cond": (float, 4.0, "Curvatures h = linspace(1, cond, d) of the quadratic."),
    "noise": (str, "gaussian", "gaussian, student-t (quadratic) or minibatch (networks)."),
    "scale": (
        float,
        None,
        "Noise scale: quadratic scale * linspace(1, 2, d) (default 1); "
        "networks a Gaussian std on the full-batch gradient (default 0.01).",
    ),
    "scales": (str, "0.25,0.5,1,2,4", "Comma-separated noise scales (>= 2 values)."),
    "df": (float, 3.0, "Student-t degrees of freedom (> 0; <= 2: infinite variance)."),
    "batch_size": (int, 32, "Minibatch size of --noise minibatch."),
    "covariance": (str, "exact", "Minibatch noise in the SDE: exact or diagonal."),
    "train_size": (
        int,
        None,
        "Use only this many training examples (0: all; compare's default: all, but a subset "
        "for the costliest networks, see its --help).",
    ),
    "weight_decays": (str, "", "Comma-separated weight decays to sweep for rmspropw/adamw."),
    "x0": (float, 1.0, "Start point, every coordinate (unless the problem has x0: networks)."),
    "steps": (int, None, "Optimizer steps (compare: quadratic 2000, networks 200)."),
    "paths": (
        int,
        None,
        "Paths (runs) per ensemble (compare: quadratic 1000, networks 16 or 8, see --help).",
    ),
    "save_every": (int, 10, "Save every n steps (must divide --steps)."),
    "saves": (int, 200, "Saves per run (scaling: must divide steps and steps/kappa)."),
    "solver": (str, "euler", "SDE solver: euler, milstein or heun."),
    "keep": (str, "paths", "paths (every path) or stats (statistics only)."),
    "chunk_size": (int, 0, "Paths per jitted call (0: all at once)."),
    "coupled": (
        bool,
        False,
        "Drive the optimizer's noise with the SDE's Brownian increments (same laws; the weak "
        "error's SE from paired differences, and the strong error).",
    ),
    "substeps": (int, 0, "SDE steps per optimizer step (0: one per gradient evaluation)."),
    "burn_in": (float, 0.5, "Fraction of the horizon discarded before averaging."),
    "kappa": (float, 4.0, "Batch-size factor: B -> kappa B (noise / sqrt(kappa))."),
    "rule": (str, "", "linear, sqrt, malladi or compagnoni; empty: the optimizer's own rule."),
    "rtol": (float, 0.1, "Relative tolerance for 'the rule holds'."),
    "budget": (int, 3000, "Stochastic-gradient evaluations per run."),
    "runs": (int, 4, "Runs per optimizer."),
    "sgd_lr": (float, 0.1, "Baseline SGD learning rate."),
    "adam_lr": (float, 3e-3, "Baseline Adam learning rate."),
    "sweep": (
        list[str],
        [],
        "A sensitivity grid, e.g. 'gamma=0.01,0.1;inner_steps=2,5,10' (repeatable).",
    ),
    "lrs": (str, "0.5,1,2,2.5,3,3.5,4,6", "Comma-separated outer learning rates (> 0)."),
    "gammas": (str, "0.1,0.3,1,3,10,30", "Comma-separated couplings gamma (> 0)."),
    "inner_lrs": (str, "0.01,0.02,0.05", "Comma-separated inner step sizes eta' (> 0)."),
    "temperatures": (str, "0.002,0.01,0.05,0.1,0.3", "Comma-separated temperatures T (> 0)."),
    "network": (bool, True, "Also fit variational inference on a small network."),
    "spectrum": (bool, True, "Hessian spectra at the final points (SLQ)."),
    "landscape": (bool, True, "Local entropy vs smoothing on a two-well landscape."),
    "seed": (int, 0, "Random seed."),
    "out": (Path, Path("results"), "Results directory."),
    "force": (bool, False, "Replace --out if it is an sdelens result (nothing else)."),
}
HYPER = "lr beta beta1 beta2 eps weight_decay gamma inner_lr inner_steps temperature"
HYPER += " momentum nesterov rho opt_arg"
QUADRATIC = "dim cond noise df"
OUTPUT = "seed out force"
# API parameters that the command line spells differently.
SPELLING = {
    "n_steps": "steps",
    "n_paths": "paths",
    "n_runs": "paths",
    "n_saves": "saves",
    "path": "out",
}


def command(*groups: str):
    """Register `fn(o)` as a command taking the options named in `groups` (space-separated;
    `name=value` changes the default), passed as the attributes of `o`. A ValueError is a usage
    error: exit 2, one line that names the option as typed, no traceback."""
    specs = [spec.partition("=") for group in groups for spec in group.split()]
    names = list(dict.fromkeys(name for name, _, _ in specs))  # a later default wins
    defaults = {name: _parse(name, value) for name, sep, value in specs if sep}

    def wrap(fn):
        def option(name):
            kind, default, help_ = OPTIONS[name]
            default = typer.Option(defaults.get(name, default), help=help_)
            return inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind
            )

        @functools.wraps(fn)
        def run(**options):
            try:
                _enable_compilation_cache()
                with _progress.reporting("auto"):  # a bar on a terminal, else lines (stderr)
                    return fn(types.SimpleNamespace(**options))
            except (ValueError, FileExistsError) as err:
                typer.echo(f"Error: {_spell(str(err), options)}", err=True)
                raise typer.Exit(code=2) from None
            except OSError as err:  # the disk failed us after the checks: not a usage error
                typer.echo(f"Error: the results could not be written: {err}", err=True)
                raise typer.Exit(code=1) from None
            finally:
                if "matplotlib.pyplot" in sys.modules:  # figures are on disk: free them
                    sys.modules["matplotlib.pyplot"].close("all")

        run.__signature__ = inspect.Signature([option(name) for name in names])
        return app.command(fn.__name__.replace("_", "-"))(run)

    return wrap


def _parse(name: str, text: str):
    kind = OPTIONS[name][0]
    return text == "True" if kind is bool else kind(text)


def _pick(o, names: str) -> dict:
    """The options `names` (space-separated) as keyword arguments of the same names."""
    return {name: getattr(o, name) for name in names.split()}


def _spell(message: str, options: dict) -> str:
    """`n_runs=0` → `--paths=0`: name the option the user typed, not the API parameter."""
    names = {**{o: o for o in options}, **{k: v for k, v in SPELLING.items() if v in options}}
    # not inside a quoted value: --sweep='gamma=1' keeps the value as typed
    pattern = r"(?<![\w('\"-])(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True))
    spelled = re.sub(pattern + ")=", lambda m: f"--{names[m[1]].replace('_', '-')}=", message)
    return re.sub(r"(--[\w-]+)=True\b", r"\1", spelled)  # flags take no value


def _enable_compilation_cache() -> None:
    """Keep compiled XLA programs on disk between CLI calls (`SDELENS_JAX_CACHE`, default
    `~/.cache/sdelens/jax`; `off` disables it). Only the CLI does this: the library never sets
    global JAX flags."""
    where = os.environ.get("SDELENS_JAX_CACHE", str(Path.home() / ".cache" / "sdelens" / "jax"))
    if where.lower() != "off":
        import jax

        jax.config.update("jax_compilation_cache_dir", where)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
        # JAX writes an entry in place: a command started while another writes the same entry
        # reads it half-written, warns, and compiles the program itself. Nothing is lost.
        warnings.filterwarnings(
            "ignore", "Error reading persistent compilation cache entry", UserWarning
        )


def _say(msg: str) -> None:
    """A message on stderr, through the progress reporter when one is active (above a live bar,
    not across it)."""
    if _progress.active():
        _progress.note(msg)
    else:
        typer.echo(msg, err=True)


def _start(o, command_name: str) -> dict:
    """Refuse a bad `--out` before computing; the options as given, for summary.json."""
    from sdelens import _io

    _io.check_target(o.out, o.force)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(o).items()}
    return {
        "command": command_name,
        **{k: v for k, v in config.items() if k not in ("out", "force")},
    }


def _key(o):
    import jax

    return jax.random.key(o.seed)


def _save(o, config: dict, result, runs: dict, arrays=None) -> None:
    import sdelens as sl

    figures = sl.plot.figures(result)
    summary = {"config": config, "metrics": result.metrics()}
    sl.save(o.out, runs, summary=summary, figures=figures, arrays=arrays, force=o.force)
    typer.echo(f"Results in {o.out}/ (summary.json, runs.npz, {len(figures)} PNG figures)")


def _record_data(config: dict, prob) -> None:
    """The dataset's provenance (origin, SHA-256, ...) in the run's config, where it has one."""
    meta = getattr(getattr(prob, "data", None), "meta", ())
    if meta:
        config["data_provenance"] = dict(meta)


def _cell(value) -> str:
    """A table entry: a statistic without data (NaN) is marked, not printed as a number."""
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.4g}"
    return str(value)


def _table(rows: list[tuple], header: tuple) -> None:
    cells = [tuple(map(str, header))] + [tuple(_cell(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    typer.echo("\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]]))


def _warn(label: str, run) -> None:
    if run.diverged:
        _say(
            f"Warning: {label} diverged (non-finite) at step {run.first_bad_step}; "
            f"{run.n_diverged}/{run.n_paths} paths non-finite at the end. Means use finite paths."
        )


def _save_fair(o, config: dict, study) -> None:
    """Save a study whose runs are its equal-compute runs (`study.fair`), warning about any
    that diverged."""
    for name, run in study.fair.runs.items():
        _warn(name, run)
    _save(o, config, study, study.fair.runs)


COMPARE = (
    "optimizer",
    "final E f opt",
    "final E f SDE",
    "theory E f",
    "max rel err",
    "max z",
    "diverged",
    "verdict (time-averaged gap, 95%)",
)
SLOPES = ("optimizer", "source", "log-log slope vs noise")
SCALING = ("setting", "stationary E f", "SE", "samples to threshold")


def _both(both) -> dict:
    return {"optimizer": both.ref, "sde": both.run}


def _warn_model(name: str, validity: dict | None) -> None:
    """Entropy-SGD's two-timescale model outside its domain (docs/math.md §7.4)."""
    if validity is None or validity["valid"]:
        return
    from sdelens._sde._entropy import VALID_EPS, VALID_RELAXATION

    _say(
        f"Warning: {name}: the two-timescale SDE assumes an inner chain at equilibrium, but its "
        f"relaxation time is {validity['relaxation_steps']:.3g} inner steps against "
        f"L = {validity['inner_steps']} (ratio {validity['relaxation_over_inner_steps']:.2g}, "
        f"valid <= {VALID_RELAXATION:.2g}; eps = {validity['eps']:.2g}, valid <= {VALID_EPS:g}): "
        "expect a gap; --form finite_chain models the finite chain."
    )


def _compare_row(name: str, both) -> tuple:
    _warn(f"{name} optimizer", both.ref)
    _warn(f"{name} SDE", both.run)
    _warn_model(name, both.model_validity)
    m = both.metrics()
    return (
        name,
        m["final_mean_loss"]["optimizer"],
        m["final_mean_loss"]["sde"],
        m.get("stationary_loss", {}).get("theory", float("nan")),
        m["max_rel_mean_loss_error"],
        m["max_z"],
        "yes" if both.ref.diverged or both.run.diverged else "no",
        m["verdict"],
    )


def _start_point(o, prob):
    """The problem's own `x0` (a network's initialisation, or your problem's), else `--x0` in
    each of the problem's `dim` coordinates."""
    import jax.numpy as jnp

    if getattr(prob, "x0", None) is not None:
        return prob.x0
    if prob.dim is None:
        raise ValueError(
            f"problem={o.problem!r} is invalid here: compare needs a start point, and the problem "
            "has neither an x0 nor a dimension for --x0 (e.g. sl.Problem(loss, noise, dim=d))."
        )
    return jnp.full((prob.dim,), o.x0)


def _floats(name: str, text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name}={text!r} is invalid: comma-separated numbers.") from None
    if not values:
        raise ValueError(f"{name}={text!r} is invalid: give at least one value.")
    return values


@command("paths=2000 steps=2000", OUTPUT, "out=results/demo")
def demo(o) -> None:
    """SGD and SignSGD vs their SDEs on the embedded 3-d quadratic; writes results and plots."""
    config = _start(o, "demo")
    import sdelens as sl

    result = sl.studies.demo(n_paths=o.paths, n_steps=o.steps, key=_key(o), progress=_say)
    runs = {f"{n}_{k}": r for n, b in result.results.items() for k, r in _both(b).items()}
    rows = [_compare_row(n, b) for n, b in result.results.items()]
    _save(o, {**config, "problem": sl.studies.DEMO_PROBLEM, "save_every": 10}, result, runs)
    _table(rows, COMPARE)


# A compare at the defaults takes 200 steps x 16 paths x 2 (optimizer and SDE) full-batch
# gradients: on the whole training set the costliest networks took 1-7 minutes on 2 CPU cores.
# Their quick look trains on a subset and/or with fewer paths (benchmarks/README.md times it).
QUICK_LOOK = {  # problem: (training examples, None: all; paths)
    "resnet-digits": (128, 8),
    "transformer-digits": (256, 16),
    "cnn-digits": (512, 16),
    "gru-mnist1d": (128, 8),
    "cnn-mnist1d": (1000, 16),
    "mlp-mnist1d": (1000, 16),
    "lstm-text": (48, 8),
    "gru-text": (48, 8),
    "lstm-synthetic": (48, 8),
}


@command(
    "optimizer form nodes problem data text scale batch_size covariance train_size x0 steps",
    "paths save_every",
    "solver keep",
    "chunk_size coupled substeps",
    HYPER,
    QUADRATIC,
    OUTPUT,
    "out=results/compare",
)
def compare(o) -> None:
    """One optimizer vs its SDE on a quadratic or a network: mean loss over time, stationary law
    (quadratic) or test accuracy (networks), weak error.

    Networks default to a quick look: 200 steps of 16 paths on the whole training set, but
    for the costliest ones a subset and/or fewer paths (resnet-digits 128 examples and 8 paths,
    transformer-digits 256, cnn-digits 512, gru-mnist1d 128 and 8 paths, cnn-mnist1d and
    mlp-mnist1d 1000, the character language models 48 windows and 8 paths; not your `--data`
    or `--text`): `--train-size 0 --paths 16` is the full look."""
    config = _start(o, "compare")
    import diffrax

    import sdelens as sl

    solvers = {"euler": diffrax.Euler, "milstein": diffrax.ItoMilstein, "heun": diffrax.Heun}
    if o.solver not in solvers:
        raise ValueError(f"solver={o.solver!r} is invalid: choose one of {', '.join(solvers)}.")
    opt = sl.optimizer_by_name(o.optimizer, **vars(o))
    options = _pick(o, "noise scale dim cond df batch_size covariance data text")
    quick_size, quick_paths = QUICK_LOOK.get(o.problem, (None, 16))
    if o.train_size is None:  # the quick look's subset of a ready-made dataset, not of yours
        train_size = None if o.data is not None or o.text is not None else quick_size
    else:
        train_size = o.train_size or None
    prob = sl.problem_by_name(o.problem, **options, train_size=train_size, key=_key(o))
    network = isinstance(prob, sl.NetworkProblem)
    _record_data(config, prob)
    steps, paths = (200, quick_paths) if network else (2000, 1000)  # what a quick look needs
    paths = paths if o.paths is None else o.paths
    if network:
        config["train_size"] = prob.data.n_train
        if (o.train_size is None and train_size is not None) or (o.paths is None and paths < 16):
            _say(
                f"{o.problem}: the quick look, {prob.data.n_train} training examples and "
                f"{paths} paths (--train-size 0 --paths 16: the full look)."
            )
    sde = sl.sde_for(opt, prob, form=o.form, nodes=o.nodes or None)  # bad pairs fail here
    _say(f"{opt.name}: optimizer and SDE ({sde.form} form) ...")
    both = sl.optimizer_vs_sde(
        opt,
        prob,
        _start_point(o, prob),
        n_steps=steps if o.steps is None else o.steps,
        n_paths=paths,
        key=_key(o),
        solver=solvers[o.solver](),
        chunk_size=o.chunk_size or None,
        nodes=o.nodes or None,
        substeps=o.substeps or None,
        **_pick(o, "save_every form keep coupled"),
    )
    row = _compare_row(opt.name, both)
    _save(o, config, both, _both(both))
    _table([row], COMPARE)
    if o.coupled:
        m = both.metrics()
        typer.echo(
            f"Coupled runs: standard errors from paired differences, "
            f"{_cell(m['paths_ratio_median'])}x fewer paths than independent runs for the same "
            f"standard error (median over saves); strong error E|x_opt - X_sde| at the end "
            f"{_cell(m['final_strong_error'])} ± {_cell(m['final_strong_error_se'])}."
        )


@command(
    "optimizers scales weight_decays steps=3000 paths=500 save_every burn_in",
    HYPER,
    QUADRATIC,
    OUTPUT,
    "out=results/stationary",
)
def stationary(o) -> None:
    """Stationary loss against the noise level (and weight decay): optimizer, SDE and theory."""
    config = _start(o, "stationary")
    import jax.numpy as jnp

    import sdelens as sl

    names = [n.strip() for n in o.optimizers.split(",")]
    if not all(names):
        raise ValueError(
            f"--optimizers={o.optimizers!r} is invalid: comma-separated names, e.g. 'sgd,signsgd'."
        )
    opts = [sl.optimizer_by_name(n, **vars(o)) for n in names]
    thetas = _floats("--weight-decays", o.weight_decays) if o.weight_decays.strip() else []
    result = sl.studies.stationary_sweeps(
        opts,
        lambda s: sl.Quadratic.standard(o.dim, o.cond, s, noise=o.noise, df=o.df),
        _floats("--scales", o.scales),
        jnp.zeros(o.dim),
        weight_decays=thetas,
        n_steps=o.steps,
        n_paths=o.paths,
        key=_key(o),
        progress=lambda msg: _say(f"  {msg}"),
        **_pick(o, "save_every burn_in"),
    )
    for label, sweep in result.sweeps.items():
        for name, kind in ((n, k) for n, f in sweep.diverged.items() for k in f if f[k]):
            _say(f"Warning: {name} {kind} diverged in the {label} sweep; its points are NaN.")
    _save(o, config, result, {}, arrays=result.arrays())
    slopes = result.noise.slopes
    _table([(n, k, v) for n in slopes for k, v in slopes[n].items()], SLOPES)
    if result.weight_decay is not None:
        loss, values = result.weight_decay.loss, result.weight_decay.values
        _table(
            [(n, t, *(d[k][i] for k in d)) for n, d in loss.items() for i, t in enumerate(values)],
            ("optimizer", "weight decay", "E f opt", "E f SDE", "theory"),
        )


@command(
    "optimizer=adamw kappa rule scale=1.0 x0=0.2 steps=4000 paths=1000 saves rtol",
    HYPER,
    QUADRATIC,
    OUTPUT,
    "out=results/scaling",
)
def scaling(o) -> None:
    """Verify a batch-size scaling rule: base vs scaled setting, per sample processed."""
    config = _start(o, "scaling")
    import jax.numpy as jnp

    import sdelens as sl

    opt = sl.optimizer_by_name(o.optimizer, **vars(o))
    prob = sl.Quadratic.standard(o.dim, o.cond, o.scale, noise=o.noise, df=o.df)
    _say(f"{opt.name}: base and kappa={o.kappa:g} settings, {o.paths} runs each ...")
    check = sl.verify_scaling(
        opt,
        prob,
        jnp.full((o.dim,), o.x0),
        o.kappa,
        o.rule or None,
        n_steps=o.steps,
        n_paths=o.paths,
        key=_key(o),
        n_saves=o.saves,
        rtol=o.rtol,
    )
    _warn("the base run", check.base_run)
    _warn("the scaled run", check.scaled_run)
    _save(o, config, check, {"base": check.base_run, "scaled": check.scaled_run})
    stats = (check.stationary_loss, check.stationary_loss_se, check.samples_to_threshold)
    _table([(k, *(d[k] for d in stats)) for k in ("base", "scaled")], SCALING)
    typer.echo(
        f"rule {check.rule} (kappa={o.kappa:g}) {'holds' if check.holds else 'FAILS'}: floors "
        f"differ by {check.stationary_rel_diff:.1%}, curves by {check.curve_gap:.1%} beyond 4 SE."
    )


def _grid(text: str):
    """`"gamma=0.01,0.1;inner_steps=2,5"` -> `(("gamma", [0.01, 0.1]), ("inner_steps", [2, 5]))`."""
    parts = [part.partition("=") for part in text.split(";")]
    if len(parts) != 2 or not all(sep for _, sep, _ in parts):
        raise ValueError(f"--sweep={text!r} is invalid: two 'name=v1,v2,...' parts joined by ';'.")
    kinds = {"inner_steps": int}
    return tuple(
        (name.strip(), [kinds.get(name.strip(), float)(v) for v in _floats("--sweep", values)])
        for name, _, values in parts
    )


@command(
    "problem=mlp-digits data text noise=minibatch batch_size scale train_size budget runs",
    "saves=10",
    "sgd_lr",
    "adam_lr lr=1.0 gamma=0.03 inner_lr=0.1 inner_steps=5 temperature=1e-5 momentum=0.9",
    "nesterov=True gamma_in_outer_step=False alpha inner scoping sweep spectrum landscape",
    OUTPUT,
    "out=results/entropy",
)
def entropy(o) -> None:
    """Entropy-SGD vs SGD and Adam at equal gradient evaluations on a network; Hessian spectra
    at the points they reach; optional sensitivity grids; local entropy vs smoothing."""
    config = _start(o, "entropy")
    import sdelens as sl

    if o.problem == "quadratic":
        raise ValueError("problem='quadratic' is invalid here: choose a network problem.")
    grids = [_grid(text) for text in o.sweep]
    entropy_sgd = sl.optimizer_by_name("entropysgd", **vars(o))
    options = {**_pick(o, "noise scale batch_size data text"), "train_size": o.train_size or None}
    prob = sl.problem_by_name(o.problem, **options, key=_key(o))
    if not isinstance(prob, sl.NetworkProblem):
        raise ValueError(
            f"problem={o.problem!r} is invalid here: entropy needs a network problem "
            f"(sl.NetworkProblem), not a {type(prob).__name__}."
        )
    _record_data(config, prob)
    study = sl.studies.entropy_study(
        prob,
        entropy_sgd,
        [sl.SGD(o.sgd_lr), sl.Adam(o.adam_lr)],
        grad_budget=o.budget,
        key=_key(o),
        n_runs=o.runs,
        n_saves=o.saves,
        grids=grids,
        spectrum=o.spectrum,
        preference=o.landscape,
        progress=_say,
    )
    _save_fair(o, config, study)
    fields = ["grad_evals", "effective_epochs", "final_loss", "final_test_accuracy", "seconds"]
    header = ["optimizer", "grad evals", "epochs", "final loss", "test acc", "seconds"]
    if prob.data.tokens:  # text: the language-model measure
        fields.insert(4, "final_test_bits_per_char")
        header.insert(5, "test bits/char")
    _table(
        [(n, *(m.get(f, "-") for f in fields)) for n, m in study.fair.metrics().items()],
        tuple(header),
    )


STABILITY = ("gamma", "inner lr", "lr_max theory", "largest stable lr run", "agree")


@command(
    "lrs gammas inner_lrs inner_steps alpha gamma_in_outer_step steps=1000 paths=4 dim cond",
    OUTPUT,
    "out=results/stability",
)
def stability(o) -> None:
    """Entropy-SGD's stability region on the quadratic over a grid (lr, gamma, inner lr):
    the real update run without noise against the theory's closed-form boundary."""
    config = _start(o, "stability")
    import sdelens as sl

    grid = {n: _floats(f"--{n.replace('_', '-')}", getattr(o, n)) for n in ("lrs", "gammas")}
    grid["inner_lrs"] = _floats("--inner-lrs", o.inner_lrs)
    result = sl.studies.entropy_sgd_stability(
        sl.Quadratic.standard(o.dim, o.cond, 1.0),
        **grid,
        **_pick(o, "inner_steps alpha gamma_in_outer_step steps paths"),
        key=_key(o),
        progress=_say,
    )
    _save(o, config, result, {})
    rows = []
    for j, gamma in enumerate(result.gammas):
        for k, inner_lr in enumerate(result.inner_lrs):
            stable = result.lrs[result.numeric_stable[:, j, k]]
            largest = float(stable.max()) if stable.size else float("nan")
            agree = f"{int(result.agree[:, j, k].sum())}/{result.lrs.size}"
            rows.append((gamma, inner_lr, float(result.lr_max[j, k]), largest, agree))
    _table(rows, STABILITY)
    reasons = [d["reason"] for d in result.disagreements()]
    why = ", ".join(f"{reasons.count(r)} {r}" for r in sorted(set(reasons)))
    typer.echo(
        f"Measured and theory agree at {result.agreement:.1%} of {result.agree.size} points"
        + (f" (disagreements: {why})." if why else ".")
    )


VARIATIONAL = ("d", "T", "gamma", "local entropy", "smoothing", "Gaussian LE", "VI (gamma=0)")


@command(
    "temperatures gammas=0.3,1,3 steps=1000 network train_size=64",
    OUTPUT,
    "out=results/variational",
)
def variational(o) -> None:
    """Gaussian variational inference vs local entropy and smoothing: which minimum of the 1-D
    and 2-D two-well landscapes each prefers over (T, gamma), and the learned widths against
    the curvature, on the landscapes and on a small network."""
    config = _start(o, "variational")
    import sdelens as sl

    study = sl.studies.variational_study(
        _floats("--temperatures", o.temperatures),
        _floats("--gammas", o.gammas),
        key=_key(o),
        n_steps=o.steps,
        network=o.network,
        train_size=o.train_size,
        progress=_say,
    )
    _save(o, config, study, {})
    rows = []
    for d, result in study.landscapes.items():
        preferred = result.preferred()
        for i, t in enumerate(result.temperatures):
            for j, gamma in enumerate(result.gammas):
                rows.append(
                    (
                        d,
                        float(t),
                        float(gamma),
                        *(preferred[k][i, j] for k in list(preferred)[:3]),
                        preferred["variational_inference"][i],
                    )
                )
    _table(rows, VARIATIONAL)
    if study.network is not None:
        stats = study.network.agreement("expected")
        typer.echo(
            f"{study.network.name}: learned s^2 vs T/(E_q[H_ii] + gamma) over "
            f"{stats['count']} parameters: log correlation {_cell(stats['log_correlation'])}, "
            f"log-log slope {_cell(stats['loglog_slope'])}, "
            f"{_cell(stats['within_factor_2'])} within a factor 2."
        )


INNER_LOOPS = ("optimizer", "L", "grads/step", "final loss", "SE", "test acc", "test bits/char")
ESTIMATOR = ("variant", "L", "grads/step", "bias^2", "variance", "MSE", "SE")
ESTIMATOR_FIELDS = ("bias2", "variance", "mse", "mse_se")


@command(
    "problem=quadratic dim cond noise df scale batch_size train_size data text x0",
    "lr=0.1 gamma inner_lr inner_steps=10 temperature alpha friction anchor_batches variants",
    "momentum nesterov gamma_in_outer_step",
    "inner_steps_grid budget=2000 runs=8 saves=10 steps=50 paths=400 sgd_lr",
    OUTPUT,
    "out=results/inner-loops",
)
def inner_loops(o) -> None:
    """Entropy-SGD's inner loops at equal gradient evaluations: restarted SGLD, warm start,
    control variate, SGHMC (and SGD); on the quadratic also the bias and variance of the
    local-entropy gradient against gradient evaluations per outer step."""
    config = _start(o, "inner-loops")
    import sdelens as sl

    variants = [v.strip() for v in o.variants.split(",") if v.strip()]
    grid = _floats("--inner-steps-grid", o.inner_steps_grid)
    if not all(v.is_integer() and v >= 1 for v in grid):
        raise ValueError(
            f"--inner-steps-grid={o.inner_steps_grid!r} is invalid: comma-separated integers >= 1."
        )
    base = sl.EntropySGD(
        **_pick(o, "lr gamma inner_lr inner_steps temperature alpha friction momentum"),
        **_pick(o, "nesterov gamma_in_outer_step"),
    )
    options = {
        **_pick(o, "noise scale batch_size data text dim cond df"),
        "train_size": o.train_size or None,
    }
    prob = sl.problem_by_name(o.problem, **options, key=_key(o))
    _record_data(config, prob)
    study = sl.studies.inner_loops(
        prob,
        base,
        _start_point(o, prob),
        grad_budget=o.budget,
        key=_key(o),
        variants=variants,
        baselines=[sl.SGD(o.sgd_lr)],
        anchor_batches=o.anchor_batches,
        n_runs=o.runs,
        n_saves=o.saves,
        inner_steps=[int(v) for v in grid],
        n_steps=o.steps,
        n_paths=o.paths,
        progress=_say,
    )
    _save_fair(o, config, study)
    rows = []
    for name, m in study.fair.metrics().items():
        opt = study.variants.get(name)
        rows.append(
            (
                name,
                opt.inner_steps if opt is not None else "-",
                opt.grads_per_step if opt is not None else 1,
                *(m.get(k, "-") for k in ("final_loss", "final_loss_se")),
                *(m.get(k, "-") for k in ("final_test_accuracy", "final_test_bits_per_char")),
            )
        )
    _table(rows, INNER_LOOPS)
    if study.mse is not None:
        typer.echo(f"local-entropy gradient error (mean |d|^2 = {_cell(study.scale)}):")
        _table(
            [
                (name, int(steps), int(study.grads_per_step[name][j]))
                + tuple(float(getattr(study, k)[name][j]) for k in ESTIMATOR_FIELDS)
                for name in study.mse
                for j, steps in enumerate(study.inner_steps)
            ],
            ESTIMATOR,
        )


def main() -> None:
    """Entry point of the `sdelens` console script."""
    app(prog_name="sdelens")


if __name__ == "__main__":
    main()
