"""sdelens: optimizers through the lens of their stochastic differential equations."""

from . import flatness as flatness, nn as nn, plot as plot
from ._compare import Comparison as Comparison, compare as compare
from ._ensemble import Histogram as Histogram, RunStats as RunStats
from ._entropy_study import (
    ComputeFair as ComputeFair,
    HessianSpectrum as HessianSpectrum,
    Preference as Preference,
    Sensitivity as Sensitivity,
    compute_fair as compute_fair,
    hessian_spectrum as hessian_spectrum,
    minimum_preference as minimum_preference,
    sensitivity as sensitivity,
)
from ._experiments import (
    OptimizerVsSDE as OptimizerVsSDE,
    Sweep as Sweep,
    loglog_slope as loglog_slope,
    noise_sweep as noise_sweep,
    optimizer_vs_sde as optimizer_vs_sde,
    weight_decay_sweep as weight_decay_sweep,
)
from ._network import (
    NETWORK_PROBLEMS as NETWORK_PROBLEMS,
    MinibatchNoise as MinibatchNoise,
    NetworkProblem as NetworkProblem,
    evaluate as evaluate,
    network_problem as network_problem,
)
from ._noise import (
    AbstractNoise as AbstractNoise,
    GaussianNoise as GaussianNoise,
    SampledNoise as SampledNoise,
    StudentTNoise as StudentTNoise,
    monte_carlo_sign_moments as monte_carlo_sign_moments,
    sign_phase as sign_phase,
)
from ._optimizers import (
    SGD as SGD,
    AbstractOptimizer as AbstractOptimizer,
    Adam as Adam,
    EntropySGD as EntropySGD,
    RMSprop as RMSprop,
    SignSGD as SignSGD,
)
from ._problems import (
    AbstractProblem as AbstractProblem,
    Problem as Problem,
    Quadratic as Quadratic,
)
from ._run import Run as Run, load as load, save as save
from ._scaling import (
    RULES as RULES,
    ScalingCheck as ScalingCheck,
    WeakOrder as WeakOrder,
    scale as scale,
    scale_noise as scale_noise,
    verify_scaling as verify_scaling,
    weak_order as weak_order,
    with_lr as with_lr,
)
from ._sde import (
    SGDSDE as SGDSDE,
    AbstractOptimizerSDE as AbstractOptimizerSDE,
    AdamMalladiSDE as AdamMalladiSDE,
    AdamSDE as AdamSDE,
    EntropySGDSDE as EntropySGDSDE,
    RMSpropMalladiSDE as RMSpropMalladiSDE,
    RMSpropSDE as RMSpropSDE,
    SignSGDSDE as SignSGDSDE,
    sde_for as sde_for,
    stratonovich_correction as stratonovich_correction,
)
from ._simulate import run_optimizer as run_optimizer, simulate as simulate
from ._theory import (
    Stationary as Stationary,
    empirical_stationary as empirical_stationary,
    linearised_stationary as linearised_stationary,
    lyapunov as lyapunov,
    stationary as stationary,
)

__version__ = "0.1.0"
