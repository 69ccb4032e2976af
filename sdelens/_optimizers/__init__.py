"""Optimizers: hyperparameters that drive both the discrete optimizer and its SDE."""

from ._adaptive import (
    Adam as Adam,
    AdamState as AdamState,
    RMSprop as RMSprop,
    RMSpropState as RMSpropState,
)
from ._base import AbstractOptimizer as AbstractOptimizer, ParamState as ParamState
from ._entropy import EntropySGD as EntropySGD, RelaxationState as RelaxationState
from ._lion import Lion as Lion, LionState as LionState
from ._names import OPTIMIZERS as OPTIMIZERS, optimizer_by_name as optimizer_by_name
from ._optax import Optax as Optax, OptaxLayout as OptaxLayout
from ._sam import SAM as SAM
from ._sgd import SGD as SGD, MomentumState as MomentumState, SignSGD as SignSGD
