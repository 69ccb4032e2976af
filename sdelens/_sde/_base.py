"""The optimizer-SDE interface: drift and diffusion of a typed (pytree) state."""

import abc
import math
from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jax.flatten_util import ravel_pytree
from jaxtyping import Array

from .._optimizers import AbstractOptimizer
from .._problems import AbstractProblem

__all__ = [
    "AbstractOptimizerSDE",
    "StateOperator",
    "stratonovich_correction",
    "embed_noise",
    "scale_operator",
]

State = NamedTuple


class AbstractOptimizerSDE(eqx.Module):
    """`dY = b(Y) dt + G(Y) dW` on the clock `t = k η`, for an optimizer on a problem.

    The state `Y` is the optimizer's own named tuple (`ParamState(x)`, `AdamState(x, m, v)`,
    ...): diffrax integrates the pytree directly, and the optimizer's runs record the same
    fields. Itô convention throughout: `b` is the Itô drift (see `stratonovich_correction`).
    Each concrete SDE declares the optimizer type and the `form` it models (`sde_for`).
    """

    optimizer: eqx.AbstractVar[AbstractOptimizer]
    problem: eqx.AbstractVar[AbstractProblem]
    optimizer_type: eqx.AbstractClassVar[type]
    form: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def drift(self, t, y: State, args) -> State:
        """The Itô drift `b(t, Y)`, a state of the same structure."""

    @abc.abstractmethod
    def diffusion(self, t, y: State, args) -> lx.AbstractLinearOperator:
        """`G(t, Y)`, a linear operator from the Brownian increment to the state's structure."""

    @abc.abstractmethod
    def initial_state(self, x0) -> State:
        """The SDE state at `t = 0` for parameters `x0` (the optimizer's own initial state)."""

    @abc.abstractmethod
    def rest_state(self, x) -> State:
        """The state with parameters `x` and every moving average at its equilibrium given `x`
        (a starting guess for the stationary point)."""

    @property
    @abc.abstractmethod
    def coupling_sign(self) -> int | None:
        """How a coupled run drives the optimizer's gradient noise (docs/math.md §13): its
        standard normals are `ξ = sign · w₀`, with `w₀` this SDE's standardised Brownian
        increment over the optimizer's step (`(W(t_{k+1}) - W(t_k))/√η`; its first row where `W`
        stacks several driving motions, as Lion's does). The sign makes both move the parameters
        the same way (SGD's `+√η Σ^{1/2} dW` against the optimizer's `-η Z`: `-1`; Adam's
        noise enters `m` with a plus: `+1`). None: this SDE is not coupled to its optimizer."""

    def check_coupling(self, x0) -> None:
        """Raise a ValueError, before any run, if this SDE cannot drive its optimizer's noise:
        no coupling sign, or a Brownian motion of another shape than the noise's normals."""
        noise = self.problem.noise.normals_shape(self.problem, x0)
        if self.coupling_sign is None or noise is None:
            why = "its optimizer" if self.coupling_sign is None else self.problem.noise.label
            raise ValueError(
                f"coupled=True is invalid for {type(self).__name__} (form={self.form!r}) with "
                f"{self.problem.noise.label}: {why} draws its noise in a way this SDE's Brownian "
                "motion does not drive (use coupled=False)."
            )
        shape = self.brownian_shape(x0)
        if tuple(shape) != tuple(noise) and tuple(shape[1:]) != tuple(noise):
            raise ValueError(
                f"coupled=True is invalid for {type(self).__name__} (form={self.form!r}) with "
                f"{self.problem.noise.label}: its Brownian motion has shape {tuple(shape)}, the "
                f"noise is drawn from normals of shape {tuple(noise)} (use coupled=False)."
            )

    def gradient_normals(self, w: Array, shape: tuple[int, ...]) -> Array:
        """The optimizer's gradient-noise normals of `shape` in a coupled run, from this SDE's
        standardised increment `w` over the step (see `coupling_sign`)."""
        first = w if tuple(w.shape) == tuple(shape) else w[0]
        return self.coupling_sign * first

    def parameters(self, y: State):
        """The parameters `X` inside a state `Y` (every state's first field)."""
        return y.x

    def brownian_shape(self, x0) -> tuple[int, ...]:
        """Shape of the driving Brownian motion `W`: the input of the diffusion operator (one
        coordinate per parameter for additive noise; one per training example for exact
        minibatch noise). Found by tracing `diffusion` shapes only, no computation."""
        operator = eqx.filter_eval_shape(self.diffusion, 0.0, self.initial_state(x0), None)
        return operator.in_structure().shape

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    def terms(self, brownian: diffrax.AbstractBrownianPath, *, stratonovich: bool = False):
        """diffrax terms `ODETerm(b) + ControlTerm(G, W)`; the Stratonovich drift if asked."""
        drift = self.stratonovich_drift if stratonovich else self.drift
        return diffrax.MultiTerm(
            diffrax.ODETerm(drift), diffrax.ControlTerm(self.diffusion, brownian)
        )

    def stratonovich_drift(self, t, y, args):
        """`b - c`: the drift of the same process written in Stratonovich form."""
        correction = stratonovich_correction(self.diffusion, t, y, args)
        return jax.tree.map(jnp.subtract, self.drift(t, y, args), correction)


