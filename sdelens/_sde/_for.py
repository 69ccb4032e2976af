"""`sde_for`: the SDE of an optimizer on a problem, in one of its published forms."""

from __future__ import annotations

from .._optimizers import AbstractOptimizer
from .._problems import AbstractProblem
from ._adaptive import AdamMalladiSDE, AdamSDE, RMSpropMalladiSDE, RMSpropSDE
from ._base import AbstractOptimizerSDE
from ._entropy import EntropySGDSDE, FiniteChainEntropySGDSDE
from ._lion import LionSDE
from ._moments import MomentsSDE
from ._sam import SAMSDE, USAMSDE
from ._second_order import SecondOrderSGDSDE
from ._sgd import SGDSDE, SignSGDSDE

__all__ = ["sde_for", "sde_forms", "SDES"]

# Every SDE sdelens implements; each declares the optimizer type and the form it models.
SDES: tuple[type[AbstractOptimizerSDE], ...] = (
    SGDSDE,
    SignSGDSDE,
    RMSpropSDE,
    RMSpropMalladiSDE,
    AdamSDE,
    AdamMalladiSDE,
    EntropySGDSDE,
    FiniteChainEntropySGDSDE,
    LionSDE,
    USAMSDE,
    SAMSDE,
    SecondOrderSGDSDE,
)


def _models(cls, opt) -> bool:
    """Whether `cls` is an SDE of `opt`: its optimizer type, and where one type has several
    variants with an SDE each (SAM and USAM), the SDE's own `models(opt)`."""
    return cls.optimizer_type is type(opt) and getattr(cls, "models", lambda _: True)(opt)


def sde_forms(opt: AbstractOptimizer) -> tuple[str, ...]:
    """The forms of `opt`'s SDE that sdelens implements (`"default"` first; `"moments"`, the
    moment-matched SDE of `MomentsSDE`, exists for every optimizer and comes last)."""
    forms = [cls.form for cls in SDES if _models(cls, opt)]
    return (*sorted(forms, key=lambda f: (f != "default", f)), "moments")


def sde_for(
    opt: AbstractOptimizer,
    problem: AbstractProblem,
    form: str = "default",
    *,
    nodes: int | None = None,
) -> AbstractOptimizerSDE:
    """The SDE of optimizer `opt` on `problem`.

    `form` selects among published forms where there are several (`"default"`: the
    Compagnoni et al. 2025 form on the clock `t = k η`; `"malladi"` for RMSprop and Adam;
    `"second_order"` for SGD; `"finite_chain"` for Entropy-SGD) and `"moments"`, the
    moment-matched SDE derived from the optax update (`MomentsSDE`, docs/math.md §10), with
    `nodes` quadrature nodes or Monte Carlo draws (default 16 and 64). An optimizer without a
    hand-derived SDE (`sl.Optax`) has `"moments"` as its default.
    """
    if not isinstance(opt, AbstractOptimizer):
        raise ValueError(f"opt={opt!r} is invalid: an sdelens optimizer (e.g. sl.SGD) is required.")
    if not isinstance(problem, AbstractProblem):
        raise ValueError(f"problem={problem!r} is invalid: an sdelens problem is required.")
    forms = sde_forms(opt)
    if form == "default" and forms[0] == "moments":
        form = "moments"
    if nodes is not None and form != "moments":
        raise ValueError(
            f"nodes={nodes!r} is invalid with form={form!r}: only form='moments' has nodes."
        )
    variant = [c for c in SDES if c.optimizer_type is type(opt) and c.form == form]
    if form not in forms and variant:
        return variant[0](opt, problem)  # a form of another variant: its check says why not
    if form not in forms:
        raise ValueError(
            f"form={form!r} is invalid for {type(opt).__name__}: choose one of {list(forms)}."
        )
    if form == "moments":
        return MomentsSDE(opt, problem, nodes=nodes)
    cls = next(c for c in SDES if _models(c, opt) and c.form == form)
    return cls(opt, problem)
