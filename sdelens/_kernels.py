"""The jitted cores: every path of an SDE (diffrax) or of an optimizer (optax) in one call.

Both return `(states, loss)`: the state named tuple with leaves `(paths, saves, ...)` (its field
`x` holds the parameters) and the loss `(paths, saves)`. `sdelens.simulate` and
`sdelens.run_optimizer` feed them chunk by chunk (`_ensemble.run_ensemble`).
"""

from __future__ import annotations

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optax

from ._brownian import CounterBrownianPath, EnsembleBrownianPath

__all__ = ["solve_paths", "optimize_paths", "PATHS_MINOR_MAX_STATE"]

# Largest SDE state integrated as one ensemble with the paths on the minor axis; larger states
# are integrated path by path under vmap. Measured crossover (benchmarks/README.md).
PATHS_MINOR_MAX_STATE = 12
# Solvers whose step only multiplies the diffusion by increments (Milstein's derivative terms
# would differentiate the whole ensemble as one state).
_PATHS_MINOR_SOLVERS = (diffrax.Euler, diffrax.EulerHeun, diffrax.Heun)


def _state_size(state) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(state))


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
    n_saves = n_steps // save_every + 1
    return jax.tree.map(lambda leaf: leaf[:n_saves], sol.ys)


def _ensemble_terms(sde, brownian, stratonovich: bool, n_paths: int):
    """The SDE of `n_paths` independent copies, every leaf `(..., n_paths)`: drift and
    diffusion applied path by path (vmap over the last axis), each path driven by its own `W`."""
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


def _losses(problem, states):
    return jax.vmap(jax.vmap(problem.loss))(states.x)


@eqx.filter_jit
def solve_paths(
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
    """`(states, loss)` of every path of `sde`, saves at every `save_every`-th optimizer step,
    each optimizer step integrated in `substeps` steps.

    Small states (`≤ PATHS_MINOR_MAX_STATE` numbers, or `paths_minor=True`) with Euler, Heun or
    EulerHeun are integrated as one ensemble state (leaves `(..., n_paths)`), so XLA's loops run
    along the paths (~3x faster for d ≤ 10); others path by path under `vmap`. Both draw every
    path's noise from its own key only (chunking and sharding do not change a path); in float32
    the two layouts draw different numbers (same law), in float64 the same ones.
    """
    n_steps, save_every = n_steps * substeps, save_every * substeps
    ts = (sde.lr / substeps) * jnp.arange(n_steps + 1, dtype=x0s.dtype)
    bshape = sde.brownian_shape(x0s[0])
    if paths_minor is None:
        small = _state_size(sde.initial_state(x0s[0])) <= PATHS_MINOR_MAX_STATE
        paths_minor = small and type(solver) in _PATHS_MINOR_SOLVERS

    if paths_minor:
        brownian = EnsembleBrownianPath(bshape, keys, x0s.dtype)
        terms = _ensemble_terms(sde, brownian, stratonovich, x0s.shape[0])
        y0s = jax.tree.map(lambda a: jnp.moveaxis(a, 0, -1), jax.vmap(sde.initial_state)(x0s))
        ys = _integrate(terms, solver, y0s, ts, save_every)
        states = jax.tree.map(lambda a: jnp.moveaxis(a, -1, 0), ys)
    else:

        def one_path(x0, key):
            brownian = CounterBrownianPath(bshape, key, x0.dtype)
            terms = sde.terms(brownian, stratonovich=stratonovich)
            return _integrate(terms, solver, sde.initial_state(x0), ts, save_every)

        states = jax.vmap(one_path)(x0s, keys)
    return states, _losses(sde.problem, states)


@eqx.filter_jit
def optimize_paths(opt, problem, x0s, keys, n_steps: int, save_every: int):
    """`(states, loss)` of every run of the discrete optimizer, saved like `solve_paths`.

    Step `k` of run `r` sees `problem.stochastic_grad(x, fold_in(key_r, k))`. Optimizers that
    evaluate more gradients get `grad_fn=problem.stochastic_grad` and two keys: `noise_key`,
    the key of this step's draw (SAM's second gradient reuses it: the same noise, the same
    minibatch), and `key = fold_in(fold_in(key_r, k), 1)` for fresh draws (Entropy-SGD's inner
    chain). `lax.scan` over steps (an outer
    scan over saves, so memory grows with the saves, not the steps) under `vmap` over runs.
    """
    # Plain optimizers ignore the extra arguments; Entropy-SGD's inner chain needs them.
    tx = optax.with_extra_args_support(opt.to_optax())

    def one_run(x0, key):
        def step(carry, k):
            x, state = carry
            key_k = jax.random.fold_in(key, k)
            g = problem.stochastic_grad(x, key_k)
            updates, state = tx.update(
                g,
                state,
                x,
                grad_fn=problem.stochastic_grad,
                key=jax.random.fold_in(key_k, 1),
                noise_key=key_k,
            )
            return (optax.apply_updates(x, updates), state), None

        def block(carry, b):
            carry, _ = jax.lax.scan(step, carry, b * save_every + jnp.arange(save_every))
            return carry, opt.state(*carry)

        init = (x0, tx.init(x0))
        _, saved = jax.lax.scan(block, init, jnp.arange(n_steps // save_every))
        first = opt.state(*init)
        return jax.tree.map(lambda a, rest: jnp.concatenate([a[None], rest]), first, saved)

    states = jax.vmap(one_run)(x0s, keys)
    return states, _losses(problem, states)
