"""Ensembles of paths: the SDE with diffrax (`simulate`) and the optimizer with optax
(`run_optimizer`), both jitted once and vmapped over paths."""

from __future__ import annotations

import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from . import _check
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


def _divergence(x_saved: np.ndarray, steps: np.ndarray):
    """(diverged, first bad saved step, paths non-finite at the end)."""
    bad = ~np.all(np.isfinite(x_saved), axis=-1)  # (n_paths, S)
    any_bad = bad.any(axis=0)
    first = int(steps[np.argmax(any_bad)]) if any_bad.any() else None
    return bool(any_bad.any()), first, int(bad[:, -1].sum())


def _finish(kind, ys, x, loss, steps, lr, config, started, keep_state):
    x, loss = np.asarray(x), np.asarray(loss)
    diverged, first_bad, n_bad = _divergence(x, steps)
    n_steps = int(steps[-1])
    return Run(
        kind=kind,
        steps=steps,
        ts=steps * lr,
        loss=loss,
        x=x,
        state=np.asarray(ys) if keep_state else None,
        config=config,
        diverged=diverged,
        first_bad_step=first_bad,
        n_diverged=n_bad,
        seconds=time.perf_counter() - started,
        grad_evals=n_steps,
    )


def _config(opt, problem, n_steps, n_paths, save_every, extra):
    return {
        "optimizer": {"name": opt.name, **opt.hyperparameters()},
        "problem": type(problem).__name__,
        "noise": type(problem.noise).__name__,
        "n_steps": n_steps,
        "n_paths": n_paths,
        "save_every": save_every,
        **extra,
    }


@eqx.filter_jit
def _solve_paths(
    sde, solver, stratonovich, x0s, keys, n_steps: int, save_every: int, substeps: int = 1
):
    n_steps, save_every = n_steps * substeps, save_every * substeps
    ts = (sde.lr / substeps) * jnp.arange(n_steps + 1, dtype=x0s.dtype)

    def one_path(x0, key):
        y0 = sde.initial_state(x0)
        brownian = diffrax.UnsafeBrownianPath(shape=sde.brownian_shape(x0), key=key)
        sol = diffrax.diffeqsolve(
            sde.terms(brownian, stratonovich=stratonovich),
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
        ys = sol.ys[: n_steps // save_every + 1]
        xs = jax.vmap(sde.parameters)(ys)
        return ys, xs, jax.vmap(sde.problem.loss)(xs)

    return jax.vmap(one_path)(x0s, keys)


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
) -> Run:
    """Integrate the optimizer's SDE (`sde_for(opt, prob)`) for `n_paths` independent paths.

    The grid is the optimizer's: `t_k = k·lr`, `k = 0 … n_steps`, fixed steps (`StepTo`), one
    `UnsafeBrownianPath` per path, `ForwardMode` adjoint, all paths under one `jit(vmap)`.
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
    sde = sde_for(opt, prob, form=form)
    keys = jax.random.split(key, n_paths)
    ys, xs, loss = _solve_paths(sde, solver, stratonovich, x0s, keys, n_steps, save_every, substeps)
    steps = np.arange(0, n_steps + 1, save_every)
    extra = {"solver": type(solver).__name__, "form": form, "substeps": substeps}
    config = _config(opt, prob, n_steps, n_paths, save_every, extra)
    return _finish("sde", ys, xs, loss, steps, opt.lr, config, started, ys.shape != xs.shape)


@eqx.filter_jit
def _optimize_paths(opt, problem, x0s, keys, n_steps: int, save_every: int):
    tx = opt.to_optax()

    def full_state(x, opt_state):
        """`(x, m, v, ...)` in the SDE's layout, or `x` for stateless optimizers."""
        moments = opt.moments(opt_state)
        return x if moments is None else jnp.concatenate([x, moments.reshape(-1)])

    def one_run(x0, key):
        def step(carry, k):
            x, state = carry
            g = problem.stochastic_grad(x, jax.random.fold_in(key, k))
            updates, state = tx.update(g, state, x)
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
) -> Run:
    """Run the discrete optimizer `opt.to_optax()` for `n_runs` independent runs.

    Step `k` of run `r` sees the stochastic gradient `prob.stochastic_grad(x, fold_in(key_r, k))`
    (`∇f + Z`, `Z` from the problem's noise model). `lax.scan` over steps (an outer scan over
    saves, so memory grows with the number of saves, not steps) under `vmap` over runs, one jit.
    Saves as `simulate`; times `t = k·lr` on the same clock. For stateful optimizers
    (RMSprop, Adam) `Run.state` holds `(x, m, v)` in the layout of their SDE's state.
    """
    started = time.perf_counter()
    n_steps, n_runs, save_every, x0s = _check_sizes(n_steps, n_runs, save_every, x0, prob, "n_runs")
    key = _check_key(jax.random.key(0) if key is None else key)
    keys = jax.random.split(key, n_runs)
    ys, xs, loss = _optimize_paths(opt, prob, x0s, keys, n_steps, save_every)
    steps = np.arange(0, n_steps + 1, save_every)
    config = _config(opt, prob, n_steps, n_runs, save_every, {})
    return _finish("optimizer", ys, xs, loss, steps, opt.lr, config, started, ys.shape != xs.shape)
