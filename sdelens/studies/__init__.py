"""Studies: the standard experiments, each a function returning a result with `metrics()` and a
matching figure in `sdelens.plot`.

- `optimizer_vs_sde`: the optimizer and its SDE on one problem (`OptimizerVsSDE`).
- `noise_sweep`, `weight_decay_sweep`: stationary loss as one setting varies (`Sweep`).
- `verify_scaling`: does a batch-size scaling rule keep training the same (`ScalingCheck`).
- `weak_order`: the SDE's weak error as the learning rate shrinks (`WeakOrder`).
- `compute_fair`, `sensitivity`, `hessian_spectrum`, `minimum_preference`, `entropy_study`:
  Entropy-SGD's questions (equal compute, hyperparameters, flatness, local entropy vs
  smoothing); `inner_loops`: its inner loop made cheaper (warm start, control variate, SGHMC).
- `variational_study`, `variational_preference`, `variational_network`: Gaussian variational
  inference beside local entropy and smoothing (which minimum each prefers; learned widths
  against the curvature).
- `demo`: what `sdelens demo` runs.
"""

from ._compute_fair import ComputeFair as ComputeFair, compute_fair as compute_fair
from ._demo import DEMO_PROBLEM as DEMO_PROBLEM, Demo as Demo, demo as demo
from ._entropy import EntropyStudy as EntropyStudy, entropy_study as entropy_study
from ._inner_loops import (
    INNER_LOOP_VARIANTS as INNER_LOOP_VARIANTS,
    InnerLoops as InnerLoops,
    inner_loop_variants as inner_loop_variants,
    inner_loops as inner_loops,
)
from ._preference import Preference as Preference, minimum_preference as minimum_preference
from ._scaling import ScalingCheck as ScalingCheck, verify_scaling as verify_scaling
from ._sensitivity import Sensitivity as Sensitivity, sensitivity as sensitivity
from ._spectrum import HessianSpectrum as HessianSpectrum, hessian_spectrum as hessian_spectrum
from ._stability import (
    EntropyStability as EntropyStability,
    entropy_sgd_lr_max as entropy_sgd_lr_max,
    entropy_sgd_stability as entropy_sgd_stability,
)
from ._sweep import (
    StationarySweeps as StationarySweeps,
    Sweep as Sweep,
    noise_sweep as noise_sweep,
    stationary_sweeps as stationary_sweeps,
    weight_decay_sweep as weight_decay_sweep,
)
from ._variational import (
    VariationalNetwork as VariationalNetwork,
    VariationalPreference as VariationalPreference,
    VariationalStudy as VariationalStudy,
    variational_network as variational_network,
    variational_preference as variational_preference,
    variational_study as variational_study,
)
from ._vs_sde import OptimizerVsSDE as OptimizerVsSDE, optimizer_vs_sde as optimizer_vs_sde
from ._weak_order import WeakOrder as WeakOrder, weak_order as weak_order
