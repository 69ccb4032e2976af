"""sdelens: optimizers through the lens of their stochastic differential equations."""

from . import plot as plot
from ._compare import Comparison as Comparison
from ._compare import compare as compare
from ._experiments import (
    NoiseSweep as NoiseSweep,
)
from ._experiments import (
    OptimizerVsSDE as OptimizerVsSDE,
)
from ._experiments import (
    loglog_slope as loglog_slope,
)
from ._experiments import (
    noise_sweep as noise_sweep,
)
from ._experiments import (
    optimizer_vs_sde as optimizer_vs_sde,
)
from ._noise import (
    AbstractNoise as AbstractNoise,
)
from ._noise import (
    GaussianNoise as GaussianNoise,
)
from ._noise import (
    SampledNoise as SampledNoise,
)
from ._noise import (
    StudentTNoise as StudentTNoise,
)
from ._noise import (
    monte_carlo_sign_moments as monte_carlo_sign_moments,
)
from ._noise import (
    sign_phase as sign_phase,
)
from ._optimizers import SGD as SGD
from ._optimizers import AbstractOptimizer as AbstractOptimizer
from ._optimizers import SignSGD as SignSGD
from ._problems import (
    AbstractProblem as AbstractProblem,
)
from ._problems import (
    Problem as Problem,
)
from ._problems import (
    Quadratic as Quadratic,
)
from ._run import Run as Run
from ._run import load as load
from ._run import save as save
from ._sde import (
    SGDSDE as SGDSDE,
)
from ._sde import (
    AbstractOptimizerSDE as AbstractOptimizerSDE,
)
from ._sde import (
    SignSGDSDE as SignSGDSDE,
)
from ._sde import (
    sde_for as sde_for,
)
from ._sde import (
    stratonovich_correction as stratonovich_correction,
)
from ._simulate import run_optimizer as run_optimizer
from ._simulate import simulate as simulate
from ._theory import (
    Stationary as Stationary,
)
from ._theory import (
    empirical_stationary as empirical_stationary,
)
from ._theory import (
    lyapunov as lyapunov,
)
from ._theory import (
    stationary as stationary,
)

__version__ = "0.1.0"
