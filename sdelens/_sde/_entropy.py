"""The continuous-time model of Entropy-SGD (Chaudhari et al. 2017; Deep Relaxation, Chaudhari,
Oberman, Osher, Soatto & Carlier 2018)."""

from __future__ import annotations

import math
from typing import ClassVar, final

import jax
import jax.numpy as jnp
import lineax as lx

from .._optimizers import EntropySGD, ParamState, RelaxationState
from .._problems import AbstractProblem, Quadratic
from ._base import AbstractOptimizerSDE, AbstractOwnStateSDE, embed_noise

__all__ = ["EntropySGDSDE", "FiniteChainEntropySGDSDE", "VALID_RELAXATION", "VALID_EPS"]

# The model's domain (`EntropySGDSDE.validity`): inner chain relaxed, time scales separated.
VALID_RELAXATION, VALID_EPS = 1.0 / 3.0, 0.1


def _gammas(opt: EntropySGD, t):
    """`(γ, γ_out)` at clock time `t`: the coupling scoped at outer step `t/η`, and the one of
    the outer step (`γ`, or 1 with `gamma_in_outer_step=False`)."""
    gamma = opt.gamma_at(t / opt.lr)
    return gamma, gamma if opt.gamma_in_outer_step else 1.0


def _check_modelled(opt: EntropySGD, problem: AbstractProblem, form: str) -> None:
    problem.noise.require_finite_variance("Entropy-SGD")
    if opt.momentum != 0.0 or opt.inner != "sgld":
        raise ValueError(
            f"momentum={opt.momentum}, inner={opt.inner!r}: the continuous-time models of "
            "Entropy-SGD cover momentum=0 with the SGLD inner chain only."
        )
    if opt.control_variate:
        raise ValueError(
            f"control_variate=True is not modelled by form={form!r}: its inner steps have "
            "independent gradient noise, the control variate's anchor noise is common to all "
            "of them (docs/math.md §7.9); use form='moments'."
        )
    if opt.warm_start and form == "finite_chain":
        raise ValueError(
            "warm_start=True is not modelled by form='finite_chain', whose chain restarts at x "
            "every outer step: the continuing chain is the fast variable of form='default' "
            "(docs/math.md §7.9)."
        )


@final
class EntropySGDSDE(AbstractOptimizerSDE):
    """Entropy-SGD as a two-timescale SDE on the optimizer's clock `t = k η` (docs/math.md §7):

        dX = -γ_out (X - Y) dt
        dY = -(1/ε) (∇f(Y) + γ (Y - X)) dt + √(2T/ε) dW₁ + √(η'/ε) Σ(Y)^{1/2} dW₂

    with `ε = η / (L η')`: one outer step (time `η`) holds `L` inner steps of size `η'`, so the
    fast variable `Y` (the inner chain `x'`) runs `1/ε` times faster than `X`. `γ_out = γ` (the
    paper) or 1 (`gamma_in_outer_step=False`), `γ` follows the scoping `γ (1 + scoping)^{t/η}`.
    The `W₂` term is the inner chain's stochastic-gradient noise (`Σ` the problem's gradient-noise
    covariance), `W₁` its Langevin noise. As `ε → 0`, `Y` equilibrates in the Gibbs measure
    `∝ exp(-(f(y) + γ/2 |y - X|²)/T)` and `dX = -γ_out (X - ⟨Y⟩) dt = (γ_out/γ) T ∇F(X) dt`,
    gradient ascent on the local entropy `F`.

    Differences from the discrete optimizer, by construction of the model: `Y` is not restarted
    at `X` every outer step (as with `warm_start=True`, which the model therefore describes
    better than the restart; docs/math.md §7.9), and `X` sees `Y` itself rather than the
    running average `μ`. Momentum, the SGHMC inner sampler and the control variate are not
    modelled (refused). The state is
    `RelaxationState(x, y)`, both starting at `x₀`. Integrate with `substeps ≥ inner_steps` so
    that the fast variable's steps are no longer than the inner chain's.
    """

    optimizer: EntropySGD
    problem: AbstractProblem
    optimizer_type: ClassVar[type] = EntropySGD
    form: ClassVar[str] = "default"

    @property
    def coupling_sign(self) -> int | None:
        return None  # the optimizer draws L fresh gradients per step

    def __check_init__(self):
        _check_modelled(self.optimizer, self.problem, self.form)

    def validity(self) -> dict:
        """How well the optimizer meets the model's two assumptions (docs/math.md §7.4,
        "Validity"): `eps = η/(L η')` small (the fast variable is fast), and the inner chain
        relaxed within the `L` steps it runs from `x' = x` each outer step, i.e.
        `relaxation_over_inner_steps = τ/L` small, `τ = 1/(η'(h_min + γ))` inner steps (the
        slowest mode of the chain's drift `∇f + γ(x' - x)` on a quadratic; `h_min` is the
        smallest curvature of a `Quadratic`, else 0, which bounds `τ` from above for convex
        losses; `γ` at step 0, before any scoping). `valid` when `τ/L <= 1/3` (the chain's
        mean then has relaxed to within `e⁻³ = 5%`) and `eps <= 0.1`. With `warm_start=True`
        the chain is not restarted, so it need not relax within one outer step: only `eps`
        counts (`relaxation_applies` False)."""
        opt, prob = self.optimizer, self.problem
        h_min = float(prob.curvatures[0]) if isinstance(prob, Quadratic) else 0.0
        tau = 1.0 / (float(opt.inner_lr) * (h_min + float(opt.gamma)))
        ratio = tau / opt.inner_steps
        relaxed = opt.warm_start or ratio <= VALID_RELAXATION
        return {
            "eps": float(self.eps),
            "relaxation_steps": tau,
            "inner_steps": int(opt.inner_steps),
            "relaxation_over_inner_steps": ratio,
            "relaxation_applies": not opt.warm_start,
            "curvature_bound": h_min,
            "valid": bool(relaxed and self.eps <= VALID_EPS),
        }

    @property
    def eps(self) -> float:
        """`ε = η / (L η')`, the time-scale separation."""
        opt = self.optimizer
        return opt.lr / (opt.inner_steps * opt.inner_lr)

    def initial_state(self, x0):
        return RelaxationState(x0, x0)

    def rest_state(self, x):
        return RelaxationState(x, x)

    def drift(self, t, y, args):
        gamma, gamma_out = _gammas(self.optimizer, t)
        dx = -gamma_out * (y.x - y.y)
        dfast = -(self.problem.grad(y.y) + gamma * (y.y - y.x)) / self.eps
        return RelaxationState(dx, dfast)

    def diffusion(self, t, y, args):
        d = y.x.shape[0]
        root = self.problem.noise.cov_sqrt_at(self.problem, y.y)
        noise_shape = root.in_structure().shape
        thermal = jnp.sqrt(2.0 * self.optimizer.temperature / self.eps)
        gradient_noise = jnp.sqrt(self.optimizer.inner_lr / self.eps)

        def apply(dw):
            kick = thermal * dw[:d] + gradient_noise * root.mv(dw[d:].reshape(noise_shape))
            return RelaxationState(jnp.zeros_like(kick), kick)

        return lx.FunctionLinearOperator(
            apply, jax.ShapeDtypeStruct((d + math.prod(noise_shape),), y.x.dtype)
        )


