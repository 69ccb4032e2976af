"""The SDEs of the optimizers (docs/math.md §2-§4, §7)."""

from ._adaptive import (
    AdamMalladiSDE as AdamMalladiSDE,
    AdamSDE as AdamSDE,
    RMSpropMalladiSDE as RMSpropMalladiSDE,
    RMSpropSDE as RMSpropSDE,
)
from ._base import (
    AbstractOptimizerSDE as AbstractOptimizerSDE,
    embed_noise as embed_noise,
    stratonovich_correction as stratonovich_correction,
    traced_floats as traced_floats,
)
from ._entropy import (
    EntropySGDSDE as EntropySGDSDE,
    FiniteChainEntropySGDSDE as FiniteChainEntropySGDSDE,
)
from ._euler import EulerIncrementTerm as EulerIncrementTerm
from ._for import SDES as SDES, sde_for as sde_for, sde_forms as sde_forms
from ._lion import LionSDE as LionSDE
from ._moments import MomentsSDE as MomentsSDE
from ._sam import SAMSDE as SAMSDE, USAMSDE as USAMSDE
from ._second_order import SecondOrderSGDSDE as SecondOrderSGDSDE
from ._sgd import SGDSDE as SGDSDE, SignSGDSDE as SignSGDSDE
