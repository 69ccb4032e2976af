"""The moment-matched SDE of any optimizer step (docs/math.md §10).

One optimizer step maps `Y = (x, optimizer state)` to `Y + Δ(Y, Z)`. On the clock `t = kη` the
SDE `dY = b dt + G dW` with `b = E_Z[Δ]/η` and `G Gᵀ = Cov_Z[Δ]/η` reproduces the first two
moments of every step (Euler with `dt = η`) and is weak order 1 in the small-`η` family. The
moments are taken from the optimizer's own optax update, so no hand derivation is needed.
"""

import math
from typing import ClassVar, final

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optax
import scipy.special
import scipy.stats
from jaxtyping import Array, Float

from .. import _check
from .._noise import AbstractAdditiveNoise, GaussianNoise, StudentTNoise
from .._optimizers import AbstractOptimizer
from .._optimizers._optax import (
    OptaxLayout,
    check_coordinatewise,
    check_counters,
    fixed_gradient,
)
from .._problems import AbstractProblem
from ._base import AbstractOptimizerSDE, traced_floats
from ._euler import combine_increment

__all__ = ["MomentsSDE", "MOMENT_RULES", "DEFAULT_NODES", "quantile_table"]

MOMENT_RULES = ("auto", "quadrature", "monte_carlo")
# Nodes per coordinate (quadrature) or draws (Monte Carlo) per evaluation.
DEFAULT_NODES = {"quadrature": 16, "monte_carlo": 64}
# Sub-offsets per quadrature cell: the offset of step k is one of them, drawn at random.
OFFSETS = 64
TAIL_SPLITS = 4  # geometric sub-cells of each tail cell
# Quadrature nodes per iteration of the loop that accumulates the moments (`_moments`): 8 or
# all of them ran no faster at d = 1000 and compiled slower (benchmarks/README.md).
UNROLL = 4
_MAX_STEP = 2**30  # the step counter at t = ∞ (bias corrections are then 1)


