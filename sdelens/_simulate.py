"""Ensembles of paths: the SDE with diffrax (`simulate`) and the optimizer with optax
(`run_optimizer`), both jitted once and vmapped over paths."""

from __future__ import annotations

import functools
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from . import _check
from ._brownian import CounterBrownianPath, EnsembleBrownianPath
from ._ensemble import Histogram, RunStats, run_ensemble
from ._optimizers import AbstractOptimizer
from ._problems import AbstractProblem
from ._run import Run
from ._sde import sde_for

__all__ = ["simulate", "run_optimizer"]


def _check_sizes(n_steps, n_paths, save_every, x0, problem, paths_name):
    n_steps = _check.positive_int("n_steps", n_steps)
    save_every = _check.positive_int("save_every", save_every)
    if n_steps % save_every:
        raise ValueError(
            f"save_every={save_every} does not divide n_steps={n_steps}: saves are at "
            "0, save_every, ..., n_steps, so n_steps must be a multiple of save_every."
        )
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
    return n_steps, n_paths, save_every, jnp.broadcast_to(x0, (n_paths, x0.shape[-1]))


def _check_key(key):
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
        if isinstance(key, jax.Array) and key.shape == (2,) and key.dtype == jnp.uint32:
            return key
        raise ValueError(f"key={key!r} is invalid: a JAX PRNG key (jax.random.key(seed)).")
    return key


def _divergence(finite_count: np.ndarray, n_paths: int, steps: np.ndarray):
    """(diverged, first bad saved step, paths non-finite at the end)."""
    bad = finite_count < n_paths
    first = int(steps[np.argmax(bad)]) if bad.any() else None
    return bool(bad.any()), first, int(n_paths - finite_count[-1])


def _finish(kind, outputs, n_paths, steps, lr, config, started, grad_evals):
    ys, x, loss, stats = outputs
    if stats is None:
        stats_for_flags = RunStats.from_paths(x, loss)
    else:
        stats_for_flags = stats
    diverged, first_bad, n_bad = _divergence(stats_for_flags.count, n_paths, steps)
    keep_state = ys is not None and ys.shape != x.shape
    return Run(
        kind=kind,
        steps=steps,
        ts=steps * lr,
        loss=loss,
        x=x,
        state=ys if keep_state else None,
        config=config,
        diverged=diverged,
        first_bad_step=first_bad,
        n_diverged=n_bad,
        seconds=time.perf_counter() - started,
        grad_evals=grad_evals,
        stats=stats,
        n_paths=n_paths,
    )


def _config(opt, problem, n_steps, n_paths, save_every, ensemble, extra):
    return {
        "optimizer": {"name": opt.name, **opt.hyperparameters()},
        "problem": getattr(problem, "name", type(problem).__name__),
        "noise": type(problem.noise).__name__,
        "n_steps": n_steps,
        "n_paths": n_paths,
        "save_every": save_every,
        "keep": ensemble["keep"],
        "chunk_size": ensemble["chunk_size"],
        "devices": len(ensemble["devices"] or jax.local_devices()),
        **extra,
    }


def _ensemble_options(keep, chunk_size, hist, devices) -> dict:
    if hist is not None and not isinstance(hist, Histogram):
        coords, edges = hist
        hist = Histogram(coords=coords, edges=edges)
    if hist is not None and keep != "stats":
        raise ValueError("hist= needs keep='stats' (with every path kept, histogram run.x).")
    return {"keep": keep, "chunk_size": chunk_size, "hist": hist, "devices": devices}


# Largest SDE state integrated as one ensemble with the paths on the minor axis; larger states
# are integrated path by path under vmap. Measured crossover (benchmarks/README.md).
PATHS_MINOR_MAX_STATE = 12
# Solvers whose step only multiplies the diffusion by increments (Milstein's derivative terms
# would differentiate the whole ensemble as one state).
_PATHS_MINOR_SOLVERS = (diffrax.Euler, diffrax.EulerHeun, diffrax.Heun)


