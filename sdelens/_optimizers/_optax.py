"""Any optax optimizer as an sdelens optimizer, and the state layout every optax state maps to.

An optax state is a pytree. sdelens reads it as the SDE's state (docs/math.md §10): the leaves of
the parameters' shape and a floating dtype are the optimizer's per-parameter statistics (Adam's
`mu`, `nu`; Lion's `mu`; AdaBelief's `mu`, `nu`), the integer scalar leaves are step counters
(reconstructed from the clock, `k = t/η`), and nothing else is allowed. `OptaxLayout` does the
reading both ways.
"""

import ast
import collections
import functools
import inspect
import keyword
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, final

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import _check
from ._base import AbstractOptimizer

__all__ = ["Optax", "OptaxLayout", "check_coordinatewise", "optax_by_name"]


@functools.cache
def _state_type(fields: tuple[str, ...]) -> type:
    # One class per field list, so equal layouts give equal pytree structures (jit caches them).
    return collections.namedtuple("OptaxState", ("x", *fields))


def _leaf_name(path) -> str:
    names = [p.name for p in path if isinstance(p, jax.tree_util.GetAttrKey)]
    name = names[-1] if names else "s"
    if not name.isidentifier() or keyword.iskeyword(name) or name == "x":
        name = f"s_{name}" if name.isidentifier() else "s"
    return name


class OptaxLayout(NamedTuple):
    """Where an optax state's leaves go in the SDE state `OptaxState(x, <blocks>)`.

    `blocks`: indices (in `jax.tree.leaves` order) of the per-parameter floating leaves, one
    state field each, named after their attribute (`mu`, `nu`, ...); `counters`: indices of the
    integer scalar leaves (step counters, value `k` after `k` steps when they start at 0).
    """

    treedef: Any
    blocks: tuple[int, ...]
    counters: tuple[int, ...]
    fields: tuple[str, ...]
    counter_starts: tuple[int, ...]

    @classmethod
    def of(cls, opt_state, x) -> "OptaxLayout":
        """The layout of `opt_state` for parameters `x` (shapes and dtypes only, except that
        the counters' starting values are read when they are concrete)."""
        with_paths, treedef = jax.tree_util.tree_flatten_with_path(opt_state)
        blocks, counters, names, starts = [], [], [], []
        for i, (path, leaf) in enumerate(with_paths):
            shape, dtype = jnp.shape(leaf), jnp.result_type(leaf)
            where = jax.tree_util.keystr(path) or "the state"
            if jnp.issubdtype(dtype, jnp.floating) and shape == jnp.shape(x):
                blocks.append(i)
                names.append(_leaf_name(path))
            elif jnp.issubdtype(dtype, jnp.integer) and shape == ():
                counters.append(i)
                concrete = isinstance(leaf, jax.Array | np.ndarray | int) and _check.is_concrete(
                    leaf
                )
                starts.append(int(leaf) if concrete else 0)
            else:
                raise ValueError(
                    f"the optax state has a leaf {where} of shape {shape} and dtype {dtype}: "
                    f"sdelens reads only per-parameter float leaves (shape {jnp.shape(x)}) and "
                    "integer step counters (shape ()), so this optimizer's SDE state is not "
                    "defined (factored or per-layer statistics are not supported)."
                )
        fields = []
        for name in names:
            unique, n = name, 1
            while unique in fields:
                unique, n = f"{name}_{n}", n + 1
            fields.append(unique)
        return cls(treedef, tuple(blocks), tuple(counters), tuple(fields), tuple(starts))

    @property
    def state_type(self) -> type:
        return _state_type(self.fields)

    def state(self, x, opt_state) -> NamedTuple:
        """`OptaxState(x, *blocks)` from the parameters and the optax state."""
        leaves = jax.tree.leaves(opt_state)
        return self.state_type(x, *(leaves[i] for i in self.blocks))

    def opt_state(self, y, step) -> Any:
        """The optax state of SDE state `y` at optimizer step `step` (the counters' value)."""
        leaves: list = [None] * (len(self.blocks) + len(self.counters))
        for i, value in zip(self.blocks, tuple(y)[1:], strict=True):
            leaves[i] = value
        for i, start in zip(self.counters, self.counter_starts, strict=True):
            leaves[i] = jnp.asarray(start + step, jnp.int32)
        return jax.tree.unflatten(self.treedef, leaves)


def fixed_gradient(g) -> dict:
    """The extra arguments of an update whose every gradient is `g` (probing an update's
    structure: counters, coordinate-wise action)."""
    return {"grad_fn": lambda y, key: g, "step_grad_fn": lambda y: g, "key": jax.random.key(1)}


