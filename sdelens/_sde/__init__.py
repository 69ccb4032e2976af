from .adaptive import (
    AdamMalladiSDE as AdamMalladiSDE,
    AdamSDE as AdamSDE,
    RMSpropMalladiSDE as RMSpropMalladiSDE,
    RMSpropSDE as RMSpropSDE,
)
from .base import (
    AbstractOptimizerSDE as AbstractOptimizerSDE,
    AbstractParameterSDE as AbstractParameterSDE,
    register_sde as register_sde,
    sde_for as sde_for,
    stratonovich_correction as stratonovich_correction,
)
from .entropy import EntropySGDSDE as EntropySGDSDE
from .sgd import SGDSDE as SGDSDE
from .signsgd import SignSGDSDE as SignSGDSDE