def traced_floats(tree):
    """`tree` with its Python floats as (weakly typed) 0-d arrays, for the arguments of a
    compiled function. `eqx.filter_jit` treats a Python float as static: every new learning
    rate, β or noise scale would trace and compile it again (a sweep over four step sizes
    compiled the cores four times). Fields that change the program (an SGD's momentum 0 or not)
    are static fields of their modules. Of a problem only the noise model's floats are traced:
    a network's layers branch on theirs (dropout rates)."""

    def traced(node):
        if isinstance(node, AbstractProblem):
            return eqx.tree_at(lambda p: p.noise, node, traced_floats(node.noise))
        return jnp.asarray(node) if type(node) is float else node

    return jax.tree.map(traced, tree, is_leaf=lambda node: isinstance(node, AbstractProblem))


def stratonovich_correction(diffusion, t, y, args):
    """`cᵢ = ½ Σⱼₖ Gₖⱼ ∂ₖGᵢⱼ`, so that Itô `b dt + G dW` = Stratonovich `(b - c) dt + G ∘ dW`
    (docs/math.md, appendix A). The state is ravelled to a vector for the Jacobian.

    Zero for additive noise (SGD with constant `Σ`); nonzero for SignSGD, whose diffusion
    depends on the state.
    """
    flat, unravel = ravel_pytree(y)

    def dense(flat_):
        return diffusion(t, unravel(flat_), args).as_matrix()

    g = dense(flat)

    def column_term(j):
        _, dg = jax.jvp(dense, (flat,), (g[:, j],))
        return dg[:, j]

    return unravel(0.5 * jnp.sum(jax.vmap(column_term)(jnp.arange(g.shape[1])), axis=0))


def scale_operator(op: lx.AbstractLinearOperator, c) -> lx.AbstractLinearOperator:
    """`diag(c) · op` for a scalar or per-row vector `c`, keeping a diagonal operator diagonal
    and a matrix a matrix (their leaves stay arrays, which Milstein's derivative terms need), a
    matrix-free operator matrix-free."""
    if isinstance(op, lx.DiagonalLinearOperator):
        return lx.DiagonalLinearOperator(c * op.diagonal)
    if isinstance(op, lx.MatrixLinearOperator):
        return lx.MatrixLinearOperator(jnp.reshape(c, (-1, 1)) * op.matrix)
    return lx.FunctionLinearOperator(lambda w: c * op.mv(w), op.in_structure())


class StateOperator(lx.AbstractLinearOperator):
    """A linear map from the Brownian increment to a typed state: field `f` of
    `mv(dW)` is `blocks[f].mv(dW)`, or zero where `blocks[f]` is None (no noise on it)."""

    blocks: tuple
    state_type: type = eqx.field(static=True)
    shapes: tuple = eqx.field(static=True)

    def mv(self, vector):
        return self.state_type(
            *(
                jnp.zeros(shape.shape, shape.dtype) if block is None else block.mv(vector)
                for block, shape in zip(self.blocks, self.shapes, strict=True)
            )
        )

    def as_matrix(self):
        m = math.prod(self.in_structure().shape)
        rows = [
            jnp.zeros((math.prod(shape.shape), m), shape.dtype)
            if block is None
            else block.as_matrix()
            for block, shape in zip(self.blocks, self.shapes, strict=True)
        ]
        return jnp.concatenate(rows, axis=0)

    def transpose(self):
        raise NotImplementedError("StateOperator has no transpose: none is needed.")

    def in_structure(self):
        return next(b for b in self.blocks if b is not None).in_structure()

    def out_structure(self):
        return self.state_type(*self.shapes)


for _query in (lx.is_symmetric, lx.is_positive_semidefinite, lx.is_negative_semidefinite):
    _query.register(StateOperator)(lambda operator: False)


def embed_noise(root: lx.AbstractLinearOperator, like: State, **scales) -> StateOperator:
    """The diffusion of a state driven by one gradient noise `Σ^{1/2} dW`: field `f` of the
    state receives `diag(scales[f]) Σ^{1/2} dW` (a scalar or a vector per coordinate), the
    other fields nothing. Every field sees the same `dW` (the noise of one stochastic gradient
    moves `x` and `m` together). A diagonal or matrix root stays so per field; a matrix-free
    root (minibatch noise) stays matrix-free."""
    unknown = set(scales) - set(like._fields)
    if unknown:
        raise ValueError(f"{sorted(unknown)} are not fields of {type(like).__name__}.")
    blocks = tuple(
        scale_operator(root, scales[name]) if name in scales else None for name in like._fields
    )
    shapes = tuple(jax.ShapeDtypeStruct(jnp.shape(v), jnp.result_type(v)) for v in like)
    return StateOperator(blocks, type(like), shapes)


class AbstractOwnStateSDE(AbstractOptimizerSDE):
    """An SDE whose state is the optimizer's own (`optimizer.initial_state`)."""

    def initial_state(self, x0):
        return self.optimizer.initial_state(x0)
