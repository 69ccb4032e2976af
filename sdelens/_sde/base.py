"""The optimizer-SDE interface and `sde_for`."""

from __future__ import annotations

import abc

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Float

from .._optimizers import AbstractOptimizer
from .._problems import AbstractProblem

_REGISTRY: dict[tuple[type, str], type] = {}


class AbstractOptimizerSDE(eqx.Module):
    """`dY = b(Y) dt + G(Y) dW` on the clock `t = k η`, for an optimizer on a problem.

    The state `Y` holds the parameters `X` and, for stateful optimizers, their moving averages.
    Itô convention throughout: `b` is the Itô drift (see `stratonovich_correction`).
    """

    optimizer: eqx.AbstractVar[AbstractOptimizer]
    problem: eqx.AbstractVar[AbstractProblem]

    @abc.abstractmethod
    def drift(self, t, y: Float[Array, " n"], args) -> Float[Array, " n"]:
        """The Itô drift `b(t, Y)`."""

    @abc.abstractmethod
    def diffusion(self, t, y: Float[Array, " n"], args) -> lx.AbstractLinearOperator:
        """`G(t, Y)`, a linear operator from the Brownian increment to the state."""

    @abc.abstractmethod
    def initial_state(self, x0: Float[Array, " d"]) -> Float[Array, " n"]:
        """The SDE state at `t = 0` for parameters `x0` (the optimizer's own initial state)."""

    @abc.abstractmethod
    def parameters(self, y: Float[Array, " n"]) -> Float[Array, " d"]:
        """The parameters `X` inside a state `Y`."""

    def brownian_shape(self, x0: Float[Array, " d"]) -> tuple[int, ...]:
        """Shape of the driving Brownian motion `W`: the input of the diffusion operator (one
        coordinate per parameter for additive noise; one per training example for exact
        minibatch noise). Found by tracing `diffusion` shapes only, no computation."""
        operator = eqx.filter_eval_shape(self.diffusion, 0.0, self.initial_state(x0), None)
        return operator.in_structure().shape

    @abc.abstractmethod
    def rest_state(self, x: Float[Array, " d"]) -> Float[Array, " n"]:
        """The state with parameters `x` and every moving average at its equilibrium given `x`
        (a starting guess for the stationary point)."""

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
        return self.drift(t, y, args) - stratonovich_correction(self.diffusion, t, y, args)


def stratonovich_correction(diffusion, t, y: Float[Array, " n"], args) -> Float[Array, " n"]:
    """`cᵢ = ½ Σⱼₖ Gₖⱼ ∂ₖGᵢⱼ`, so that Itô `b dt + G dW` = Stratonovich `(b - c) dt + G ∘ dW`.

    Zero for additive noise (SGD with constant `Σ`); nonzero for SignSGD, whose diffusion
    depends on the state.
    """

    def dense(y_):
        return diffusion(t, y_, args).as_matrix()

    g = dense(y)

    def column_term(j):
        _, dg = jax.jvp(dense, (y,), (g[:, j],))
        return dg[:, j]

    return 0.5 * jnp.sum(jax.vmap(column_term)(jnp.arange(g.shape[1])), axis=0)


def require_finite_variance(sde_name: str, noise) -> None:
    """SDEs built on `Σ` (SGD, RMSprop, Adam) do not exist for infinite-variance noise."""
    if not noise.has_finite_variance:
        df = float(getattr(noise, "df", float("nan")))
        raise ValueError(
            f"The {sde_name} SDE does not exist for {type(noise).__name__} with infinite "
            f"variance (df={df} <= 2): it needs the noise covariance Σ. SignSGD's SDE exists for "
            "any df > 0: use sl.SignSGD."
        )


def scale_operator(op: lx.AbstractLinearOperator, c) -> lx.AbstractLinearOperator:
    """`c · op`, keeping a diagonal operator diagonal (diffrax then uses the cheap path) and a
    matrix-free operator matrix-free."""
    if isinstance(op, lx.DiagonalLinearOperator):
        return lx.DiagonalLinearOperator(c * op.diagonal)
    if isinstance(op, lx.MatrixLinearOperator):
        return lx.MatrixLinearOperator(c * op.matrix)
    return lx.FunctionLinearOperator(lambda w: c * op.mv(w), op.in_structure())


def embed_noise(root: lx.AbstractLinearOperator, rows: list) -> lx.AbstractLinearOperator:
    """The diffusion of a stacked state `(x, m, v, ...)` driven by one gradient noise `Σ^{1/2} dW`.

    `rows[b]` is `None` (block `b` has no noise) or a `(d,)` vector `c` (block `b` receives
    `diag(c) Σ^{1/2} dW`). Every block sees the same `dW`: the noise of one stochastic gradient
    moves `x` and `m` together. Only `root.mv` is used, so no `(k d, ·)` matrix is formed and a
    matrix-free root (minibatch noise) stays matrix-free.
    """

    def apply(dw):
        kick = root.mv(dw)
        return jnp.concatenate([jnp.zeros_like(kick) if c is None else c * kick for c in rows])

    return lx.FunctionLinearOperator(apply, root.in_structure())


class AbstractParameterSDE(AbstractOptimizerSDE):
    """An SDE whose state is the parameter vector alone (SGD, SignSGD)."""

    def initial_state(self, x0):
        return x0

    def rest_state(self, x):
        return x

    def parameters(self, y):
        return y


def register_sde(optimizer_type: type, form: str = "default"):
    """Class decorator: the SDE class `sde_for` builds for `optimizer_type` and `form`."""

    def wrap(cls):
        _REGISTRY[(optimizer_type, form)] = cls
        return cls

    return wrap


def sde_for(
    opt: AbstractOptimizer, problem: AbstractProblem, form: str = "default"
) -> AbstractOptimizerSDE:
    """The SDE of optimizer `opt` on `problem`.

    `form` selects among published forms where there are several (`"default"`: the
    Compagnoni et al. 2025 form on the clock `t = k η`).
    """
    if not isinstance(opt, AbstractOptimizer):
        raise ValueError(f"opt={opt!r} is invalid: an sdelens optimizer (e.g. sl.SGD) is required.")
    if not isinstance(problem, AbstractProblem):
        raise ValueError(f"problem={problem!r} is invalid: an sdelens problem is required.")
    forms = sorted(f for (t, f) in _REGISTRY if t is type(opt))
    if not forms:
        raise ValueError(f"opt={type(opt).__name__} has no SDE in sdelens.")
    if form not in forms:
        raise ValueError(
            f"form={form!r} is invalid for {type(opt).__name__}: choose one of {forms}."
        )
    return _REGISTRY[(type(opt), form)](opt, problem)