def _integrate(terms, solver, y0, ts, save_every: int):
    """diffrax on the fixed grid `ts`, saving `y0` and every `save_every`-th step."""
    n_steps = ts.shape[0] - 1
    sol = diffrax.diffeqsolve(
        terms,
        solver,
        t0=ts[0],
        t1=ts[-1],
        dt0=None,
        y0=y0,
        stepsize_controller=diffrax.StepTo(ts=ts),
        saveat=diffrax.SaveAt(t0=True, steps=save_every),
        adjoint=diffrax.ForwardMode(),
        max_steps=n_steps,
        throw=False,
    )
    return sol.ys[: n_steps // save_every + 1]


def _ensemble_terms(sde, brownian, stratonovich: bool, n_paths: int):
    """The SDE of `n_paths` independent copies, state `(state, n_paths)`: drift and diffusion
    applied path by path (vmap over the last axis), every path driven by its own `W`."""
    drift = sde.stratonovich_drift if stratonovich else sde.drift
    by_path = functools.partial(jax.vmap, in_axes=-1, out_axes=-1)
    noise_structure = jax.ShapeDtypeStruct((*brownian.shape, n_paths), brownian.dtype)

    def ensemble_drift(t, ys, args):
        return by_path(lambda y: drift(t, y, args))(ys)

    def ensemble_diffusion(t, ys, args):
        def kick(dws):
            return by_path(lambda y, dw: sde.diffusion(t, y, args).mv(dw))(ys, dws)

        return lx.FunctionLinearOperator(kick, noise_structure)

    return diffrax.MultiTerm(
        diffrax.ODETerm(ensemble_drift), diffrax.ControlTerm(ensemble_diffusion, brownian)
    )


@eqx.filter_jit
def _solve_paths(
    sde,
    solver,
    stratonovich,
    x0s,
    keys,
    n_steps: int,
    save_every: int,
    substeps: int = 1,
    paths_minor: bool | None = None,
):
    """`(ys, xs, loss)` of every path, each `(n_paths, n_saves, ·)`.

    Small states (`≤ PATHS_MINOR_MAX_STATE`, or `paths_minor=True`) with Euler, Heun or
    EulerHeun are integrated as one ensemble state `(state, n_paths)`, so XLA's loops run along
    the paths (~3x faster for d ≤ 10); others path by path under `vmap`. Both draw every path's
    noise from its own key only (chunking and sharding do not change a path); in float32 the
    two layouts draw different numbers (same law), in float64 the same ones.
    """
    n_steps, save_every = n_steps * substeps, save_every * substeps
    ts = (sde.lr / substeps) * jnp.arange(n_steps + 1, dtype=x0s.dtype)
    bshape = sde.brownian_shape(x0s[0])
    if paths_minor is None:
        small = sde.initial_state(x0s[0]).size <= PATHS_MINOR_MAX_STATE
        paths_minor = small and type(solver) in _PATHS_MINOR_SOLVERS

    if paths_minor:
        brownian = EnsembleBrownianPath(bshape, keys, x0s.dtype)
        terms = _ensemble_terms(sde, brownian, stratonovich, x0s.shape[0])
        y0s = jnp.moveaxis(jax.vmap(sde.initial_state)(x0s), 0, -1)
        ys = jnp.moveaxis(_integrate(terms, solver, y0s, ts, save_every), -1, 0)
    else:

        def one_path(x0, key):
            brownian = CounterBrownianPath(bshape, key, x0.dtype)
            terms = sde.terms(brownian, stratonovich=stratonovich)
            return _integrate(terms, solver, sde.initial_state(x0), ts, save_every)

        ys = jax.vmap(one_path)(x0s, keys)
    xs = jax.vmap(jax.vmap(sde.parameters))(ys)
    return ys, xs, jax.vmap(jax.vmap(sde.problem.loss))(xs)


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
    keep: str = "paths",
    chunk_size: int | None = None,
    hist=None,
    devices=None,
) -> Run:
    """Integrate the optimizer's SDE (`sde_for(opt, prob)`) for `n_paths` independent paths.

    The grid is the optimizer's: `t_k = k·lr`, `k = 0 … n_steps`, fixed steps (`StepTo`), one
    Brownian motion per path, `ForwardMode` adjoint, all paths in one jitted call. The Brownian
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
    `0, save_every, …, n_steps`; `save_every` must divide `n_steps`.

    `substeps > 1` integrates with `dt = lr/substeps` (same saves): closer to the exact SDE
    solution. With `substeps=1` Euler's step is the optimizer's own; for SGD with Gaussian noise
    on a quadratic it *is* the optimizer in law, so measuring the SDE's weak error against the
    optimizer needs `substeps > 1` (see `weak_order`). `form` picks the SDE's published form
    (`sde_for`).

    **Scale** (shared with `run_optimizer`): `keep="stats"` keeps only per-save statistics
    (`Run.stats`: finite-path count, mean and variance of the loss and of each coordinate, and
    with `hist=(coords, edges)` histograms of chosen coordinates), so memory does not grow with
    `n_paths × n_saves`. `chunk_size` paths run per jitted call (clamped to `n_paths`, rounded up
    to a multiple of the device count; the last chunk is padded and the padding dropped).
    `devices` (default: all local devices) share each chunk along a `"paths"` mesh axis. Path
    `i` always uses key `split(key, n_paths)[i]`, so neither changes the result.
    """
    started = time.perf_counter()
    n_steps, n_paths, save_every, x0s = _check_sizes(
        n_steps, n_paths, save_every, x0, prob, "n_paths"
    )
    key = _check_key(jax.random.key(0) if key is None else key)
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
    ensemble = _ensemble_options(keep, chunk_size, hist, devices)
    sde = sde_for(opt, prob, form=form)
    keys = jax.random.split(key, n_paths)

    def core(x0s_chunk, keys_chunk):
        return _solve_paths(
            sde, solver, stratonovich, x0s_chunk, keys_chunk, n_steps, save_every, substeps
        )

    outputs = run_ensemble(core, x0s, keys, **ensemble)
    steps = np.arange(0, n_steps + 1, save_every)
    extra = {"solver": type(solver).__name__, "form": form, "substeps": substeps}
    config = _config(opt, prob, n_steps, n_paths, save_every, ensemble, extra)
    return _finish("sde", outputs, n_paths, steps, opt.lr, config, started, n_steps * substeps)


