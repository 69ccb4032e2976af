"""Stationary distributions: closed forms on quadratics, the Lyapunov route, and estimates
from runs (docs/math.md §5); Entropy-SGD's exact linear rate on quadratics (§7.4)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ._linalg import lyapunov
from ._optimizers import AbstractOptimizer, EntropySGD
from ._problems import AbstractProblem, Quadratic
from ._run import Run
from ._sde import sde_for
from ._stats import window_mask

__all__ = [
    "Stationary",
    "stationary",
    "linearised_stationary",
    "lyapunov",
    "empirical_stationary",
    "EntropyRate",
    "entropy_sgd_rate",
]


@dataclasses.dataclass(frozen=True, eq=False)
class Stationary:
    """A stationary distribution's first two moments and expected loss.

    `expected_loss_se` is the Monte Carlo standard error for estimates from runs (None for theory).
    `method` says where the numbers come from. `state_mean`, `state_cov` describe the whole SDE
    state `(x, m, v, ...)` when the linearised route computed them, ravelled in the order of
    `state_names` (`"x0", "x1", ..., "m0", ...`).
    """

    mean: np.ndarray
    cov: np.ndarray
    expected_loss: float
    method: str
    expected_loss_se: float | None = None
    state_mean: np.ndarray | None = None
    state_cov: np.ndarray | None = None
    state_names: tuple[str, ...] | None = None

    @property
    def std(self) -> np.ndarray:
        """Marginal standard deviations `√diag(cov)`."""
        return np.sqrt(np.diag(self.cov))

    def metrics(self) -> dict:
        """JSON-ready numbers: the expected loss (± SE), the mean and the marginal variances."""
        return {
            "method": self.method,
            "expected_loss": self.expected_loss,
            "expected_loss_se": self.expected_loss_se,
            "mean": self.mean.tolist(),
            "variance": np.diag(self.cov).tolist(),
        }


def _quadratic_moments(prob: Quadratic, cov: np.ndarray, method: str) -> Stationary:
    h = np.asarray(prob.hessian, dtype=float)
    return Stationary(
        mean=np.asarray(prob.x_star, dtype=float),
        cov=cov,
        expected_loss=float(0.5 * np.trace(h @ cov)),
        method=method,
    )


def stationary(opt: AbstractOptimizer, prob: AbstractProblem) -> Stationary:
    """Stationary law of the optimizer's SDE on a quadratic `f = ½ (x-x*)ᵀ H (x-x*)`, in closed
    form where one exists (docs/math.md §5; each optimizer's `stationary_cov` says which).

    Mean `x*`; `expected_loss = ½ tr(H C)`. SGD: `C = (η/2) H⁻¹ Σ` (diagonal case), SignSGD
    (phase-3 linearisation): `(η/2)(1/c) H⁻¹ Σ^{1/2}`, RMSprop(W)/Adam(W): see their
    `stationary_cov`. Matrix `H` or correlated noise solve the Lyapunov equation of the
    linear(ised) SDE (`method="lyapunov"`). Raises NotImplementedError where no closed form
    exists (use `linearised_stationary`), ValueError where no stationary law exists.
    """
    if not isinstance(prob, Quadratic):
        raise NotImplementedError(
            f"stationary() has closed forms on Quadratic problems only, not {type(prob).__name__}."
        )
    cov, method = opt.stationary_cov(prob)
    return _quadratic_moments(prob, cov, method)


def _state_names(state) -> tuple[str, ...]:
    return tuple(
        f"{field}{i}"
        for field, leaf in zip(state._fields, state, strict=True)
        for i in range(leaf.size)
    )


def linearised_stationary(
    opt: AbstractOptimizer,
    prob: AbstractProblem,
    at=None,
    *,
    form: str = "default",
    nodes: int | None = None,
    newton_steps: int = 30,
) -> Stationary:
    """Stationary law of any optimizer's SDE, linearised at its rest point (docs/math.md §5).

    1. The rest point `y*` solves `b(∞, y*) = 0` (Newton, from `rest_state(at)`; `at` defaults
       to the quadratic's minimiser). Weight decay moves it off the loss minimum.
    2. `A = ∂b/∂y (y*)` (forward-mode Jacobian of the drift at `t = ∞`, where Adam's bias
       corrections are 1), `Q = G Gᵀ` with `G` the diffusion at `y*`.
    3. The full state's covariance solves `A C + C Aᵀ + Q = 0` (`lyapunov`); the typed state is
       ravelled to a vector for it.

    The parameters' block gives `mean`, `cov`; `expected_loss ≈ f(mean) + ½ tr(∇²f C)` (exact
    for quadratics). `state_mean`, `state_cov` keep the whole state, e.g. `(x, m, v)` for Adam.
    Valid for small `η` (the linearisation keeps the SDE's `O(η)` terms).
    """
    sde = sde_for(opt, prob, form=form, nodes=nodes)
    if at is None:
        if not isinstance(prob, Quadratic):
            raise ValueError(
                "at=None needs a Quadratic problem: pass at= (a point near a minimum)."
            )
        at = prob.x_star
    x = prob.check_x0(at)
    if x.ndim != 1:
        raise ValueError(f"at has shape {x.shape}: a single point (d,) is required.")
    t_inf = jnp.asarray(jnp.inf, x.dtype)
    start = sde.rest_state(x)
    flat, unravel = ravel_pytree(start)

    def drift(y):
        return ravel_pytree(sde.drift(t_inf, unravel(y), None))[0]

    jacobian = jax.jit(jax.jacfwd(drift))
    y = flat
    for _ in range(newton_steps):
        step = jnp.linalg.solve(jacobian(y), drift(y))
        y = y - step
        if float(jnp.max(jnp.abs(step))) <= 1e-7 * (1.0 + float(jnp.max(jnp.abs(y)))):
            break
    a = np.asarray(jacobian(y), dtype=float)
    g = np.asarray(sde.diffusion(t_inf, unravel(y), None).as_matrix(), dtype=float)
    state_cov = lyapunov(a, g @ g.T)
    d = x.shape[0]
    mean = np.asarray(sde.parameters(unravel(y)), dtype=float)
    cov = state_cov[:d, :d]
    hess = np.asarray(jax.hessian(prob.loss)(jnp.asarray(mean, x.dtype)), dtype=float)
    loss_at_mean = float(prob.loss(jnp.asarray(mean, x.dtype)))
    return Stationary(
        mean=mean,
        cov=cov,
        expected_loss=loss_at_mean + 0.5 * float(np.sum(hess * cov)),
        method="lyapunov (linearised SDE)",
        state_mean=np.asarray(y, dtype=float),
        state_cov=state_cov,
        state_names=_state_names(start),
    )


def _stationary_from_stats(run: Run, keep: np.ndarray) -> Stationary:
    """Pooled moments from per-save statistics: no cross-covariances; the standard error from
    the per-path block means the statistics kept (`RunStats.window_loss_se`)."""
    stats = run.statistics()
    if np.any(stats.count[keep] == 0):
        raise ValueError("every path diverged (non-finite) after burn-in: nothing to estimate.")
    x_mean = stats.x_mean[keep]
    var = stats.x_var[keep].mean(axis=0) + x_mean.var(axis=0)  # law of total variance
    return Stationary(
        mean=x_mean.mean(axis=0),
        cov=np.diag(var),
        expected_loss=float(stats.loss_mean[keep].mean()),
        method=f"empirical from statistics ({run.kind}, {int(keep.sum())} saves; diagonal cov)",
        expected_loss_se=stats.window_loss_se(keep),
    )


def empirical_stationary(run: Run, burn_in: float = 0.5, window: float | None = None) -> Stationary:
    """Estimate the stationary law from a run, pooling paths and saves after burn-in.

    Saves with `t ≥ burn_in · T` (and `t ≤ (burn_in + window) · T` if `window` is given; both
    fractions of the horizon `T`) are pooled over all finite paths. `expected_loss_se` treats
    each path's time-average as one independent sample, which stays honest when successive
    saves are correlated. A run that kept statistics only (`keep="stats"`) gives the pooled
    mean, a diagonal covariance and a standard error over the whole blocks of saves inside the
    window (`RunStats.window_loss_se`; NaN for results written before blocks were kept).
    """
    keep = window_mask(run.ts, burn_in, window)
    if run.x is None:
        return _stationary_from_stats(run, keep)
    x = run.x[:, keep]
    finite = np.all(np.isfinite(x), axis=(1, 2)) & np.all(np.isfinite(run.loss[:, keep]), axis=1)
    if not finite.any():
        raise ValueError("every path diverged (non-finite) after burn-in: nothing to estimate.")
    x, loss = x[finite], run.loss[finite][:, keep]
    flat = x.reshape(-1, x.shape[-1])
    path_means = loss.mean(axis=1)
    se = float(path_means.std(ddof=1) / np.sqrt(len(path_means))) if len(path_means) > 1 else np.nan
    return Stationary(
        mean=flat.mean(axis=0),
        cov=np.atleast_2d(np.cov(flat, rowvar=False)),
        expected_loss=float(loss.mean()),
        method=f"empirical ({run.kind}, {int(finite.sum())} paths x {int(keep.sum())} saves)",
        expected_loss_se=se,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class EntropyRate:
    """Entropy-SGD's mean dynamics on a quadratic, per eigenvalue `h` of `H` (ascending), from
    `entropy_sgd_rate`:

    - `inner_factor`: `a = 1 - η'(h + γ)`, the inner chain's contraction per inner step;
    - `per_step`: `r`, the exact factor of one outer step on the mean, `E x_{k+1} = r E x_k`
      along the eigenvector;
    - `rate`: `-log|r|/η`, the optimizer's rate per unit of the clock `t = kη`;
    - `model_rate`: `γ_out h/(h + γ)`, the two-timescale SDE's averaged rate (its inner chain
      at equilibrium);
    - `stable`: `|r| < 1` and `|a| < 1` (the inner chain itself contracts).
    """

    h: np.ndarray
    inner_factor: np.ndarray
    per_step: np.ndarray
    rate: np.ndarray
    model_rate: np.ndarray
    stable: np.ndarray

    def metrics(self) -> dict:
        return {f.name: getattr(self, f.name).tolist() for f in dataclasses.fields(self)}


def entropy_sgd_rate(opt: EntropySGD, prob: Quadratic) -> EntropyRate:
    """The exact linear rate of Entropy-SGD (`momentum = 0`, SGLD, no scoping) on a quadratic
    (docs/math.md §7.4, "Rate").

    The gradient noise and the Langevin noise have mean 0 and enter linearly, so the mean of
    `x` (relative to the minimum) follows the noise-free recursion exactly. Along an
    eigenvector of `H` with eigenvalue `h`, the inner chain from `x' = μ = x` runs
    `x'ᵢ₊₁ = a x'ᵢ + η'γ x`, `a = 1 - η'(h + γ)`, so `x'ᵢ = (aⁱ + (1 - aⁱ) q) x` with
    `q = γ/(h + γ)`; the average `μ ← (1-α)μ + α x'` after `L` steps is `c x`; the outer step
    `x ← x - η γ_out (x - μ)` multiplies the mean by `r = 1 - η γ_out (1 - c)`. With
    `L → ∞` (`c → q`) and `η → 0`, `-log r/η → γ_out h/(h + γ)`, the model's rate.
    """
    if not isinstance(opt, EntropySGD):
        raise ValueError(f"opt={opt.name!r} is invalid: entropy_sgd_rate needs an EntropySGD.")
    if not isinstance(prob, Quadratic):
        raise ValueError(
            f"prob={prob.name!r} is invalid: entropy_sgd_rate needs a Quadratic (a linear "
            "gradient), not a general loss."
        )
    if opt.momentum != 0.0 or opt.inner != "sgld" or opt.scoping != 0.0:
        raise ValueError(
            f"momentum={opt.momentum}, inner={opt.inner!r}, scoping={opt.scoping}: the rate is "
            "derived for momentum=0, the SGLD inner chain and no scoping."
        )
    h = prob.curvatures
    lr, gamma, inner_lr, alpha = (float(v) for v in (opt.lr, opt.gamma, opt.inner_lr, opt.alpha))
    gamma_out = gamma if opt.gamma_in_outer_step else 1.0
    a = 1.0 - inner_lr * (h + gamma)
    position, mean = np.ones_like(h), np.ones_like(h)  # x' and μ in units of x
    for _ in range(opt.inner_steps):
        position = a * position + inner_lr * gamma
        mean = (1.0 - alpha) * mean + alpha * position
    r = 1.0 - lr * gamma_out * (1.0 - mean)
    with np.errstate(divide="ignore"):
        rate = -np.log(np.abs(r)) / lr
    stable = (np.abs(r) < 1.0) & (np.abs(a) < 1.0)
    return EntropyRate(h, a, r, rate, gamma_out * h / (h + gamma), stable)
