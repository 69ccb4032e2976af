"""Flatness of a loss landscape: Hessian spectra and the objectives that reward flat minima.

* Hessian-vector products, Lanczos with full reorthogonalisation, the top Hessian eigenvalues
  (`_hessian`), the spectral density by stochastic Lanczos quadrature and Hutchinson's trace
  (`_spectral`; docs/math.md §8).
* The local entropy of Entropy-SGD (Chaudhari et al., ICLR 2017) by Laplace's method, by
  quadrature (`d ≤ 2`) and its gradient by Langevin dynamics (`_entropy`; docs/math.md §7).
* The Gaussian-smoothed loss and its gradient, by Monte Carlo and by quadrature (`d ≤ 2`)
  (`_smoothing`).
* Test landscapes with a narrow deep minimum and a wide shallow one (`_landscapes`).
* Gaussian variational inference and Gaussian local entropy: the objective, a fitter and the
  Hessian diagonal averaged over the fitted Gaussian (`_variational`; docs/math.md §7.8).

Every function takes the loss `f: ℝᵈ → ℝ` as a JAX callable of a flat vector `x` of shape `(d,)`.
Nothing here changes JAX's configuration: the precision is the dtype of `x`.

**The local-entropy loss.** Chaudhari et al. define the local entropy
`F(x; γ, T) = log ∫ exp(-f(x')/T - γ/(2T) |x - x'|²) dx'`. The functions here return the
local-entropy loss

`u(x) = -T log E[exp(-f(x')/T)]`, `x' ~ N(x, (T/γ) I)`,

which is `-T F` with the Gaussian kernel normalised: `u(x) = -T F(x) + (dT/2) log(2πT/γ)`. The
constant does not depend on `x` (gradients and differences are those of `-T F`) and makes `u = f`
for a constant `f`: `u` is in units of the loss and smaller is better, like `f` and the smoothed
loss. Near a minimum with Hessian eigenvalues `lᵢ`, at equal width `s² = T/γ` (docs/math.md §7):
local entropy `≈ f* + (T/2) Σ log(1 + lᵢ/γ)` (log-det penalty), smoothing
`≈ f* + (T/(2γ)) Σ lᵢ` (trace penalty). As `T → 0` local entropy becomes the Moreau envelope
`min f(x') + γ/2 |x - x'|²` (no preference for width); as `T` grows it approaches smoothing.
"""

from ._entropy import (
    LangevinEstimate as LangevinEstimate,
    local_entropy_integral as local_entropy_integral,
    local_entropy_langevin as local_entropy_langevin,
    local_entropy_laplace as local_entropy_laplace,
    local_entropy_loss as local_entropy_loss,
)
from ._hessian import (
    dense_hessian as dense_hessian,
    hvp as hvp,
    lanczos as lanczos,
    top_eigenvalues as top_eigenvalues,
)
from ._landscapes import (
    landscape as landscape,
    landscape_1d as landscape_1d,
    landscape_2d as landscape_2d,
    two_minima as two_minima,
)
from ._smoothing import (
    smoothed_grad as smoothed_grad,
    smoothed_loss as smoothed_loss,
    smoothed_loss_integral as smoothed_loss_integral,
)
from ._spectral import (
    SpectralDensity as SpectralDensity,
    hutchinson_trace as hutchinson_trace,
    spectral_density as spectral_density,
)
from ._variational import (
    VariationalFit as VariationalFit,
    expected_hessian_diagonal as expected_hessian_diagonal,
    fit_variational as fit_variational,
    variational_loss as variational_loss,
)
