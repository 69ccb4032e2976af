"""The continuous-time model of Entropy-SGD (Chaudhari et al. 2017; Deep Relaxation, Chaudhari,
Oberman, Osher, Soatto & Carlier 2018)."""

from __future__ import annotations

import math
from typing import ClassVar, final

import jax
import jax.numpy as jnp
import lineax as lx

from .._optimizers import EntropySGD, RelaxationState
from .._problems import AbstractProblem, Quadratic
from ._base import AbstractOptimizerSDE

__all__ = ["EntropySGDSDE", "VALID_RELAXATION", "VALID_EPS"]

# The model's domain (`EntropySGDSDE.validity`): inner chain relaxed, time scales separated.
VALID_RELAXATION, VALID_EPS = 1.0 / 3.0, 0.1


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
    at `X` every outer step, and `X` sees `Y` itself rather than the running average `μ`.
    Momentum and the SGHMC inner sampler are not modelled (refused). The state is
    `RelaxationState(x, y)`, both starting at `x₀`. Integrate with `substeps ≥ inner_steps` so
    that the fast variable's steps are no longer than the inner chain's.
    """

    optimizer: EntropySGD
    problem: AbstractProblem
    optimizer_type: ClassVar[type] = EntropySGD
    form: ClassVar[str] = "default"

    def __check_init__(self):
        self.problem.noise.require_finite_variance("Entropy-SGD")
        opt = self.optimizer
        if opt.momentum != 0.0 or opt.inner != "sgld":
            raise ValueError(
                f"momentum={opt.momentum}, inner={opt.inner!r}: the continuous-time model of "
                "Entropy-SGD covers momentum=0 with the SGLD inner chain only."
            )

    def validity(self) -> dict:
        """How well the optimizer meets the model's two assumptions (docs/math.md §7.4,
        "Validity"): `eps = η/(L η')` small (the fast variable is fast), and the inner chain
        relaxed within the `L` steps it runs from `x' = x` each outer step, i.e.
        `relaxation_over_inner_steps = τ/L` small, `τ = 1/(η'(h_min + γ))` inner steps (the
        slowest mode of the chain's drift `∇f + γ(x' - x)` on a quadratic; `h_min` is the
        smallest curvature of a `Quadratic`, else 0, which bounds `τ` from above for convex
        losses; `γ` at step 0, before any scoping). `valid` when `τ/L <= 1/3` (the chain's
        mean then has relaxed to within `e⁻³ = 5%`) and `eps <= 0.1`."""
        opt, prob = self.optimizer, self.problem
        h_min = float(prob.curvatures[0]) if isinstance(prob, Quadratic) else 0.0
        tau = 1.0 / (float(opt.inner_lr) * (h_min + float(opt.gamma)))
        ratio = tau / opt.inner_steps
        return {
            "eps": float(self.eps),
            "relaxation_steps": tau,
            "inner_steps": int(opt.inner_steps),
            "relaxation_over_inner_steps": ratio,
            "curvature_bound": h_min,
            "valid": bool(ratio <= VALID_RELAXATION and self.eps <= VALID_EPS),
        }

    @property
    def eps(self) -> float:
        """`ε = η / (L η')`, the time-scale separation."""
        opt = self.optimizer
        return opt.lr / (opt.inner_steps * opt.inner_lr)

    def _gammas(self, t):
        opt = self.optimizer
        gamma = opt.gamma_at(t / opt.lr)
        return gamma, gamma if opt.gamma_in_outer_step else 1.0

    def initial_state(self, x0):
        return RelaxationState(x0, x0)

    def rest_state(self, x):
        return RelaxationState(x, x)

    def drift(self, t, y, args):
        gamma, gamma_out = self._gammas(t)
        dx = -gamma_out * (y.x - y.y)
        dfast = -(self.problem.grad(y.y) + gamma * (y.y - y.x)) / self.eps
        return RelaxationState(dx, dfast)

    def diffusion(self, t, y, args):
        d = y.x.shape[0]
        root = self.problem.noise.cov_sqrt_at(self.problem, y.y)
        noise_shape = root.in_structure().shape
        thermal = math.sqrt(2.0 * self.optimizer.temperature / self.eps)
        gradient_noise = math.sqrt(self.optimizer.inner_lr / self.eps)

        def apply(dw):
            kick = thermal * dw[:d] + gradient_noise * root.mv(dw[d:].reshape(noise_shape))
            return RelaxationState(jnp.zeros_like(kick), kick)

        return lx.FunctionLinearOperator(
            apply, jax.ShapeDtypeStruct((d + math.prod(noise_shape),), y.x.dtype)
        )
