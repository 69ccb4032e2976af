"""Lion's SDE on its state `(x, m)` (docs/math.md §11.1)."""

from typing import ClassVar, final

import jax
import jax.numpy as jnp
import lineax as lx

from .._noise import AbstractAdditiveNoise
from .._optimizers import Lion, LionState
from .._problems import AbstractProblem
from ._base import AbstractOwnStateSDE, StateOperator

__all__ = ["LionSDE"]


@final
class LionSDE(AbstractOwnStateSDE):
    """Lion's SDE, by matching one step's mean and covariance (docs/math.md §10.1, §11.1).

    With `a = β₁ M + (1-β₁) ∇f`, `u = a/(1-β₁)`, the step's sign is `sign(c) = sign(u + Z)`;
    per coordinate, `μ = E sign(u + Z)`, `κ = E[sign(u + Z) Z]`, `s² = Var Z`,
    `ρ₂ = (1-β₂)/η`:

    `dX = -(μ + θ X) dt + √η (-(κ/s) dW₀ + √(1 - μ² - κ²/s²) dW₁)`,
    `dM = ρ₂ (∇f - M) dt + √η ρ₂ s dW₀`,

    on the clock `t = kη`, driven by a Brownian motion of shape `(2, d)`. Over a time `η` this
    has the one-step moments of the optimizer: `Var Δx = η²(1 - μ²)`, `Var Δm = (1-β₂)² s²`,
    `Cov(Δx, Δm) = -η(1-β₂) κ` (the same `Z` moves both); the lower-triangular root is taken
    with `M` first, so only `s > 0` is divided by (`κ² ≤ s²(1 - μ²)` by Cauchy–Schwarz).

    The state starts at the optimizer's `(x₀, 0)`. Closed forms for `μ` and `κ` exist for
    diagonal `GaussianNoise` (`erf`, `2sφ(u/s)`) and `StudentTNoise` (t CDF,
    `2s(ν + z²) f_ν(z)/(ν - 1)`); other noise raises NotImplementedError (use
    `form="moments"`). `x`'s increments are bounded, but `M` averages raw gradients: for
    `StudentTNoise(df <= 2)` its variance is infinite and this SDE does not exist (ValueError),
    although the optimizer itself stays bounded.
    """

    optimizer: Lion
    problem: AbstractProblem
    optimizer_type: ClassVar[type] = Lion
    form: ClassVar[str] = "default"

    @property
    def coupling_sign(self) -> int | None:
        return 1  # row 0 drives m: +ρ₂√η s w₀, as the optimizer's m moves with Z

    def __check_init__(self):
        noise = self.problem.noise
        if not (isinstance(noise, AbstractAdditiveNoise) and noise.is_diagonal):
            raise NotImplementedError(
                f"Lion's SDE needs additive noise with independent coordinates, not "
                f"{noise.label}: use form='moments'."
            )
        if not noise.has_finite_variance:
            raise ValueError(
                f"The Lion SDE does not exist for {noise.label} with infinite variance: Lion's "
                "steps are bounded, but its momentum m averages raw gradients, so Var m is "
                "infinite (df <= 2). Run the optimizer itself (sl.run_optimizer)."
            )
        # A model without the closed form refuses now, not inside the integrator.
        d = self.problem.dim if self.problem.dim is not None else 1
        jax.eval_shape(noise.sign_noise_moment, jax.ShapeDtypeStruct((d,), jnp.float32))

    def rest_state(self, x):
        return LionState(x, self.problem.grad(x))

    def _rho2(self) -> float:
        return (1.0 - self.optimizer.beta2) / self.lr

    def _u(self, y: LionState):
        grad = self.problem.grad(y.x)
        beta1 = self.optimizer.beta1
        return grad, (beta1 * y.m + (1.0 - beta1) * grad) / (1.0 - beta1)

    def drift(self, t, y, args):
        grad, u = self._u(y)
        noise = self.problem.noise
        dx = -noise.sign_mean(u) - self.optimizer.weight_decay * y.x
        return LionState(dx, self._rho2() * (grad - y.m))

    def diffusion(self, t, y, args):
        _, u = self._u(y)
        noise = self.problem.noise
        mu = noise.sign_mean(u)
        kappa = noise.sign_noise_moment(u)
        s = jnp.sqrt(noise.variance_at(self.problem, y.x))
        root_eta = jnp.sqrt(self.lr)
        shared = -root_eta * kappa / s
        own = root_eta * jnp.sqrt(jnp.clip(1.0 - mu**2 - (kappa / s) ** 2, 0.0))
        m_coef = root_eta * self._rho2() * s
        structure = jax.ShapeDtypeStruct((2, *jnp.shape(y.x)), jnp.result_type(y.x))
        x_block = lx.FunctionLinearOperator(lambda w: shared * w[0] + own * w[1], structure)
        m_block = lx.FunctionLinearOperator(lambda w: m_coef * w[0], structure)
        shapes = tuple(jax.ShapeDtypeStruct(jnp.shape(v), jnp.result_type(v)) for v in y)
        return StateOperator((x_block, m_block), LionState, shapes)
