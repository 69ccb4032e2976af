"""Stationary distributions: closed forms on quadratics, the Lyapunov route, and estimates
from runs."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from . import _check
from ._noise import GaussianNoise, StudentTNoise
from ._optimizers import SGD, AbstractOptimizer, Adam, RMSprop, SignSGD
from ._problems import AbstractProblem, Quadratic
from ._run import Run
from ._sde import sde_for

__all__ = [
    "Stationary",
    "stationary",
    "linearised_stationary",
    "lyapunov",
    "empirical_stationary",
]


@dataclasses.dataclass(frozen=True, eq=False)
class Stationary:
    """A stationary distribution's first two moments and expected loss.

    `expected_loss_se` is the Monte Carlo standard error for estimates from runs (None for theory).
    `method` says where the numbers come from. `state_mean`, `state_cov` describe the whole SDE
    state `(x, m, v, ...)` when the linearised route computed them.
    """

    mean: np.ndarray
    cov: np.ndarray
    expected_loss: float
    method: str
    expected_loss_se: float | None = None
    state_mean: np.ndarray | None = None
    state_cov: np.ndarray | None = None

    @property
    def std(self) -> np.ndarray:
        """Marginal standard deviations `√diag(cov)`."""
        return np.sqrt(np.diag(self.cov))


def lyapunov(drift_matrix, diffusion_cov) -> np.ndarray:
    """Stationary covariance of the linear SDE `dY = A Y dt + B dW`.

    Solves `A C + C Aᵀ + B Bᵀ = 0` (Bartels–Stewart, `scipy.linalg.solve_continuous_lyapunov`)
    for `A = drift_matrix`, `B Bᵀ = diffusion_cov`. `A` must be stable (every eigenvalue with
    negative real part), else no stationary distribution exists.
    """
    a = np.asarray(drift_matrix, dtype=float)
    q = np.asarray(diffusion_cov, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or q.shape != a.shape:
        raise ValueError(
            f"drift_matrix {a.shape} and diffusion_cov {q.shape} must be square of one size."
        )
    worst = np.linalg.eigvals(a).real.max()
    if worst >= 0:
        raise ValueError(
            f"drift_matrix is not stable (largest eigenvalue real part {worst:.3g} >= 0): "
            "the SDE has no stationary distribution."
        )
    c = scipy.linalg.solve_continuous_lyapunov(a, -q)
    return 0.5 * (c + c.T)


def _quadratic_moments(prob: Quadratic, cov: np.ndarray, method: str) -> Stationary:
    h = np.asarray(prob.hessian, dtype=float)
    return Stationary(
        mean=np.asarray(prob.x_star, dtype=float),
        cov=cov,
        expected_loss=float(0.5 * np.trace(h @ cov)),
        method=method,
    )


def _sign_linearisation(prob: Quadratic):
    """Phase-3 slope `c`, per-coordinate width `w` and `Cov(sign g)` at `∇f = 0`.

    `E[sign g] ≈ c ∇f / w` near the minimum: Gaussian `c = √(2/π)`, `w = σ` (std);
    Student-t `c = c_ν`, `w = s` (scale).
    """
    noise, d = prob.noise, prob.dim
    if isinstance(noise, GaussianNoise):
        width = np.asarray(noise.std(d), dtype=float)
        sign_cov = np.asarray(noise.sign_cov(jnp.zeros(d)), dtype=float)
    elif isinstance(noise, StudentTNoise):
        width = np.broadcast_to(np.asarray(noise.scale, dtype=float), (d,))
        sign_cov = np.eye(d)
    else:
        raise NotImplementedError(
            f"No closed-form SignSGD stationary law for {type(noise).__name__}: "
            "GaussianNoise and StudentTNoise only."
        )
    return noise.phase3_slope(), width, sign_cov


def stationary(opt: AbstractOptimizer, prob: AbstractProblem) -> Stationary:
    """Stationary law of the optimizer's SDE on a quadratic `f = ½ (x-x*)ᵀ H (x-x*)`.

    Mean `x*` for all (MATH.md §5). Covariance:
    - SGD: solves `H C + C H = η Σ`; diagonal `H`, `Σ`: `C = (η/2) H⁻¹ Σ`, `E f = (η/4) tr Σ`.
    - SignSGD (phase-3 linearisation, small `η`): `dX ≈ -c W⁻¹ H (X-x*) dt + √η Σ̄₀^{1/2} dW`
      with `W = diag(width)`; diagonal case `C = (η/2)(1/c) H⁻¹ Σ^{1/2}`,
      `E f = (η/4)(1/c) Σᵢ sᵢ`, `c = √(2/π)` (Gaussian) or `c_ν` (Student-t).
      Linear in the noise scale, where SGD's floor is quadratic.
    Diagonal problems use the closed form (`method="closed form"`); matrix `H` or correlated
    noise solve the Lyapunov equation of the linear(ised) SDE (`method="lyapunov"`).
    Raises NotImplementedError for other optimizers and problems.
    """
    if not isinstance(prob, Quadratic):
        raise NotImplementedError(
            f"stationary() has closed forms on Quadratic problems only, not {type(prob).__name__}."
        )
    lr, d = opt.lr, prob.dim
    diagonal_h = prob.h.ndim == 1
    h = np.asarray(prob.h, dtype=float)
    if isinstance(opt, SGD):
        if not prob.noise.has_finite_variance:
            raise ValueError("SGD has no stationary law under infinite-variance noise (df <= 2).")
        if not isinstance(prob.noise, (GaussianNoise, StudentTNoise)):
            raise NotImplementedError(f"No closed form for noise {type(prob.noise).__name__}.")
        if diagonal_h and getattr(prob.noise, "is_diagonal", True):
            var = np.asarray(prob.noise.std(d), dtype=float) ** 2
            return _quadratic_moments(prob, np.diag(lr * var / (2 * h)), "closed form")
        sigma = np.asarray(prob.noise.cov_sqrt(d).as_matrix(), dtype=float)
        hess = np.asarray(prob.hessian, dtype=float)
        return _quadratic_moments(prob, lyapunov(-hess, lr * sigma @ sigma.T), "lyapunov")
    if isinstance(opt, SignSGD):
        slope, width, sign_cov = _sign_linearisation(prob)
        if diagonal_h and np.allclose(sign_cov, np.diag(np.diag(sign_cov))):
            return _quadratic_moments(prob, np.diag(lr * width / (2 * slope * h)), "closed form")
        hess = np.asarray(prob.hessian, dtype=float)
        drift = -slope * hess / width[:, None]
        return _quadratic_moments(prob, lyapunov(drift, lr * sign_cov), "lyapunov")
    if isinstance(opt, (RMSprop, Adam)):
        return _adaptive_closed_form(opt, prob)
    raise NotImplementedError(f"stationary() has no closed form for {type(opt).__name__} yet.")


def _adaptive_closed_form(opt, prob: Quadratic) -> Stationary:
    """RMSprop(W)/Adam(W), diagonal `H` and Gaussian diagonal noise, `x* = 0` when `θ > 0`.

    Near the minimum `V → s²`, `P → s + ε`, so `dX = -(H/P + θ) X dt + √η (s/P) dW`:
    `Cᵢᵢ = (η/2) sᵢ² / ((sᵢ + ε)(hᵢ + θ (sᵢ + ε)))`, i.e. `(η/2) (H Σ^{-1/2} + θ)⁻¹` as `ε → 0`
    (RMSpropW; `E f = (η/4) Σ hᵢsᵢ/(hᵢ + θ sᵢ)`, bounded by `η tr H/(4θ)` as `s → ∞`).
    AdamW multiplies by `ρ₁/(ρ₁ + θ)`, `ρ₁ = (1-β₁)/η`, from the Lyapunov equation of `(x, m)`
    (the factor that the paper's quoted form omits; MATH.md §5).
    """
    noise, theta = prob.noise, opt.weight_decay
    if not (isinstance(noise, GaussianNoise) and noise.is_diagonal and prob.h.ndim == 1):
        raise NotImplementedError(
            "Closed forms for RMSprop/Adam need diagonal h and diagonal GaussianNoise: "
            "use sl.linearised_stationary for the general case."
        )
    if theta > 0 and prob.minimum is not None and np.any(np.asarray(prob.minimum) != 0):
        raise NotImplementedError(
            "With weight decay the closed form assumes the minimum at 0: "
            "use sl.linearised_stationary."
        )
    h = np.asarray(prob.h, dtype=float)
    s = np.asarray(noise.std(prob.dim), dtype=float)
    p = s + opt.eps
    var = 0.5 * opt.lr * s**2 / (p * (h + theta * p))
    if isinstance(opt, Adam):
        rho1 = (1.0 - opt.beta1) / opt.lr
        var = var * rho1 / (rho1 + theta)
    return _quadratic_moments(prob, np.diag(var), "closed form")


def linearised_stationary(
    opt: AbstractOptimizer,
    prob: AbstractProblem,
    at=None,
    *,
    form: str = "default",
    newton_steps: int = 30,
) -> Stationary:
    """Stationary law of any optimizer's SDE, linearised at its rest point.

    1. The rest point `y*` solves `b(∞, y*) = 0` (Newton, from `rest_state(at)`; `at` defaults
       to the quadratic's minimiser). Weight decay moves it off the loss minimum.
    2. `A = ∂b/∂y (y*)` (forward-mode Jacobian of the drift at `t = ∞`, where Adam's bias
       corrections are 1), `Q = G Gᵀ` with `G` the diffusion at `y*`.
    3. The full state's covariance solves `A C + C Aᵀ + Q = 0` (`lyapunov`).

    The parameters' block gives `mean`, `cov`; `expected_loss ≈ f(mean) + ½ tr(∇²f C)` (exact
    for quadratics). `state_mean`, `state_cov` keep the whole state, e.g. `(x, m, v)` for Adam.
    Valid for small `η` (the linearisation keeps the SDE's `O(η)` terms).
    """
    sde = sde_for(opt, prob, form=form)
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

    def drift(y):
        return sde.drift(t_inf, y, None)

    jacobian = jax.jit(jax.jacfwd(drift))
    y = sde.rest_state(x)
    for _ in range(newton_steps):
        step = jnp.linalg.solve(jacobian(y), drift(y))
        y = y - step
        if float(jnp.max(jnp.abs(step))) <= 1e-7 * (1.0 + float(jnp.max(jnp.abs(y)))):
            break
    a = np.asarray(jacobian(y), dtype=float)
    g = np.asarray(sde.diffusion(t_inf, y, None).as_matrix(), dtype=float)
    state_cov = lyapunov(a, g @ g.T)
    d = x.shape[0]
    mean = np.asarray(sde.parameters(y), dtype=float)
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
    )


def _stationary_from_stats(run: Run, keep: np.ndarray) -> Stationary:
    """Pooled moments from per-save statistics: no cross-covariances, no per-path SE."""
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
    )


def empirical_stationary(run: Run, burn_in: float = 0.5, window: float | None = None) -> Stationary:
    """Estimate the stationary law from a run, pooling paths and saves after burn-in.

    Saves with `t ≥ burn_in · T` (and `t ≤ (burn_in + window) · T` if `window` is given; both
    fractions of the horizon `T`) are pooled over all finite paths. `expected_loss_se` treats
    each path's time-average as one independent sample, which stays honest when successive
    saves are correlated. A run that kept statistics only (`keep="stats"`) gives the pooled
    mean, a diagonal covariance and no standard error.
    """
    _check.in_interval("burn_in", burn_in, 0.0, 1.0)
    horizon = float(run.ts[-1])
    end = horizon
    if window is not None:
        _check.in_interval("window", window, 1e-12, 1.0 - burn_in, closed_high=True)
        end = (burn_in + window) * horizon
    keep = (run.ts >= burn_in * horizon - 1e-12) & (run.ts <= end + 1e-12)
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
