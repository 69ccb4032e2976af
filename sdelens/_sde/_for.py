"""`sde_for`: the SDE of an optimizer on a problem, in one of its published forms."""

from __future__ import annotations

from .._optimizers import AbstractOptimizer
from .._problems import AbstractProblem
from ._adaptive import AdamMalladiSDE, AdamSDE, RMSpropMalladiSDE, RMSpropSDE
from ._base import AbstractOptimizerSDE
from ._entropy import EntropySGDSDE
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
)


def sde_forms(opt: AbstractOptimizer) -> tuple[str, ...]:
    """The forms of `opt`'s SDE that sdelens implements (`"default"` first)."""
    forms = [cls.form for cls in SDES if cls.optimizer_type is type(opt)]
    return tuple(sorted(forms, key=lambda f: (f != "default", f)))


def sde_for(
    opt: AbstractOptimizer, problem: AbstractProblem, form: str = "default"
) -> AbstractOptimizerSDE:
    """The SDE of optimizer `opt` on `problem`.

    `form` selects among published forms where there are several (`"default"`: the
    Compagnoni et al. 2025 form on the clock `t = k η`; `"malladi"` for RMSprop and Adam).
    """
    if not isinstance(opt, AbstractOptimizer):
        raise ValueError(f"opt={opt!r} is invalid: an sdelens optimizer (e.g. sl.SGD) is required.")
    if not isinstance(problem, AbstractProblem):
        raise ValueError(f"problem={problem!r} is invalid: an sdelens problem is required.")
    forms = sde_forms(opt)
    if not forms:
        raise ValueError(f"opt={type(opt).__name__} has no SDE in sdelens.")
    if form not in forms:
        raise ValueError(
            f"form={form!r} is invalid for {type(opt).__name__}: choose one of {list(forms)}."
        )
    cls = next(c for c in SDES if c.optimizer_type is type(opt) and c.form == form)
    return cls(opt, problem)
