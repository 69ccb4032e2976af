"""Ensembles of paths: the SDE with diffrax (`simulate`) and the optimizer with optax
(`run_optimizer`), both jitted once over all paths of a chunk."""

from __future__ import annotations

import time
from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from . import _check
from ._ensemble import Histogram, RunStats, run_ensemble
from ._kernels import Coupling, optimize_paths, sde_paths_minor, solve_paths
from ._optimizers import AbstractOptimizer
from ._problems import AbstractProblem
from ._run import Run
from ._sde import sde_for

__all__ = ["simulate", "run_optimizer", "check_key"]


def check_key(key, name: str = "key") -> PRNGKeyArray:
    """A JAX PRNG key (new-style `jax.random.key` or a legacy `uint32[2]`); required, as in JAX
    and diffrax."""
    if key is None:
        raise ValueError(f"{name}=None is invalid: pass a JAX PRNG key, e.g. jax.random.key(0).")
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if isinstance(key, jax.Array) and key.shape == (2,) and key.dtype == jnp.uint32:
        return key
    raise ValueError(f"{name}={key!r} is invalid: a JAX PRNG key (jax.random.key(seed)).")


def _ensemble_options(keep, chunk_size, hist, devices) -> dict:
    _check.choice("keep", keep, ("paths", "stats"))
    if hist is not None and not isinstance(hist, Histogram):
        coords, edges = hist
        hist = Histogram(coords=coords, edges=edges)
    if hist is not None and keep != "stats":
        raise ValueError("hist= needs keep='stats' (with every path kept, histogram run.x).")
    return {"keep": keep, "chunk_size": chunk_size, "hist": hist, "devices": devices}


class _Plan(NamedTuple):
    """A validated ensemble: sizes, one start point and one key per path, chunking options."""

    opt: AbstractOptimizer
    problem: AbstractProblem
    n_steps: int
    save_every: int
    x0s: Float[Array, "n d"]
    keys: PRNGKeyArray
    ensemble: dict


def _prepare(opt, problem, x0, n_steps, n_paths, key, save_every, paths_name: str, ensemble):
    """Validate everything before anything runs."""
    n_steps, save_every = _check.save_grid(n_steps, save_every)
    x0 = problem.check_x0(x0)
    if x0.ndim == 2:
        if n_paths is None:
            n_paths = x0.shape[0]
        elif n_paths != x0.shape[0]:
            raise ValueError(
                f"{paths_name}={n_paths} but x0 has shape {x0.shape}: with x0 of shape "
                f"(n, d), {paths_name} must be n or None."
            )
    n_paths = _check.positive_int(paths_name, 1 if n_paths is None else n_paths)
    keys = jax.random.split(check_key(key), n_paths)
    d = x0.shape[-1]
    loss = jax.eval_shape(problem.loss, jax.ShapeDtypeStruct((d,), x0.dtype))
    if loss.shape != ():
        raise ValueError(
            f"the loss returns an array of shape {loss.shape}: a scalar loss f(x) is required."
        )
    hist = ensemble["hist"]
    if hist is not None and max(hist.coords) >= d:
        raise ValueError(
            f"hist coords={hist.coords} is invalid: the state has coordinates 0..{d - 1}."
        )
    x0s = jnp.broadcast_to(x0, (n_paths, d))
    return _Plan(opt, problem, n_steps, save_every, x0s, keys, ensemble)


def _run(kind: str, core, plan: _Plan, extra: dict, grad_evals: int) -> Run:
    """Run `core` over the ensemble and wrap the result (divergence flags, config) in a `Run`."""
    opt, problem, n_steps, save_every, x0s, keys, ensemble = plan
    started = time.perf_counter()
    states, loss, stats = run_ensemble(core, x0s, keys, **ensemble)
    n_paths = x0s.shape[0]
    steps = np.arange(0, n_steps + 1, save_every)
    count = (stats if stats is not None else RunStats.from_paths(states.x, loss)).count
    bad = count < n_paths
    config = {
        "optimizer": {"name": opt.name, **opt.hyperparameters()},
        "problem": problem.name,
        "noise": problem.noise.label,
        "n_steps": n_steps,
        "n_paths": n_paths,
        "save_every": save_every,
        "keep": ensemble["keep"],
        "chunk_size": ensemble["chunk_size"],
        "devices": len(ensemble["devices"] or jax.local_devices()),
        **extra,
    }
    return Run(
        kind=kind,
        steps=steps,
        ts=steps * opt.lr,
        loss=loss,
        state=states,
        config=config,
        diverged=bool(bad.any()),
        first_bad_step=int(steps[np.argmax(bad)]) if bad.any() else None,
        n_diverged=int(n_paths - count[-1]),
        seconds=time.perf_counter() - started,
        grad_evals=grad_evals,
        stats=stats,
        n_paths=n_paths,
    )


