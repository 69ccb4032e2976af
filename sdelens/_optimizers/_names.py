"""The optimizers by the names the command line uses."""

from __future__ import annotations

import dataclasses

from .. import _check
from ._adaptive import Adam, RMSprop
from ._base import AbstractOptimizer
from ._entropy import EntropySGD
from ._lion import Lion
from ._optax import optax_by_name
from ._sam import SAM
from ._sgd import SGD, SignSGD

__all__ = ["OPTIMIZERS", "optimizer_by_name"]

# name -> (class, decoupled weight decay: required (> 0), forbidden (= 0) or not a field)
OPTIMIZERS: dict[str, tuple[type[AbstractOptimizer], bool | None]] = {
    "sgd": (SGD, None),
    "signsgd": (SignSGD, None),
    "rmsprop": (RMSprop, False),
    "rmspropw": (RMSprop, True),
    "adam": (Adam, False),
    "adamw": (Adam, True),
    "entropysgd": (EntropySGD, None),
    "lion": (Lion, False),
    "lionw": (Lion, True),
    "sam": (SAM, None),
    "usam": (SAM, None),
}
# Names that fix a hyperparameter of their class (USAM is SAM without the normalisation).
FIXED_HYPERPARAMETERS: dict[str, dict[str, bool]] = {
    "sam": {"normalize": True},
    "usam": {"normalize": False},
}


def optimizer_by_name(name: str, lr: float, **hyperparameters) -> AbstractOptimizer:
    """The optimizer `name` (`OPTIMIZERS`) at learning rate `lr`, taking from
    `hyperparameters` the ones it has (others are ignored, so that one set of options can build
    any optimizer). `"rmspropw"`/`"adamw"` need `weight_decay > 0`; `"rmsprop"`/`"adam"` use 0.
    `"usam"` is `SAM(normalize=False)` and `"sam"` `SAM(normalize=True)`, whatever
    `hyperparameters` say. `"optax:<alias>"` is any optax optimizer (`sl.Optax`, e.g.
    `"optax:adabelief"`), with its keyword arguments in `opt_arg` (`"key=value"` strings, as
    the command line's `--opt-arg`) or `opt_args` (a dict)."""
    if isinstance(name, str) and name.startswith("optax:"):
        args = hyperparameters.get("opt_args") or hyperparameters.get("opt_arg") or ()
        return optax_by_name(name.removeprefix("optax:"), lr, args)
    _check.choice("optimizer", name, (*OPTIMIZERS, "optax:<alias>"))
    cls, decayed = OPTIMIZERS[name]
    fields = {f.name for f in dataclasses.fields(cls)} - {"lr"}
    kwargs = {k: v for k, v in hyperparameters.items() if k in fields}
    kwargs.update(FIXED_HYPERPARAMETERS.get(name, {}))
    if decayed is True:
        theta = kwargs.get("weight_decay", 0.0)
        if not theta > 0:
            raise ValueError(
                f"weight_decay={theta} is invalid for {name}: it must be > 0 (use {name[:-1]} "
                "for no weight decay)."
            )
    elif decayed is False:
        kwargs["weight_decay"] = 0.0
    return cls(lr=lr, **kwargs)
