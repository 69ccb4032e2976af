"""Public names of sdelens, loaded on first use (`sdelens/__init__.py`)."""

from . import cli as cli, flatness as flatness, nn as nn, plot as plot, studies as studies
from ._compare import Comparison as Comparison, compare as compare
from ._ensemble import Histogram as Histogram, RunStats as RunStats
from ._evaluate import evaluate as evaluate
from ._linalg import lyapunov as lyapunov
from ._noise import (
    AbstractAdditiveNoise as AbstractAdditiveNoise,
    AbstractNoise as AbstractNoise,
    GaussianNoise as GaussianNoise,
    MinibatchNoise as MinibatchNoise,
    SampledNoise as SampledNoise,
    StudentTNoise as StudentTNoise,
    monte_carlo_sign_moments as monte_carlo_sign_moments,
    sign_phase as sign_phase,
)
from ._optimizers import (
    OPTIMIZERS as OPTIMIZERS,
    SAM as SAM,
    SGD as SGD,
    AbstractOptimizer as AbstractOptimizer,
    Adam as Adam,
    AdamState as AdamState,
    EntropySGD as EntropySGD,
    Lion as Lion,
    LionState as LionState,
    MomentumState as MomentumState,
    Optax as Optax,
    ParamState as ParamState,
    RelaxationState as RelaxationState,
    RMSprop as RMSprop,
    RMSpropState as RMSpropState,
    SignSGD as SignSGD,
    optimizer_by_name as optimizer_by_name,
)
from ._problems import (
    NETWORK_PROBLEMS as NETWORK_PROBLEMS,
    AbstractProblem as AbstractProblem,
    NetworkProblem as NetworkProblem,
    Problem as Problem,
    Quadratic as Quadratic,
    network_problem as network_problem,
    problem_by_name as problem_by_name,
)
from ._progress import progress as progress
from ._run import (
    Results as Results,
    Run as Run,
    load as load,
    load_results as load_results,
    save as save,
)
from ._scaling import RULES as RULES, scale as scale, scale_noise as scale_noise, with_lr as with_lr
from ._sde import (
    SAMSDE as SAMSDE,
    SGDSDE as SGDSDE,
    USAMSDE as USAMSDE,
    AbstractOptimizerSDE as AbstractOptimizerSDE,
    AdamMalladiSDE as AdamMalladiSDE,
    AdamSDE as AdamSDE,
    EntropySGDSDE as EntropySGDSDE,
    FiniteChainEntropySGDSDE as FiniteChainEntropySGDSDE,
    LionSDE as LionSDE,
    MomentsSDE as MomentsSDE,
    RMSpropMalladiSDE as RMSpropMalladiSDE,
    RMSpropSDE as RMSpropSDE,
    SecondOrderSGDSDE as SecondOrderSGDSDE,
    SignSGDSDE as SignSGDSDE,
    sde_for as sde_for,
    sde_forms as sde_forms,
    stratonovich_correction as stratonovich_correction,
)
from ._simulate import run_optimizer as run_optimizer, simulate as simulate
from ._stats import loglog_slope as loglog_slope
from ._theory import (
    EntropyRate as EntropyRate,
    Stationary as Stationary,
    empirical_stationary as empirical_stationary,
    entropy_sgd_rate as entropy_sgd_rate,
    linearised_stationary as linearised_stationary,
    stationary as stationary,
)
from .studies import (
    ComputeFair as ComputeFair,
    HessianSpectrum as HessianSpectrum,
    OptimizerVsSDE as OptimizerVsSDE,
    Preference as Preference,
    ScalingCheck as ScalingCheck,
    Sensitivity as Sensitivity,
    Sweep as Sweep,
    WeakOrder as WeakOrder,
    compute_fair as compute_fair,
    hessian_spectrum as hessian_spectrum,
    minimum_preference as minimum_preference,
    noise_sweep as noise_sweep,
    optimizer_vs_sde as optimizer_vs_sde,
    sensitivity as sensitivity,
    verify_scaling as verify_scaling,
    weak_order as weak_order,
    weight_decay_sweep as weight_decay_sweep,
)

__version__: str