def simulate(
    opt: AbstractOptimizer,
    prob: AbstractProblem,
    x0: Float[Array, " d"] | Float[Array, "n d"],
    n_steps: int,
    n_paths: int | None = None,
    key: PRNGKeyArray | None = None,
    save_every: int = 1,
    *,
    solver: diffrax.AbstractSolver | None = None,
    form: str = "default",
    substeps: int = 1,
    nodes: int | None = None,
    keep: str = "paths",
    chunk_size: int | None = None,
    hist=None,
    devices=None,
) -> Run:
    """Integrate the optimizer's SDE (`sde_for(opt, prob, form)`) for `n_paths` independent
    paths, driven by `key` (required).

    The grid is the optimizer's: `t_k = k·lr`, `k = 0 … n_steps`, fixed steps (those of
    `diffeqsolve` with `StepTo`, forward only), one Brownian motion per path, all paths in one
    jitted call, compiled once for every `n_steps` with the same number of saves. The Brownian
    increments `√Δt ξ` come from a counter-based Threefry hash of `(key_i, t_k, t_{k+1})` fused
    into the step (`CounterBrownianPath`: the law of `diffrax.UnsafeBrownianPath`, 15-20%
    faster per step on CPU). States of at most 12 numbers (Euler, Heun, EulerHeun) are
    integrated as one ensemble with the paths on the minor axis (`EnsembleBrownianPath`), ~3x
    faster than `vmap` over paths at d ≤ 10; in float32 the two layouts draw different numbers
    from the same keys (same law, tested), and the layout depends on the state size and solver
    only.
    `solver` defaults to `diffrax.Euler()` (Euler–Maruyama, Itô, weak order 1). Itô solvers
    (`Euler`, `ItoMilstein`) integrate the Itô SDE; Stratonovich solvers (`Heun`,
    `EulerHeun`, …) get the Itô→Stratonovich drift correction, so every solver approximates the
    same process. `ItoMilstein` assumes commutative noise (true for diagonal noise).

    `x0`: `(d,)` shared by all paths, or `(n_paths, d)`. Saves at steps
    `0, save_every, …, n_steps`; `save_every` must divide `n_steps`. `Run.state` holds the
    SDE's typed state (e.g. `AdamState(x, m, v)`) at every save.

    `substeps > 1` integrates with `dt = lr/substeps` (same saves): closer to the exact SDE
    solution. With `substeps=1` Euler's step is the optimizer's own; for SGD with Gaussian noise
    on a quadratic it *is* the optimizer in law, so measuring the SDE's weak error against the
    optimizer needs `substeps > 1` (see `weak_order`). `form` picks the SDE's published form
    (`sde_for`); `form="moments"` is the moment-matched SDE of any optimizer (`MomentsSDE`,
    docs/math.md §10) with `nodes` quadrature nodes or Monte Carlo draws per evaluation.

    **Scale** (shared with `run_optimizer`): `keep="stats"` keeps only per-save statistics
    (`Run.stats`: finite-path count, mean and variance of the loss and of each coordinate, and
    with `hist=(coords, edges)` histograms of chosen coordinates), so memory does not grow with
    `n_paths × n_saves`. `chunk_size` paths run per jitted call (clamped to `n_paths`, rounded up
    to a multiple of the device count; the last chunk is padded and the padding dropped).
    `devices` (default: all local devices) share each chunk along a `"paths"` mesh axis. Path
    `i` always uses key `split(key, n_paths)[i]`, so neither changes the result.
    """
    options = _ensemble_options(keep, chunk_size, hist, devices)
    plan = _prepare(opt, prob, x0, n_steps, n_paths, key, save_every, "n_paths", options)
    substeps = _check.positive_int("substeps", substeps)
    solver = diffrax.Euler() if solver is None else solver
    if isinstance(solver, diffrax.AbstractItoSolver):
        stratonovich = False
    elif isinstance(solver, diffrax.AbstractStratonovichSolver):
        stratonovich = True
    else:
        raise ValueError(
            f"solver={type(solver).__name__} is invalid: an SDE solver is required "
            "(Itô: Euler, ItoMilstein; Stratonovich: Heun, EulerHeun, Midpoint, ...)."
        )
    sde = sde_for(opt, prob, form=form, nodes=nodes)

    def core(x0s_chunk, keys_chunk, valid, reducer):
        return solve_paths(
            sde,
            solver,
            stratonovich,
            x0s_chunk,
            keys_chunk,
            plan.n_steps,
            plan.save_every,
            substeps,
            reducer=reducer,
            valid=valid,
        )

    extra = {"solver": type(solver).__name__, "form": sde.form, "substeps": substeps}
    if sde.form == "moments":
        extra.update(rule=sde.rule, nodes=sde.nodes)
    return _run("sde", core, plan, extra, grad_evals=plan.n_steps * substeps)