@final
class FiniteChainEntropySGDSDE(AbstractOwnStateSDE):
    """Entropy-SGD's finite-chain SDE (docs/math.md §7.4, "Finite chain"),
    `form="finite_chain"`: the outer step with the inner chain solved in closed form, restart
    at `x` and `L` steps included.

    Linearise the loss at `x` for the inner chain (`∇f(x') ≈ g + H (x' - x)`, `g = ∇f(x)`,
    `H = ∇²f(x)`): from `x' = x` the chain `x'ᵢ₊₁ = x'ᵢ - η'(∇f(x'ᵢ) + γ(x'ᵢ - x)) + ξᵢ`,
    `ξᵢ ~ N(0, S)`, `S = 2η'T I + η'² Σ(x)`, is linear-Gaussian, and so is the average
    `μ = Σᵢ wᵢ x'ᵢ + (1-α)^L x`, `wᵢ = α(1-α)^{L-i}`. With `A = I - η'(H + γ)`:

        E[μ - x] = -K g,      K = η' Σᵢ₌₁ᴸ wᵢ Σⱼ₌₀^{i-1} Aʲ
        Cov[μ]   = Σⱼ₌₀^{L-1} Bⱼ S Bⱼ,   Bⱼ = Σᵢ₌ⱼ₊₁ᴸ wᵢ A^{i-1-j}

    (the finite-time mean and covariance of the discrete Ornstein–Uhlenbeck chain). The outer
    step `x ← x + η γ_out (μ - x)` has mean `-η γ_out K g` and covariance `η² γ_out² Cov[μ]`,
    so on the clock `t = k η`:

        dX = -γ_out V diag(φ(c)) K Vᵀ ∇f(X) dt + √η γ_out Cov[μ](X)^{1/2} dW,
        φ(c) = -log(1 - c)/c,   c = η γ_out K h   (per eigenvalue h of H, eigenvectors V)

    The stretch `φ` makes the drift's flow over one step `η` multiply each mode by the outer
    step's `1 - c` (the modified equation to all orders on a quadratic; `φ → 1` as `η → 0`,
    where this is the first-order SDE): the mean is then right at every time, not `O(η)`
    off. `c ≥ 1` (the outer step overshoots a mode) has no such flow: the drift is NaN and
    the run is reported as diverged. The diffusion is the step's covariance per unit time, so
    the stationary law keeps the usual `O(η)` error. On a quadratic the linearisation is
    exact. As `L → ∞`, `T → 0` and `η → 0`,
    `K → (H + γ)⁻¹`: the rate `γ_out h/(h + γ)` of the equilibrium model
    (`EntropySGDSDE`), whose `L`-step shortfall this form keeps. `K` and `Cov[μ]` are matrix
    functions of `H`, evaluated in its eigenbasis: a dense Hessian (`Quadratic.hessian`, else
    `jax.hessian` of the loss) and two `d × d` eigendecompositions per evaluation, so this
    form is for small `d` (up to a few hundred parameters). `Σ` is the noise model's
    covariance at `x` (`cov_sqrt_at`, as a dense matrix). Same scope as the default form:
    momentum 0, the SGLD inner chain, no control variate; and the restart is the model, so
    `warm_start=True` is refused. `γ` follows the scoping `γ (1 + scoping)^{t/η}`.
    """

    optimizer: EntropySGD
    problem: AbstractProblem
    optimizer_type: ClassVar[type] = EntropySGD
    form: ClassVar[str] = "finite_chain"

    @property
    def coupling_sign(self) -> int | None:
        return None  # the optimizer draws L fresh gradients per step

    def __check_init__(self):
        _check_modelled(self.optimizer, self.problem, self.form)

    def rest_state(self, x):
        return ParamState(x)

    def _hessian(self, x):
        if isinstance(self.problem, Quadratic):
            return self.problem.hessian.astype(x.dtype)
        return jax.hessian(self.problem.loss)(x)

    def _chain(self, t, x):
        """`(h, V, K, B)`: the Hessian's eigenvalues and eigenvectors and, per eigenvalue, the
        mean coefficient `K` `(d,)` and the noise coefficients `Bⱼ` `(L, d)` (docstring)."""
        opt = self.optimizer
        steps, alpha, inner_lr = opt.inner_steps, opt.alpha, opt.inner_lr
        curvature, basis = jnp.linalg.eigh(self._hessian(x))
        a = 1.0 - inner_lr * (curvature + _gammas(opt, t)[0])
        powers = a[None, :] ** jnp.arange(steps, dtype=x.dtype)[:, None]  # Aʲ, j = 0..L-1
        i = jnp.arange(1, steps + 1, dtype=x.dtype)
        weights = alpha * (1.0 - alpha) ** (steps - i)  # wᵢ, i = 1..L
        # Σⱼ₌₀^{i-1} Aʲ = cumsum of the powers; a sum, not (I - Aⁱ)/(η'(h + γ)), so that
        # h + γ = 0 (a non-convex f) needs no special case.
        partial = jnp.cumsum(powers, axis=0)
        k = inner_lr * jnp.sum(weights[:, None] * partial, axis=0)
        # Bⱼ = Σᵢ₌ⱼ₊₁ᴸ wᵢ A^{i-1-j}: row j pairs w_{j+1..L} with A^{0..L-1-j}.
        lag = jnp.arange(steps)[None, :] - jnp.arange(steps)[:, None]  # (j, i-1) -> i-1-j
        pair = jnp.where(lag >= 0, weights[None, :], 0.0)[..., None]
        b = jnp.sum(pair * powers[jnp.clip(lag, 0, steps - 1)], axis=1)
        return curvature, basis, k, b

    def drift(self, t, y, args):
        curvature, basis, k, _ = self._chain(t, y.x)
        g = basis.T @ self.problem.grad(y.x)
        # The outer step multiplies mode p by m = 1 - c, c = η γ_out K h; the flow that does
        # the same over one step has rate -log(m)/η = (γ_out K h) · (-log(1 - c)/c), the
        # modified equation to all orders on a quadratic. m <= 0 (overshoot) has no flow: NaN.
        gamma_out = _gammas(self.optimizer, t)[1]
        c = self.lr * gamma_out * k * curvature
        small = jnp.abs(c) < 1e-4
        safe = jnp.where(small, 0.5, c)
        stretch = jnp.where(small, 1.0 + c / 2.0 + c**2 / 3.0, -jnp.log1p(-safe) / safe)
        stretch = jnp.where(c < 1.0, stretch, jnp.nan)
        return ParamState(-gamma_out * (basis @ (stretch * k * g)))

    def diffusion(self, t, y, args):
        opt = self.optimizer
        _, basis, _, b = self._chain(t, y.x)
        root = basis.T @ self.problem.noise.cov_sqrt_at(self.problem, y.x).as_matrix()
        # Cov[μ] = V M Vᵀ, M = η'² (Vᵀ Σ V) ∘ (BᵀB) + 2η'T diag(Σⱼ Bⱼ²) in the eigenbasis.
        m = opt.inner_lr**2 * (root @ root.T) * (b.T @ b)
        m = m + jnp.diag(2.0 * opt.inner_lr * opt.temperature * jnp.sum(b**2, axis=0))
        s, u = jnp.linalg.eigh(m)
        root = lx.MatrixLinearOperator((basis @ u) * jnp.sqrt(jnp.maximum(s, 0.0)))
        return embed_noise(root, y, x=jnp.sqrt(self.lr) * _gammas(opt, t)[1])
