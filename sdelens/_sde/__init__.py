from .base import (
    AbstractOptimizerSDE as AbstractOptimizerSDE,
)
from .base import (
    AbstractParameterSDE as AbstractParameterSDE,
)
from .base import (
    register_sde as register_sde,
)
from .base import (
    sde_for as sde_for,
)
from .base import (
    stratonovich_correction as stratonovich_correction,
)
from .sgd import SGDSDE as SGDSDE
from .signsgd import SignSGDSDE as SignSGDSDE