def run_optimizer(
    opt: AbstractOptimizer,
    prob: AbstractProblem,
    x0: Float[Array, " d"] | Float[Array, "n d"],
    n_steps: int,
    n_runs: int | None = None,
    key: PRNGKeyArray | None = None,
    save_every: int = 1,
    *,
    keep: str = "paths",
    chunk_size: int | None = None,
    hist=None,
    devices=None,
    coupled: bool = False,
    solver: diffrax.AbstractSolver | None = None,
    form: str = "default",
    substeps: int = 1,
    nodes: int | None = None,
) -> Run:
    """Run the discrete optimizer `opt.to_optax()` for `n_runs` independent runs, driven by
    `key` (required).

    Step `k` of run `r` sees the stochastic gradient `∇f + Z` (`Z` from the problem's noise
    model) as a function of the standard normals of the step `[t_k, t_{k+1}]`, `t_k = k·lr`, of
    the counter-based Brownian path of `key_r` (the draws `simulate` makes, fused into the
    step; `prob.stochastic_grad_from_normals`). Noise drawn from a key only (`SampledNoise`)
    uses `fold_in(key_r, k)`; Entropy-SGD's inner chain draws its own `inner_steps` gradients
    from keys folded from `fold_in(key_r, k)`, and `Run.grad_evals` counts them. Small states
    run as one ensemble with the runs on the minor axis, others under `vmap`; an outer scan
    over saves, an inner loop over the steps between them, one jit. Saves as `simulate`; times
    `t = k·lr` on the same clock. `Run.state` holds the optimizer's state in its SDE's layout
    (e.g. `AdamState(x, m, v)`). `keep`, `chunk_size`, `hist`, `devices`: as in `simulate`.

    **Coupled** (`coupled=True`, docs/math.md §13): step `k`'s noise is driven by the
    Brownian increment over `[t_k, t_{k+1}]` of the SDE that `simulate(opt, prob, x0, n_steps,
    n_runs, key, save_every, solver=solver, form=form, substeps=substeps, nodes=nodes)`
    integrates with the same `key`, summed over its substeps and standardised
    (`sde.gradient_normals`: the sign that moves both the same way; a quantile map for
    Student-t noise, the `B` examples with the largest normals for minibatch noise). Each
    run's law is unchanged; run `r` and that SDE's path `r` see the same numbers, so their
    difference measures the SDE's error path by path (`compare(..., paired=True)`). A pair
    that cannot be coupled (Entropy-SGD, the Monte Carlo moments rule, `SampledNoise`, exact
    minibatch noise against a diagonal-covariance SDE) is refused before running.
    """
    options = _ensemble_options(keep, chunk_size, hist, devices)
    plan = _prepare(opt, prob, x0, n_steps, n_runs, key, save_every, "n_runs", options)
    if not isinstance(coupled, bool):
        raise ValueError(f"coupled={coupled!r} is invalid: True or False.")
    coupling = None
    if coupled:
        substeps = _check.positive_int("substeps", substeps)
        solver = diffrax.Euler() if solver is None else solver
        sde = sde_for(opt, prob, form=form, nodes=nodes)
        sde.check_coupling(plan.x0s[0])
        coupling = Coupling(sde, substeps, sde_paths_minor(sde, solver, plan.x0s[0]))
    elif (solver, form, substeps, nodes) != (None, "default", 1, None):
        raise ValueError(
            "solver, form, substeps and nodes name the SDE a coupled run is driven by: they "
            "need coupled=True."
        )

    def core(x0s_chunk, keys_chunk, valid, reducer):
        return optimize_paths(
            opt,
            prob,
            x0s_chunk,
            keys_chunk,
            plan.n_steps,
            plan.save_every,
            coupling,
            reducer=reducer,
            valid=valid,
        )

    extra = {"coupled": coupled}
    if coupled:
        extra.update(form=coupling.sde.form, substeps=substeps, solver=type(solver).__name__)
    return _run("optimizer", core, plan, extra, grad_evals=plan.n_steps * opt.grads_per_step)