def check_counters(tx: optax.GradientTransformation, x0, layout: OptaxLayout) -> None:
    """Verify that every integer leaf counts steps (`+1` per update); the moment-matched SDE
    rebuilds them from the clock."""
    state = tx.init(x0)
    g = jnp.full_like(x0, 0.1)
    for _ in range(2):
        _, state = optax.with_extra_args_support(tx).update(
            g,
            state,
            x0,
            **fixed_gradient(g),
        )
    leaves = jax.tree.leaves(state)
    for i, start in zip(layout.counters, layout.counter_starts, strict=True):
        if int(leaves[i]) != start + 2:
            raise ValueError(
                f"the optax state's integer leaf {i} went from {start} to {int(leaves[i])} in two "
                "updates: sdelens reads integer leaves as step counters (+1 per update) and cannot "
                "rebuild this one from the clock."
            )


def check_coordinatewise(opt: AbstractOptimizer, d: int = 5) -> None:
    """Verify a declared coordinate-wise update: on `d` coordinates, after two steps from a
    random point, the Jacobian of (update, new state) with respect to the gradient, the
    parameters and every state block is diagonal. A ValueError names the first coupling found."""
    tx = optax.with_extra_args_support(opt.to_optax())
    key = jax.random.key(20261202)
    kx, kg, kh = jax.random.split(key, 3)
    x = jax.random.normal(kx, (d,))
    state = tx.init(x)
    for k in (kg, kh):
        g = jax.random.normal(k, (d,))
        _, state = tx.update(g, state, x, **fixed_gradient(g))
    layout = OptaxLayout.of(state, x)
    g = jax.random.normal(jax.random.fold_in(key, 3), (d,))

    def step(g, y):
        updates, new = tx.update(g, layout.opt_state(y, 2), y.x, **fixed_gradient(g))
        return layout.state(y.x + updates, new)

    y = layout.state(x, state)
    jacobian = jax.jacfwd(step, argnums=(0, 1))(g, y)  # per output field: (∂/∂g, ∂/∂y)
    off = ~np.eye(d, dtype=bool)
    for out_name, (by_g, by_y) in zip(y._fields, jacobian, strict=True):
        for in_name, block in [("the gradient", by_g), *zip(y._fields, by_y, strict=True)]:
            coupling = np.abs(np.asarray(block))[off]
            if coupling.size and coupling.max() > 1e-6 * (1.0 + np.abs(np.asarray(block)).max()):
                raise ValueError(
                    f"coordinatewise=True is invalid for {opt.name}: coordinate 0..{d - 1} of "
                    f"the new {out_name} depends on other coordinates of {in_name} (largest "
                    f"off-diagonal derivative {coupling.max():.3g}). Declare "
                    "coordinatewise=False (the moments are then taken by Monte Carlo)."
                )


