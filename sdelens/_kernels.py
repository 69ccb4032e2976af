"""The jitted cores: every path of an SDE (diffrax) or of an optimizer (optax) in one call.

Both advance all paths of a chunk from one save to the next in an outer `lax.scan` and hand the
states at each save to a reducer (`sdelens._reduce`): by default `KeepPaths`, and the result is
`(states, loss)`, the state named tuple with leaves `(paths, saves, ...)` (its field `x` holds
the parameters) and the loss `(paths, saves)`; with `KeepStats` the per-save statistics.
`sdelens.simulate` and `sdelens.run_optimizer` feed them chunk by chunk
(`_ensemble.run_ensemble`).

Both draw their randomness from the same counter-based streams (`sdelens._brownian`): path `i`'s
Brownian increment over `[t₀, t₁]` is a hash of `(key_i, t₀, t₁)`, and the optimizer's gradient
noise at step `k` is a function of the standard normals of `[t_k, t_{k+1}]` on the same clock.
With the same keys, an optimizer run and an SDE run are therefore driven by the same numbers
(coupled, docs/math.md §13) when asked to (`optimize_paths(..., coupling=...)`).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optax

from ._brownian import CounterBrownianPath, EnsembleBrownianPath, key_words, step_normals
from ._reduce import KeepPaths, scan_saves
from ._sde import EulerIncrementTerm, traced_floats

__all__ = ["solve_paths", "optimize_paths", "sde_paths_minor", "Coupling", "PATHS_MINOR_MAX_STATE"]

# Largest state integrated as one ensemble with the paths on the minor axis; larger states are
# integrated path by path under vmap. Measured crossover (benchmarks/README.md).
PATHS_MINOR_MAX_STATE = 12
# Solvers whose step only multiplies the diffusion by increments (Milstein's derivative terms
# would differentiate the whole ensemble as one state).
_PATHS_MINOR_SOLVERS = (diffrax.Euler, diffrax.EulerHeun, diffrax.Heun)
_KEEP_PATHS = KeepPaths()


def _state_size(state) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(state))


def sde_paths_minor(sde, solver, x0) -> bool:
    """Whether `solve_paths` integrates `sde` with the paths on the minor axis: a state of at
    most `PATHS_MINOR_MAX_STATE` numbers and a solver that only multiplies increments."""
    small = _state_size(jax.eval_shape(sde.initial_state, x0)) <= PATHS_MINOR_MAX_STATE
    return small and type(solver) in _PATHS_MINOR_SOLVERS


def _to_minor(tree):
    return jax.tree.map(lambda a: jnp.moveaxis(a, 0, -1), tree)


def _to_major(tree):
    return jax.tree.map(lambda a: jnp.moveaxis(a, -1, 0), tree)


def _clock(dt, dtype):
    """`t(i) = i·dt`, step `i`'s start on the fixed grid (the same numbers as
    `dt * jnp.arange(n, dtype=dtype)`)."""

    def t(i):
        return dt * jnp.asarray(i, dtype)

    return t


def _steps(first, count, step, carry):
    """`carry = step(i, carry)` for `i = first, …, first + count - 1`, `count` a traced number
    (the steps between two saves: one compiled program for every number of them)."""
    return jax.lax.fori_loop(0, count, lambda j, carry: step(first + j, carry), carry)


def _solve(terms, solver, y0, t, first, count):
    """diffrax's `solver` stepped along the grid `t(first), …, t(first + count)` from `y0`; the
    state at the end: the steps of `diffeqsolve` with `StepTo` on that grid, in a loop of
    traced length (`_steps`)."""

    def step(i, carry):
        y, state = carry
        y, _, _, state, _ = solver.step(terms, t(i), t(i + 1), y, None, state, made_jump=False)
        return y, state

    state = solver.init(terms, t(first), t(first + 1), y0, None)
    return _steps(first, count, step, (y0, state))[0]


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


def _path_terms(sde, path, solver, stratonovich: bool):
    """One path's terms: for Itô Euler the whole increment from one call of the SDE
    (`EulerIncrementTerm`: drift and diffusion share their gradient), else diffrax's
    `MultiTerm`."""
    if type(solver) is diffrax.Euler and not stratonovich:
        return EulerIncrementTerm(sde, path)
    return sde.terms(path, stratonovich=stratonovich)


def _valid(x0s, valid):
    return jnp.ones(x0s.shape[0], bool) if valid is None else valid


@eqx.filter_jit
def _solve_paths(
    sde,
    solver,
    stratonovich,
    x0s,
    keys,
    n_saves: int,
    save_every,
    substeps: int = 1,
    paths_minor: bool | None = None,
    reducer=None,
    valid=None,
):
    """Every path of `sde`, saved at every `save_every`-th optimizer step, each optimizer step
    integrated in `substeps` steps: `(states, loss)` (or `reducer`'s statistics; `valid` marks
    the paths that count, padding excluded).

    Small states (`≤ PATHS_MINOR_MAX_STATE` numbers, or `paths_minor=True`) with Euler, Heun or
    EulerHeun are integrated as one ensemble state (leaves `(..., n_paths)`), so XLA's loops run
    along the paths (~3x faster for d ≤ 10); others path by path under `vmap`. Both draw every
    path's noise from its own key only (chunking and sharding do not change a path); in float32
    the two layouts draw different numbers (same law), in float64 the same ones. Between saves
    the solver steps along one segment of the grid `t_j = j η/substeps` (`_solve`); `n_saves`
    fixes the shapes returned, `save_every` is traced.
    """
    reducer = _KEEP_PATHS if reducer is None else reducer
    per_save = save_every * substeps
    dtype = x0s.dtype
    t = _clock(sde.lr / substeps, dtype)
    bshape = sde.brownian_shape(x0s[0])
    minor = sde_paths_minor(sde, solver, x0s[0]) if paths_minor is None else paths_minor

    if minor:
        brownian = EnsembleBrownianPath(bshape, keys, dtype)
        terms = _ensemble_terms(sde, brownian, stratonovich, x0s.shape[0])

        def advance(ys, s):
            return _solve(terms, solver, ys, t, s * per_save, per_save)

        y0 = _to_minor(jax.vmap(sde.initial_state)(x0s))
        by_path = _to_major
    else:
        paths = jax.vmap(lambda key: CounterBrownianPath(bshape, key, dtype))(keys)

        def advance(ys, s):
            def one(y, path):
                terms = _path_terms(sde, path, solver, stratonovich)
                return _solve(terms, solver, y, t, s * per_save, per_save)

            return jax.vmap(one)(ys, paths)

        y0 = jax.vmap(sde.initial_state)(x0s)
        by_path = _identity

    def observe(ys):
        states = by_path(ys)
        return states, jax.vmap(sde.problem.loss)(states.x)

    valid = _valid(x0s, valid)
    return scan_saves(reducer, valid, n_saves, y0, advance, observe)


def _saves(n_steps: int, save_every: int):
    """`(n_saves, save_every)` as the cores take them: the number of saves fixes the shapes of
    what they return (static), the steps between saves are a traced number."""
    return n_steps // save_every, jnp.asarray(save_every, jnp.int32)


def solve_paths(sde, solver, stratonovich, x0s, keys, n_steps, save_every, *args, **kwargs):
    """`_solve_paths` (above), compiled once for all values of the SDE's hyperparameters
    (`traced_floats`) and for every `n_steps` with the same number of saves."""
    n_saves, save_every = _saves(n_steps, save_every)
    sde = traced_floats(sde)
    return _solve_paths(sde, solver, stratonovich, x0s, keys, n_saves, save_every, *args, **kwargs)


def _identity(tree):
    return tree


class Coupling(NamedTuple):
    """How an optimizer's noise is driven by an SDE's Brownian paths (docs/math.md §13): `sde`
    (its `brownian_shape` and `gradient_normals`), the `substeps` per optimizer step of its
    integration, and whether its paths draw as an ensemble (`paths_minor`, the draws of
    `EnsembleBrownianPath`) or one by one (`CounterBrownianPath`'s)."""

    sde: eqx.Module
    substeps: int
    paths_minor: bool


def _draws(problem, coupling: Coupling | None, x0, minor: bool):
    """`(shape, substeps, by_path, to_normals)`: the Brownian draws an optimizer step makes and
    the map from their standardised sum to the noise's normals."""
    noise_shape = problem.noise.normals_shape(problem, x0)
    if coupling is None:
        if problem.noise.keyed_unless_coupled:
            return None, 1, minor, _identity
        return noise_shape, 1, minor, _identity
    shape = coupling.sde.brownian_shape(x0)

    def to_normals(w):
        return coupling.sde.gradient_normals(w, noise_shape)

    return shape, coupling.substeps, coupling.paths_minor, to_normals


@eqx.filter_jit
def _optimize_paths(
    opt,
    problem,
    x0s,
    keys,
    n_saves: int,
    save_every,
    coupling: Coupling | None = None,
    paths_minor: bool | None = None,
    reducer=None,
    valid=None,
):
    """Every run of the discrete optimizer, saved like `solve_paths`: `(states, loss)` (or
    `reducer`'s statistics).

    **Noise.** Step `k` of run `r` sees `problem.stochastic_grad_from_normals(x, ξ)`, `ξ` the
    standard normals of the step `[t_k, t_{k+1}]` (`t_k = k η`) of the counter-based path of
    `key_r` (`step_normals`): the draws of an SDE path on the same clock, fused into the step
    (one hash per step for its key, one per draw). With `coupling`, `ξ` is the coupled SDE's
    standardised increment over the step, the sum of its `substeps` draws over
    `[t_k, t_{k+1}]` divided by `√substeps`, mapped by `sde.gradient_normals`: with the same key,
    path `r` of the SDE and run `r` of the optimizer see the same numbers. Noise without a map
    from normals (`SampledNoise`), and uncoupled noise whose map from normals is costly
    (`keyed_unless_coupled`: Student-t), is drawn from `fold_in(key_r, k)`.
    Optimizers that evaluate more gradients get `grad_fn(y, key)` (fresh draws:
    `problem.stochastic_grad`), `key = fold_in(fold_in(key_r, k), 1)` (Entropy-SGD's inner
    chain) and `step_grad_fn(y)`, the gradient at `y` under this step's draw (SAM's second
    gradient: the same noise, the same minibatch).

    **Layout.** Small states (`≤ PATHS_MINOR_MAX_STATE` numbers, or `paths_minor=True`) run as
    one ensemble with the paths on the minor axis (the update vmapped over the last axis), as
    `solve_paths` does; others run by run under `vmap`. Either way the scan over saves is the
    outer loop and a loop over the `save_every` (traced) steps between saves the inner one.
    """
    reducer = _KEEP_PATHS if reducer is None else reducer
    tx = optax.with_extra_args_support(opt.to_optax())
    x0 = x0s[0]
    if paths_minor is None:
        paths_minor = _state_size(jax.eval_shape(opt.initial_state, x0)) <= PATHS_MINOR_MAX_STATE
    shape, substeps, by_path, to_normals = _draws(problem, coupling, x0, paths_minor)
    dtype = x0s.dtype
    t = _clock(opt.lr / substeps, dtype)
    words = jax.vmap(key_words)(keys)  # (n, 2)

    def normals(words, k):
        """The standardised Brownian increment `w` of step `k` (`words` `(2,)`, or `(2, n)` for
        the ensemble draws: then `(*shape, n)`)."""
        total = 0.0
        for j in range(substeps):
            i = k * substeps + j
            total = total + step_normals(words, t(i), t(i + 1), shape, dtype, by_path=by_path)
        return total / math.sqrt(substeps) if substeps > 1 else total

    def update(x, state, key, k, w):
        """One optimizer step of one run, its noise driven by `w`."""
        key_k = jax.random.fold_in(key, k)
        xi = None if shape is None else to_normals(w)
        if shape is None:

            def step_grad(y):
                return problem.stochastic_grad(y, key_k)

        else:

            def step_grad(y):
                return problem.stochastic_grad_from_normals(y, xi)

        updates, state = tx.update(
            step_grad(x),
            state,
            x,
            grad_fn=problem.stochastic_grad,
            key=jax.random.fold_in(key_k, 1),
            step_grad_fn=step_grad,
        )
        return optax.apply_updates(x, updates), state

    def observe_run(carry):
        x, state = carry
        return opt.state(x, state)

    if paths_minor:
        one_step = jax.vmap(update, in_axes=(-1, -1, 0, None, -1), out_axes=-1)

        def draw(k):
            if by_path:
                return normals(words.T, k)
            return jax.vmap(normals, in_axes=(0, None), out_axes=-1)(words, k)

        def advance(carry, s):
            def step(k, carry):
                x, state = carry
                w = None if shape is None else draw(k)
                return one_step(x, state, keys, k, w)

            return _steps(s * save_every, save_every, step, carry)

        init = _to_minor(jax.vmap(lambda x: (x, tx.init(x)))(x0s))

        def observe(carry):
            states = _to_major(jax.vmap(observe_run, in_axes=-1, out_axes=-1)(carry))
            return states, jax.vmap(problem.loss)(states.x)

    else:

        def advance_run(carry, words, key, s):
            def step(k, carry):
                x, state = carry
                return update(x, state, key, k, None if shape is None else normals(words, k))

            return _steps(s * save_every, save_every, step, carry)

        def advance(carry, s):
            return jax.vmap(advance_run, in_axes=(0, 0, 0, None))(carry, words, keys, s)

        init = jax.vmap(lambda x: (x, tx.init(x)))(x0s)

        def observe(carry):
            states = jax.vmap(observe_run)(carry)
            return states, jax.vmap(problem.loss)(states.x)

    valid = _valid(x0s, valid)
    return scan_saves(reducer, valid, n_saves, init, advance, observe)


def optimize_paths(opt, problem, x0s, keys, n_steps, save_every, coupling=None, *args, **kwargs):
    """`_optimize_paths` (above), compiled once for all values of the optimizer's, the
    problem's and the coupled SDE's hyperparameters (`traced_floats`) and for every `n_steps`
    with the same number of saves."""
    opt, problem, coupling = traced_floats((opt, problem, coupling))
    n_saves, save_every = _saves(n_steps, save_every)
    return _optimize_paths(opt, problem, x0s, keys, n_saves, save_every, coupling, *args, **kwargs)
