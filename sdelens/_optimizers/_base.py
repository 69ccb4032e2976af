"""The optimizer interface: one object of hyperparameters drives the discrete optimizer (optax)
and its SDE, and knows what the theory needs of it."""

import abc
import dataclasses
import warnings
from typing import Any, NamedTuple

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from .. import _check
from .._problems import AbstractProblem, Quadratic

__all__ = ["AbstractOptimizer", "ParamState", "require_quadratic", "require_minimum_at_zero"]


class ParamState(NamedTuple):
    """The state of an optimizer without memory (and of its SDE): the parameters alone."""

    x: Float[Array, " d"]


class AbstractOptimizer(eqx.Module):
    """Hyperparameters of a first-order optimizer with learning rate `lr` (`η`).

    `to_optax()` is the discrete optimizer; `sdelens.sde_for` builds its SDE from the same
    fields, so the two never disagree on what the hyperparameters mean. Step `k` sits at time
    `t = k η` on the common clock (docs/math.md §1).

    What the rest of sdelens needs to know about an optimizer is declared here: its state in the
    SDE's layout (`initial_state`, `state`), its decoupled weight decay (`weight_decay`, 0 for
    optimizers without one), its moving-average decays (`decay_names`, kept at
    fixed `ρ = (1-β)/η` by `with_lr`), the batch-size scaling rules it admits
    (`scaling_rules`, `default_scaling_rule`), its stationary covariance on a quadratic where a
    closed form exists (`stationary_cov`), and how to rebuild it with other hyperparameters
    (`replace`, which validates like the constructor), and whether its update acts coordinate by
    coordinate (`coordinatewise`: coordinate `i` of the new state depends on coordinate `i` of
    the gradient, the parameters and the state only), which lets the moment-matched SDE
    (`form="moments"`) take its moments by one-dimensional quadrature per coordinate.
    """

    lr: eqx.AbstractVar[float]
    weight_decay: eqx.AbstractVar[float]
    coordinatewise: eqx.AbstractVar[bool]
    decay_names: eqx.AbstractClassVar[tuple[str, ...]]
    scaling_rules: eqx.AbstractClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def to_optax(self) -> optax.GradientTransformation:
        """The discrete optimizer as an optax transformation."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Short lower-case name, as on the command line (`"adamw"` when decayed)."""

    @property
    @abc.abstractmethod
    def grads_per_step(self) -> int:
        """Stochastic-gradient evaluations per optimizer step (the compute-fair clock)."""

    @abc.abstractmethod
    def initial_state(self, x0: Float[Array, " d"]) -> NamedTuple:
        """The optimizer's state at the start, as a named tuple whose first field is `x`: the
        layout its SDE integrates, so optimizer and SDE states line up field by field."""

    @abc.abstractmethod
    def state(self, x: Float[Array, " d"], opt_state: Any) -> NamedTuple:
        """The state after a step, from the parameters and the optax state (same layout)."""

    @abc.abstractmethod
    def default_scaling_rule(self) -> str:
        """The batch-size scaling rule this optimizer follows (`sdelens.scale`, docs/math.md §6);
        a ValueError if it has none."""

    @abc.abstractmethod
    def stationary_cov(self, problem: AbstractProblem) -> tuple[np.ndarray, str]:
        """`(Cov X_∞, method)` of the SDE's stationary law on a quadratic (docs/math.md §5);
        NotImplementedError where no closed form exists, ValueError where no stationary law
        exists."""

    def hyperparameters(self) -> dict[str, float | int | bool | str]:
        """The constructor's arguments as plain Python values (for manifests and `replace`)."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = value if isinstance(value, bool | int | str) else float(value)
        return out

    def replace(self, **changes) -> "AbstractOptimizer":
        """The same optimizer with some hyperparameters changed, built (and validated) anew."""
        fields = self.hyperparameters()
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)} is not a hyperparameter of {type(self).__name__}: "
                f"choose from {', '.join(fields)}."
            )
        return type(self)(**{**fields, **changes})

    def moments(self, opt_state: Any):
        """Deprecated: the moving averages (fields after `x` of `state(x, opt_state)`) stacked
        as rows, or None without any; use `state(x, opt_state)`, whose fields are named."""
        warnings.warn(
            "opt.moments(opt_state) is deprecated and will be removed in the next release: use "
            "opt.state(x, opt_state) (a named tuple: x, m, v, ...).",
            DeprecationWarning,
            stacklevel=2,
        )
        rest = tuple(self.state(None, opt_state))[1:]
        return jnp.stack(rest) if rest else None

    def with_lr(self, lr: float) -> "AbstractOptimizer":
        """This optimizer at learning rate `lr` with every `ρ = (1 - β)/η` kept fixed
        (docs/math.md §1): the family along which an SDE approximates its optimizer as
        `η → 0`."""
        _check.positive_finite("lr", lr, scalar=True)
        changes: dict[str, float] = {"lr": float(lr)}
        for name in self.decay_names:
            rho = (1.0 - getattr(self, name)) / self.lr
            changes[name] = 1.0 - rho * lr
            _check.in_interval(f"{name} at lr={lr}", changes[name], 0.0, 1.0)
        return self.replace(**changes)


def require_quadratic(opt: AbstractOptimizer, problem: AbstractProblem) -> Quadratic:
    """The closed forms live on quadratics."""
    if not isinstance(problem, Quadratic):
        raise NotImplementedError(
            f"{type(opt).__name__} has closed-form stationary laws on Quadratic problems only, "
            f"not {type(problem).__name__}: use sl.linearised_stationary."
        )
    return problem


def require_minimum_at_zero(opt: AbstractOptimizer, quadratic: Quadratic) -> None:
    """The closed forms with decoupled weight decay assume `x* = 0` (the decay pulls to 0)."""
    if opt.weight_decay > 0 and np.any(np.asarray(quadratic.x_star) != 0):
        raise NotImplementedError(
            "With weight decay the closed form assumes the minimum at 0: "
            "use sl.linearised_stationary."
        )