def quantile_table(
    noise: AbstractAdditiveNoise, n_nodes: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The stratified rule's cells for one standardised coordinate of `noise` (Gaussian: the
    standard normal; Student-t: `t_ν`), or None when the noise is not a product of
    one-dimensional laws sdelens knows.

    `K = n_nodes` cells of probability `1/K` each; the two tail cells are split again into
    `TAIL_SPLITS` sub-cells of probabilities `1/(2K), 1/(4K), …` and a last one, because a
    single node in an unbounded tail cell would make every step's variance swing by a factor
    2. Returns `(table, weights)` for the lower half of the cells (the upper half is their
    mirror image): `table[c, r] = F⁻¹(lo_c + (r + ½)(hi_c - lo_c)/R)`, `R = OFFSETS`, and the
    cells' probabilities. With finite variance the outermost sub-cell is rescaled so that the
    fine rule (every offset) has the law's variance exactly."""
    k = n_nodes
    tail = [0.0] + [2.0 ** -(TAIL_SPLITS - i) / k for i in range(TAIL_SPLITS)]
    bounds = np.asarray(tail + [j / k for j in range(1, k // 2 + 1)])
    lo, hi = bounds[:-1], bounds[1:]
    u = lo[:, None] + (np.arange(OFFSETS) + 0.5)[None, :] / OFFSETS * (hi - lo)[:, None]
    if isinstance(noise, GaussianNoise) and noise.is_diagonal:
        table, variance = scipy.special.ndtri(u), 1.0
    elif isinstance(noise, StudentTNoise):
        df = float(noise.df)
        table = scipy.stats.t.ppf(u, df)
        variance = df / (df - 2.0) if df > 2 else None
    else:
        return None
    weights = hi - lo
    if variance is not None:
        # The outermost sub-cell carries the tail the midpoints miss (4% of t₃'s variance):
        # scaling it alone keeps every other node at its quantile (a sign's mean unbiased).
        second = 2.0 * weights[:, None] * table**2 / OFFSETS
        rest = np.sum(second[1:])
        table = table.copy()
        table[0] *= math.sqrt(max(variance - rest, 0.0) / np.sum(second[0]))
    return table, weights


def _step(t, lr):
    """The optimizer step `k` of time `t` (substeps inside a step keep its `k`; `t = ∞` gives
    a counter large enough for every bias correction to be 1)."""
    k = jnp.floor(jnp.minimum(t / lr + 1e-3, _MAX_STEP))
    return k.astype(jnp.int32)


def _at_infinity(t) -> bool:
    """Whether `t` is a concrete `∞` (rest points, `linearised_stationary`): the rules are then
    fixed (the fine quadrature, Monte Carlo's draws of step 0)."""
    return _check.is_concrete(t) and math.isinf(float(t))


def _small_cholesky(cov):
    """Lower-triangular `L` with `L Lᵀ = C` for a batch of small PSD matrices `C` (one per
    coordinate; `cov[a][b]` arrays of shape `(d,)`, as nested lists: see `_increment`), by the
    textbook recursion, pivots clipped at 0: a singular block (x and m driven by the same noise,
    perfectly correlated) gets a zero column instead of NaN."""
    n = len(cov)
    low = [[jnp.zeros_like(cov[0][0]) for _ in range(n)] for _ in range(n)]
    for a in range(n):
        pivot = cov[a][a] - sum(low[a][c] ** 2 for c in range(a))
        low[a][a] = jnp.sqrt(jnp.clip(pivot, 0.0))
        safe = jnp.where(low[a][a] > 0, low[a][a], 1.0)
        for b in range(a + 1, n):
            rest = cov[b][a] - sum(low[b][c] * low[a][c] for c in range(a))
            low[b][a] = jnp.where(low[a][a] > 0, rest / safe, 0.0)
    return low


class _PerCoordinateRoot(lx.AbstractLinearOperator):
    """`G` of the quadrature rule: per coordinate `i` a lower-triangular `(blocks × blocks)`
    factor `L[:, :, i]`, driven by a Brownian motion of shape `(blocks, d)`."""

    factor: Float[Array, "n n d"]
    state_type: type = eqx.field(static=True)

    def mv(self, vector):
        # Elementwise products, not einsum: XLA on CPU turns a dot with a batch axis of d
        # into d tiny matrix products, ~10x slower here.
        return self.state_type(*jnp.sum(self.factor * vector[None], axis=1))

    def as_matrix(self):
        n, _, d = self.factor.shape
        eye = jnp.eye(d, dtype=self.factor.dtype)
        return jnp.einsum("abi,ij->aibj", self.factor, eye).reshape(n * d, n * d)

    def transpose(self):
        raise NotImplementedError("no transpose is needed")

    def in_structure(self):
        return jax.ShapeDtypeStruct(self.factor.shape[1:], self.factor.dtype)

    def out_structure(self):
        leaf = jax.ShapeDtypeStruct(self.factor.shape[2:], self.factor.dtype)
        return self.state_type(*([leaf] * self.factor.shape[0]))


class _DrawRoot(lx.AbstractLinearOperator):
    """`G = D / √(K η)` of the Monte Carlo rule: the centred increments of `K` draws, driven
    by a `K`-dimensional Brownian motion (no dense covariance)."""

    centred: tuple  # state fields, each (K, d), already scaled by √(w_j/η)
    state_type: type = eqx.field(static=True)

    def mv(self, vector):
        return self.state_type(*(jnp.tensordot(vector, block, axes=1) for block in self.centred))

    def as_matrix(self):
        return jnp.concatenate([block.T for block in self.centred], axis=0)

    def transpose(self):
        raise NotImplementedError("no transpose is needed")

    def in_structure(self):
        return jax.ShapeDtypeStruct(self.centred[0].shape[:1], self.centred[0].dtype)

    def out_structure(self):
        return self.state_type(*(jax.ShapeDtypeStruct(b.shape[1:], b.dtype) for b in self.centred))


for _operator in (_PerCoordinateRoot, _DrawRoot):
    for _query in (lx.is_symmetric, lx.is_positive_semidefinite, lx.is_negative_semidefinite):
        _query.register(_operator)(lambda operator: False)


def _nonnegative_blocks(optimizer: AbstractOptimizer) -> tuple[bool, ...]:
    """Which optimizer statistics never go below 0 (second moments: `ν`, AdaBelief's `s`),
    found by running three updates with random gradients on 5 coordinates."""
    tx = optax.with_extra_args_support(optimizer.to_optax())
    key = jax.random.key(7)
    x = jax.random.normal(key, (5,))
    state = tx.init(x)
    layout = OptaxLayout.of(state, x)
    seen = [np.asarray(v) for v in layout.state(x, state)[1:]]
    for i in range(3):
        g = jax.random.normal(jax.random.fold_in(key, i), (5,))
        updates, state = tx.update(g, state, x, **fixed_gradient(g))
        x = x + updates
        seen = [np.minimum(a, b) for a, b in zip(seen, layout.state(x, state)[1:], strict=True)]
    return tuple(bool(np.all(a >= 0)) for a in seen)


@final
class MomentsSDE(AbstractOptimizerSDE):
    """The moment-matched SDE of any optimizer (docs/math.md §10), `form="moments"`:

    `dY = b(t, Y) dt + G(t, Y) dW`, `b = E_Z[Δ(Y, Z)]/η`, `G Gᵀ = Cov_Z[Δ(Y, Z)]/η`,

    with `Y = OptaxState(x, <the optax state's per-parameter leaves>)` and `Δ` one update of
    `optimizer.to_optax()` at the gradient `g = ∇f(x) + Z`; integer leaves of the optax state
    are step counters, set to `k = ⌊t/η⌋` (so Adam's bias corrections are the discrete ones).
    Optimizers that evaluate a second gradient (SAM) get `step_grad_fn(x') = ∇f(x') + Z` with
    the same `Z`; for noise that is not additive, the same minibatch. Gradients drawn with
    `grad_fn(x', key)` (Entropy-SGD's inner chain) get independent noise, as in the optimizer.

    **Moments** (`rule`):
    - `"quadrature"` (chosen by `"auto"` for a coordinate-wise update, `optimizer.coordinatewise`
      — verified on 5 coordinates — under diagonal Gaussian or Student-t noise): per coordinate a
      one-dimensional stratified quantile rule, `Z_i = s_i F⁻¹(u)` with one `u` in each of `K`
      cells of probability `1/K` (`K = nodes`, even; the two tail cells split into
      `TAIL_SPLITS = 4` geometric sub-cells, so `K + 8` evaluations; `quantile_table`), for
      the lower half of the cells and their mirror images `-Z_i`; the position of `u` in its
      cell is the offset of optimizer step `k`, drawn from `OFFSETS = 64` sub-offsets by a
      fixed key shared by all paths (shifted per cell), so that over the steps the rule
      averages to the fine midpoint rule of `64 (K + 8)` nodes (a fixed offset would make a
      sign's mean a staircase in `∇f`, with no restoring drift near a minimum). The update is
      evaluated `K + 8` times elementwise after ONE gradient; `G` is block-diagonal per
      coordinate (a `(blocks × blocks)` Cholesky factor), driven by a `(blocks, d)` Brownian
      motion. Each step's rule is unbiased and symmetric (a linear update's drift is exact);
      its variance swings by about ±10% from step to step and a sign's mean by up to `2/K`,
      both averaging out over the steps.
    - `"monte_carlo"` (everything else: correlated noise, minibatch noise, updates that mix
      coordinates): `K = nodes` draws of the step's randomness (antithetic pairs `±Z` for
      additive noise), refreshed every optimizer step from a fixed key shared by all paths;
      `G = [Δ_j - mean] / √(K η)`, driven by a `K`-dimensional Brownian motion.
    At `t = ∞` (rest points, `linearised_stationary`) the quadrature uses the fine rule and
    Monte Carlo the draws of step 0, so the drift there is deterministic.

    **Non-negative statistics** (second moments such as Adam's `ν` or AdaBelief's `s`, found by
    running the optimizer: `nonnegative`) get the drift of their moments but no diffusion
    (docs/math.md §10.2). The optimizer never takes them below 0, but Gaussian increments do:
    from `ν₀ = 0` half the paths would leave `[0, ∞)` in the first substep, where `m/(√ν + ε)`
    is singular (measured: Adam's weak-order error grew from 0.01 to 400). Their one-step second
    moment is `O(η²)`, so dropping it keeps weak order 1; the published Adam/RMSprop SDEs
    (§4) have no noise on `V` either. The update is still evaluated at their projection on
    `[0, ∞)`, which the drift alone never needs (Euler with `dt ≤ η` keeps them `≥ 0`).

    The model is weak order 1 when every block of `Δ` is `O(η)`: moving averages with `1 - β ∝ η`.
    Heavy-ball momentum at fixed `β` has `Δm = O(1)`: the SDE is then exact in one-step moments
    but stiff. With infinite-variance noise the rule returns finite numbers for any update;
    they mean something only for bounded updates (SignSGD, Lion), not for SGD or Adam.
    """

    optimizer: AbstractOptimizer
    problem: AbstractProblem
    nodes: int = eqx.field(static=True)
    rule: str = eqx.field(static=True)
    table: Float[Array, "cells offsets"] | None
    weights: Float[Array, " cells"] | None
    seed: int = eqx.field(static=True)
    nonnegative: tuple[bool, ...] = eqx.field(static=True)
    optimizer_type: ClassVar[type] = AbstractOptimizer
    form: ClassVar[str] = "moments"

    def __init__(
        self,
        optimizer: AbstractOptimizer,
        problem: AbstractProblem,
        *,
        nodes: int | None = None,
        rule: str = "auto",
        seed: int = 0,
    ):
        _check.choice("rule", rule, MOMENT_RULES)
        noise = problem.noise
        table = None
        if rule != "monte_carlo" and isinstance(noise, AbstractAdditiveNoise):
            table = quantile_table(noise, 2)  # eligibility only; rebuilt below at the node count
        if rule == "auto":
            rule = "quadrature" if optimizer.coordinatewise and table is not None else "monte_carlo"
        if rule == "quadrature":
            if not optimizer.coordinatewise:
                raise ValueError(
                    f"rule='quadrature' is invalid for {optimizer.name}: its update is not "
                    "coordinate-wise (coordinatewise=False); use rule='monte_carlo'."
                )
            if table is None:
                raise ValueError(
                    f"rule='quadrature' is invalid for {noise.label}: it needs independent noise "
                    "coordinates with a known one-dimensional law (diagonal GaussianNoise or "
                    "StudentTNoise); use rule='monte_carlo'."
                )
            check_coordinatewise(optimizer)
        nodes = DEFAULT_NODES[rule] if nodes is None else nodes
        if isinstance(nodes, bool) or not isinstance(nodes, int | np.integer) or nodes < 2:
            raise ValueError(f"nodes={nodes!r} is invalid: an integer >= 2 is required.")
        antithetic = rule == "quadrature" or isinstance(noise, AbstractAdditiveNoise)
        if antithetic and nodes % 2:
            raise ValueError(
                f"nodes={nodes} is invalid for {rule.replace('_', ' ')} moments under additive "
                "noise: an even number is required (nodes come in antithetic pairs ±Z)."
            )
        self.optimizer = optimizer
        self.problem = problem
        self.nodes = int(nodes)
        self.rule = rule
        self.table = self.weights = None
        if rule == "quadrature":
            table, weights = quantile_table(noise, nodes)
            self.table, self.weights = jnp.asarray(table), jnp.asarray(weights)
        self.seed = int(seed)
        x0 = jnp.linspace(-1.0, 1.0, problem.dim or 5)
        tx = optimizer.to_optax()
        layout = OptaxLayout.of(tx.init(x0), x0)
        check_counters(tx, x0, layout)
        if any(layout.counter_starts):
            raise ValueError("the optax state's step counters must start at 0.")
        self.nonnegative = _nonnegative_blocks(optimizer)

    # -- the state --------------------------------------------------------------------------

    def _tx(self):
        return optax.with_extra_args_support(self.optimizer.to_optax())

    def _layout(self, x) -> OptaxLayout:
        return OptaxLayout.of(jax.eval_shape(self._tx().init, x), x)

    @property
    def coupling_sign(self) -> int | None:
        # The quadrature rule's per-coordinate Cholesky factor puts x first with a positive
        # pivot, so x moves with w₀ while a descent step moves against the noise; the Monte
        # Carlo rule's K driving motions are draws of the rule, not the optimizer's noise.
        return -1 if self.rule == "quadrature" else None

    def initial_state(self, x0):
        return self._layout(x0).state(x0, self._tx().init(x0))

    def rest_state(self, x):
        """`x` with every optimizer statistic at its fixed point given `x` (Newton on the
        statistics' drift at `t = ∞`, from the optimizer's initial state)."""
        y = self.initial_state(x)
        if len(y) == 1:
            return y
        t_inf = jnp.asarray(jnp.inf, x.dtype)

        def blocks_drift(blocks):
            return jnp.stack(tuple(self.drift(t_inf, type(y)(x, *blocks), None))[1:])

        blocks = jnp.stack(tuple(y)[1:])
        for _ in range(8):
            jac = jax.jacfwd(blocks_drift)(blocks).reshape(blocks.size, blocks.size)
            step = jnp.linalg.solve(jac, blocks_drift(blocks).reshape(-1)).reshape(blocks.shape)
            blocks = jnp.where(jnp.all(jnp.isfinite(step)), blocks - step, blocks)
        return type(y)(x, *blocks)

    # -- the moments ------------------------------------------------------------------------

    def _offset_nodes(self, t, dtype):
        """`(nodes, weights)` of the standardised quadrature at time `t`: one node per cell of
        the lower half at this step's offset and the mirror images (every step's rule is
        symmetric, so `E Z = 0` exactly and a linear update's drift is exact). Each cell's
        offset is the step's shifted by a fixed amount per cell (golden-ratio steps), so the
        cells do not all sit at their left edges at once: that alone would swing the rule's
        variance by ±40% from step to step (±10% with the shifts at K = 16). Over the
        offsets every cell is sampled uniformly: the rule averages to the fine one."""
        table, weights = self.table.astype(dtype), self.weights.astype(dtype)
        n_cells = table.shape[0]
        if _at_infinity(t):
            nodes, weights = table.reshape(-1), jnp.repeat(weights, OFFSETS) / OFFSETS
        else:
            key = jax.random.fold_in(jax.random.key(self.seed), _step(t, self.lr))
            offset = jax.random.randint(key, (), 0, OFFSETS)
            shifts = (np.arange(n_cells) * int(OFFSETS * 0.6180339887)) % OFFSETS
            nodes = table[np.arange(n_cells), (offset + shifts) % OFFSETS]
        return jnp.concatenate([nodes, -nodes[::-1]]), jnp.concatenate([weights, weights[::-1]])

    def _scale(self, d, dtype):
        noise = self.problem.noise
        if isinstance(noise, GaussianNoise):
            return noise.std(d).astype(dtype)
        return jnp.broadcast_to(noise.scale, (d,)).astype(dtype)

    def _delta(self, t, y):
        """`(delta, additive, base)`: `delta(g, step_grad_fn, key)` the state increment of one
        optimizer update at the gradient `g`, `additive(z_j)` the step gradient of the draw
        `z_j`, `base` the rules' key."""
        tx, layout = self._tx(), self._layout(y.x)
        k = _step(t, self.lr)
        # Non-negative statistics get no diffusion, but a user's state (or a coarse dt) can
        # still hold a value below 0: the update is evaluated where it is defined.
        inside = (
            jnp.maximum(v, 0.0) if keep else v
            for v, keep in zip(tuple(y)[1:], self.nonnegative, strict=True)
        )
        opt_state = layout.opt_state(type(y)(y.x, *inside), k)
        x, problem = y.x, self.problem

        def delta(g, step_grad_fn, key):
            updates, new = tx.update(
                g,
                opt_state,
                x,
                grad_fn=problem.stochastic_grad,
                step_grad_fn=step_grad_fn,
                key=jax.random.fold_in(key, 1),
            )
            after = layout.state(updates, new)
            return type(y)(updates, *(a - b for a, b in zip(after[1:], y[1:], strict=True)))

        def additive(z_j):
            """The step's draw `z_j` at any point (SAM's second gradient sees the same draw)."""
            return lambda p: problem.grad(p) + z_j

        return delta, additive, jax.random.fold_in(jax.random.key(self.seed), 1)

    def _quadrature(self, t, y):
        """`(one, nodes, weights)` of the quadrature rule (`_offset_nodes`): `one(node)` the
        state increment at the standardised node `node`, i.e. at the draw `Z = node · s`, all
        nodes after one gradient."""
        delta, additive, base = self._delta(t, y)
        x = y.x
        nodes, weights = self._offset_nodes(t, x.dtype)
        grad = self.problem.grad(x)
        scale = self._scale(x.shape[0], x.dtype)

        def one(node):
            z = node * scale
            return delta(grad + z, additive(z), base)

        return one, nodes, weights

    def increments(self, t, y):
        """`(Δ, w)`: the state increments of every node or draw (fields with a leading axis of
        nodes/draws) and their weights."""
        if self.rule == "quadrature":
            one, nodes, weights = self._quadrature(t, y)
            return jax.vmap(one)(nodes), weights
        delta, additive, base = self._delta(t, y)
        x, problem = y.x, self.problem
        n = self.nodes
        step = 0 if _at_infinity(t) else _step(t, self.lr)
        keys = jax.random.split(jax.random.fold_in(base, step), n)
        weights = jnp.full((n,), 1.0 / n, x.dtype)
        noise = problem.noise
        if isinstance(noise, AbstractAdditiveNoise):
            grad = problem.grad(x)
            half = jax.vmap(lambda key: noise.sample(key, x.shape))(keys[: n // 2])
            z = jnp.concatenate([half, -half])

            def one(z_j, key):
                return delta(grad + z_j, additive(z_j), key)

            return jax.vmap(one)(z, keys), weights

        def draw(key):
            def same_draw(p):
                return problem.stochastic_grad(p, key)

            return delta(same_draw(x), same_draw, key)

        return jax.vmap(draw)(keys), weights

    def _moments(self, t, y, covariance=True):
        """Quadrature: `(mean, cov)`, one step's mean increment per block of `Y` (a list of
        `(d,)` arrays) and, with `covariance`, its per-coordinate covariance (nested lists,
        `cov[a][b]` of shape `(d,)`; zero for blocks without diffusion), from the weighted
        first moments `Σ w_j Δ_j` and raw second moments `Σ w_j Δ_j^a Δ_j^b`. The cancellation
        in `E[ΔΔ] - E[Δ]²` is harmless at the sizes of one step."""
        if _at_infinity(t):
            return self._moment_sums(t, y, covariance)
        # The step's rule sums in a loop, which outside a trace (the drift at many steps, in a
        # test or a notebook) would be traced and compiled again at every call (and for every
        # learning rate without `traced_floats`).
        return _compiled_moment_sums(traced_floats(self), t, y, covariance)

    def _moment_sums(self, t, y, covariance):
        """`_moments`, evaluated where it is called."""
        one, nodes, weights = self._quadrature(t, y)
        n = len(y)
        noisy = self._noisy_blocks() if covariance else (False,) * n
        # Blocks without diffusion (non-negative statistics) need no second moments: for Adam
        # that halves the products per node.
        pairs = [(a, b) for a in range(n) for b in range(a, n) if noisy[a] and noisy[b]]

        def terms(node, w):
            blocks = tuple(one(node))
            weighted = [w * a for a in blocks]
            return [*weighted, *(weighted[a] * blocks[b] for a, b in pairs)]

        if _at_infinity(t):
            # The fine rule, 64 (K + 8) nodes, off the hot path: one reduction over the nodes
            # keeps the float32 sums accurate (a loop over them lost about a digit, more than
            # tests/test_sde_moments.py allows for SGD's covariance).
            sums = [jnp.sum(a, axis=0) for a in jax.vmap(terms)(nodes, weights)]
        else:
            # The step's rule, accumulated node by node: with the increments materialised as
            # `(nodes, d)` arrays per block the step was memory-bound on CPU (3-5x slower at
            # d = 1000 with 1000 paths; benchmarks/README.md). The loop's carry lives in memory,
            # so each iteration reads and writes every sum: `UNROLL` nodes per iteration.
            def add(sums, node_weight):
                return [s + term for s, term in zip(sums, terms(*node_weight), strict=True)], None

            shapes = jax.eval_shape(terms, nodes[0], weights[0])
            zeros = [jnp.zeros(a.shape, a.dtype) for a in shapes]
            sums = jax.lax.scan(add, zeros, (nodes, weights), unroll=UNROLL)[0]
        mean, second = sums[:n], sums[n:]
        cov = [[jnp.zeros_like(mean[0])] * n for _ in range(n)]
        for s, (a, b) in zip(second, pairs, strict=True):
            cov[a][b] = cov[b][a] = s - mean[a] * mean[b]
        return mean, cov

    def _noisy_blocks(self) -> tuple[bool, ...]:
        """Per block of `Y`: whether it gets diffusion (`x` always; non-negative statistics
        never)."""
        return (True, *(not keep for keep in self.nonnegative))

    def drift(self, t, y, args):
        if self.rule == "quadrature":
            mean, _ = self._moments(t, y, covariance=False)
        else:
            deltas, weights = self.increments(t, y)
            mean = [jnp.sum(weights[:, None] * a, axis=0) for a in deltas]
        return type(y)(*(m / self.lr for m in mean))

    def _root(self, cov):
        """The per-coordinate diffusion factor `L` with `L Lᵀ = Cov(Δ) / η` (nested lists,
        `_small_cholesky`)."""
        return _small_cholesky([[c / self.lr for c in row] for row in cov])

    def _increment(self, t, y, args, dt, dw):
        """`b dt + G dW` with the quadrature's moments computed once
        (`_euler.EulerIncrementTerm`): drift and diffusion each need the increments at every
        node, which XLA does not share between two calls inside the solver's loop."""
        if self.rule != "quadrature":
            return combine_increment(self.drift(t, y, args), self.diffusion(t, y, args), dt, dw)
        mean, cov = self._moments(t, y)
        low = self._root(cov)
        # `combine_increment` with `_PerCoordinateRoot.mv` written out on the blocks: stacked
        # into `(blocks, d)` and `(blocks, blocks, d)` arrays, the moments and the factor cost
        # copies into a transposed layout and a separate reduction for `G dW` (1.5x slower for
        # Adam at d = 1000).
        return type(y)(
            *(
                dt * (m / self.lr) + sum(low[a][b] * dw[b] for b in range(a + 1))
                for a, m in enumerate(mean)
            )
        )

    def diffusion(self, t, y, args):
        if self.rule == "quadrature":
            low = self._root(self._moments(t, y)[1])
            return _PerCoordinateRoot(jnp.stack([jnp.stack(row) for row in low]), type(y))
        deltas, weights = self.increments(t, y)
        root = jnp.sqrt(weights / self.lr)[:, None]
        centred = tuple(
            root * (a - jnp.sum(weights[:, None] * a, axis=0)) if noisy else jnp.zeros_like(a)
            for a, noisy in zip(deltas, self._noisy_blocks(), strict=True)
        )
        return _DrawRoot(centred, type(y))


@eqx.filter_jit
def _compiled_moment_sums(sde: MomentsSDE, t, y, covariance: bool):
    return sde._moment_sums(t, y, covariance)