@final
class Optax(AbstractOptimizer):
    """Any optax optimizer, given as a factory `lr -> optax.GradientTransformation`:

        sl.Optax(lambda lr: optax.adabelief(lr), lr=1e-3)

    The factory (not a ready transformation) lets sdelens rebuild the optimizer at other
    learning rates (`with_lr`, `weak_order`, scaling rules); every other hyperparameter stays
    whatever the factory fixes (write the factory in terms of `lr` to keep `ρ = (1-β)/η`
    fixed instead). The state is read from the optax state pytree (`OptaxLayout`:
    `OptaxState(x, mu, nu, ...)`). Its SDE is the moment-matched one, `form="moments"`
    (docs/math.md §10), derived from the optax update itself.

    `coordinatewise`: whether the update acts coordinate by coordinate (then the SDE's moments
    are one-dimensional quadratures per coordinate); `None` detects it from the Jacobian of
    one update on 5 coordinates, `True` is verified the same way (ValueError if wrong),
    `False` forces Monte Carlo moments. `name` labels results (default `"optax"`; the CLI
    uses `"optax:<alias>"`).
    """

    factory: Callable = eqx.field(static=True)
    lr: float
    coordinatewise: bool
    label: str = eqx.field(static=True)
    decay_names: ClassVar[tuple[str, ...]] = ()
    scaling_rules: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        factory: Callable,
        lr: float,
        *,
        coordinatewise: bool | None = None,
        name: str = "optax",
    ):
        if not callable(factory):
            raise ValueError(
                f"factory={factory!r} is invalid: a callable lr -> optax.GradientTransformation "
                "is required, e.g. lambda lr: optax.adabelief(lr)."
            )
        self.factory = factory
        self.lr = _check.number("lr")(lr)
        _check.positive_finite("lr", self.lr, scalar=True)
        if not isinstance(name, str) or not name:
            raise ValueError(f"name={name!r} is invalid: a non-empty string is required.")
        self.label = name
        self.coordinatewise = False
        tx = self.to_optax()
        x0 = jnp.linspace(-1.0, 1.0, 5)
        try:
            layout = OptaxLayout.of(tx.init(x0), x0)
            check_counters(tx, x0, layout)
        except ValueError:
            raise
        except Exception as err:
            raise ValueError(
                f"factory(lr={self.lr:g}) returned a transformation whose init/update failed on "
                f"a vector of 5 parameters: {_check.error_line(err)}"
            ) from None
        if coordinatewise not in (None, True, False):
            raise ValueError(
                f"coordinatewise={coordinatewise!r} is invalid: True, False or None (detect)."
            )
        self.coordinatewise = coordinatewise is not False
        if self.coordinatewise:
            try:
                check_coordinatewise(self)
            except ValueError:
                if coordinatewise:
                    raise
                self.coordinatewise = False

    def to_optax(self) -> optax.GradientTransformation:
        try:
            tx = self.factory(self.lr)
        except TypeError as err:
            raise ValueError(
                f"factory={self.factory!r} does not accept the learning rate: it must be called "
                f"as factory(lr) ({_check.error_line(err)})."
            ) from None
        if not isinstance(tx, optax.GradientTransformation | optax.GradientTransformationExtraArgs):
            raise ValueError(
                f"factory(lr={self.lr:g}) returned {type(tx).__name__}: an "
                "optax.GradientTransformation is required (e.g. optax.adabelief(lr))."
            )
        return tx

    @property
    def name(self) -> str:
        return self.label

    @property
    def weight_decay(self) -> float:
        """0: a decoupled weight decay inside the factory is part of the update, not a field
        sdelens reads."""
        return 0.0

    @property
    def grads_per_step(self) -> int:
        return 1

    def initial_state(self, x0):
        return self.state(x0, self.to_optax().init(x0))

    def state(self, x, opt_state):
        return OptaxLayout.of(opt_state, opt_state_params(x, opt_state)).state(x, opt_state)

    def default_scaling_rule(self) -> str:
        raise ValueError(
            f"{self.name} has no batch-size scaling rule in sdelens: pass rule= explicitly."
        )

    def stationary_cov(self, problem):
        raise NotImplementedError(
            f"{self.name} has no closed-form stationary law: use "
            "sl.linearised_stationary(opt, prob, form='moments')."
        )

    def hyperparameters(self) -> dict[str, float | int | bool | str]:
        return {"lr": float(self.lr), "coordinatewise": self.coordinatewise, "name": self.label}

    def replace(self, **changes) -> "Optax":
        allowed = {"lr", "coordinatewise", "name"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)} is not a hyperparameter of Optax: choose from "
                f"{', '.join(sorted(allowed))} (the others live in the factory)."
            )
        return Optax(
            self.factory,
            changes.get("lr", self.lr),
            coordinatewise=changes.get("coordinatewise", self.coordinatewise),
            name=changes.get("name", self.label),
        )


def opt_state_params(x, opt_state):
    """Parameters to read `opt_state`'s layout against (`x` itself; a shape stand-in when the
    caller passes `x=None`, as the deprecated `moments` does)."""
    if x is not None:
        return x
    blocks = [leaf for leaf in jax.tree.leaves(opt_state) if jnp.ndim(leaf) > 0]
    return blocks[0] if blocks else jnp.zeros(())


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def optax_by_name(alias: str, lr: float, args=()) -> Optax:
    """`sl.Optax` of the optax alias `alias` (e.g. `"adabelief"`), whose first parameter is
    the learning rate, with keyword arguments `args`: a mapping, or `"key=value"` strings as
    the command line's `--opt-arg` gives them (values read as Python literals, else strings).
    Named `"optax:<alias>"`."""
    factory = getattr(optax, alias, None) if alias.isidentifier() else None
    params = None
    if callable(factory):
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            params = None
    if params is None or "learning_rate" not in params:
        raise ValueError(
            f"optimizer='optax:{alias}' is invalid: an optax optimizer alias taking a "
            "learning_rate is required, e.g. optax:adabelief, optax:lion, optax:adamax."
        )
    if isinstance(args, dict):
        kwargs = dict(args)
    else:
        kwargs = {}
        for item in args:
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip():
                raise ValueError(f"opt_arg={item!r} is invalid: key=value is required.")
            kwargs[key.strip()] = _literal(value.strip())
    allowed = [name for name in params if name != "learning_rate"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"opt_arg={unknown[0]!r} is not an argument of optax.{alias}: choose from "
            f"{', '.join(allowed)}."
        )
    return Optax(functools.partial(_call_alias, alias, kwargs), lr, name=f"optax:{alias}")


def _call_alias(alias: str, kwargs: dict, lr: float) -> optax.GradientTransformation:
    return getattr(optax, alias)(lr, **kwargs)