@eqx.filter_jit
def _optimize_paths(opt, problem, x0s, keys, n_steps: int, save_every: int):
    # Plain optimizers ignore the extra arguments; Entropy-SGD's inner chain needs them.
    tx = optax.with_extra_args_support(opt.to_optax())

    def full_state(x, opt_state):
        """`(x, m, v, ...)` in the SDE's layout, or `x` for stateless optimizers."""
        moments = opt.moments(opt_state)
        return x if moments is None else jnp.concatenate([x, moments.reshape(-1)])

    def one_run(x0, key):
        def step(carry, k):
            x, state = carry
            key_k = jax.random.fold_in(key, k)
            g = problem.stochastic_grad(x, key_k)
            updates, state = tx.update(
                g, state, x, grad_fn=problem.stochastic_grad, key=jax.random.fold_in(key_k, 1)
            )
            return (optax.apply_updates(x, updates), state), None

        def block(carry, b):
            carry, _ = jax.lax.scan(step, carry, b * save_every + jnp.arange(save_every))
            return carry, full_state(*carry)

        init = (x0, tx.init(x0))
        _, ys = jax.lax.scan(block, init, jnp.arange(n_steps // save_every))
        ys = jnp.concatenate([full_state(*init)[None], ys])
        xs = ys[:, : x0.shape[0]]
        return ys, xs, jax.vmap(problem.loss)(xs)

    return jax.vmap(one_run)(x0s, keys)


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
) -> Run:
    """Run the discrete optimizer `opt.to_optax()` for `n_runs` independent runs.

    Step `k` of run `r` sees the stochastic gradient `prob.stochastic_grad(x, fold_in(key_r, k))`
    (`∇f + Z`, `Z` from the problem's noise model); Entropy-SGD's inner chain draws its own
    `inner_steps` gradients from keys folded from `fold_in(key_r, k)`, and `Run.grad_evals`
    counts them. `lax.scan` over steps (an outer scan over
    saves, so memory grows with the number of saves, not steps) under `vmap` over runs, one jit.
    Saves as `simulate`; times `t = k·lr` on the same clock. For stateful optimizers
    (RMSprop, Adam) `Run.state` holds `(x, m, v)` in the layout of their SDE's state.
    `keep`, `chunk_size`, `hist`, `devices`: as in `simulate`.
    """
    started = time.perf_counter()
    n_steps, n_runs, save_every, x0s = _check_sizes(n_steps, n_runs, save_every, x0, prob, "n_runs")
    key = _check_key(jax.random.key(0) if key is None else key)
    ensemble = _ensemble_options(keep, chunk_size, hist, devices)
    keys = jax.random.split(key, n_runs)

    def core(x0s_chunk, keys_chunk):
        return _optimize_paths(opt, prob, x0s_chunk, keys_chunk, n_steps, save_every)

    outputs = run_ensemble(core, x0s, keys, **ensemble)
    steps = np.arange(0, n_steps + 1, save_every)
    config = _config(opt, prob, n_steps, n_runs, save_every, ensemble, {})
    grad_evals = n_steps * opt.grads_per_step
    return _finish("optimizer", outputs, n_runs, steps, opt.lr, config, started, grad_evals)
