"""SDEs of the optimizers without memory: SGD and SignSGD."""

from __future__ import annotations

from typing import ClassVar, final

import jax.numpy as jnp

from .._noise import AbstractAdditiveNoise, MinibatchNoise
from .._optimizers import SGD, ParamState, SignSGD
from .._problems import AbstractProblem
from ._base import AbstractOwnStateSDE, embed_noise
from ._euler import combine_increment

__all__ = ["SGDSDE", "SignSGDSDE"]


@final
class SGDSDE(AbstractOwnStateSDE):
    """SGD's SDE (Li, Tai & E 2019; docs/math.md §2): `dX = -∇f(X) dt + √η Σ(X)^{1/2} dW`.

    Weak order 1 in `η`. Needs finite-variance noise: for `StudentTNoise(df <= 2)` the
    covariance `Σ` does not exist and neither does this SDE.

    **With momentum** `β > 0` (heavy ball or Nesterov; docs/math.md §11.2) it is SGD's SDE at
    the effective learning rate `η/(1-β)`, on the optimizer's clock `t = kη`:

    `dX = -∇f(X)/(1-β) dt + (√η/(1-β)) Σ(X)^{1/2} dW`,

    the family keeping `β` fixed as `η → 0`. The state is `ParamState(x)` (the velocity is
    slaved to the gradient, `m ≈ g/(1-β)`), starting at `x₀`. The optimizer starts at `m₀ = 0`,
    so it lags the SDE by a transient of `O(1/(1-β))` steps (`β/(1-β)` steps of `g/(1-β)` on a
    steady gradient), which this model does not resolve. For Nesterov the effective rate is
    `η/(1-β)` to leading order as well.
    """

    optimizer: SGD
    problem: AbstractProblem
    optimizer_type: ClassVar[type] = SGD
    form: ClassVar[str] = "default"

    @property
    def coupling_sign(self) -> int | None:
        return -1  # x: +√η Σ^{1/2} dW, the optimizer: -η Z

    def __check_init__(self):
        self.problem.noise.require_finite_variance("SGD")

    def initial_state(self, x0):
        return ParamState(x0)

    def rest_state(self, x):
        return ParamState(x)

    @property
    def _gain(self) -> float:
        return 1.0 / (1.0 - self.optimizer.momentum)

    def drift(self, t, y, args):
        return ParamState(-self._gain * self.problem.grad(y.x))

    def diffusion(self, t, y, args):
        root = self.problem.noise.cov_sqrt_at(self.problem, y.x)
        return embed_noise(root, y, x=jnp.sqrt(self.lr) * self._gain)

    def _increment(self, t, y, args, dt, dw):
        """`b dt + G dW` in one evaluation (`_euler.EulerIncrementTerm`). Under exact
        minibatch noise `-γ ∇f dt + √η γ Σ^{1/2} dW` is one vector-Jacobian product
        (`MinibatchNoise.grad_and_noise`): one backward pass per step instead of two."""
        noise = self.problem.noise
        if isinstance(noise, MinibatchNoise) and noise.covariance == "exact":
            gain = self._gain
            dx = noise.grad_and_noise(self.problem, y.x, -gain * dt, jnp.sqrt(self.lr) * gain, dw)
            return ParamState(dx)
        return combine_increment(self.drift(t, y, args), self.diffusion(t, y, args), dt, dw)


@final
class SignSGDSDE(AbstractOwnStateSDE):
    """SignSGD's SDE (Compagnoni et al. 2025, Thm 3.2; docs/math.md §3):

    `dX = -(1 - 2 P[g(X) < 0]) dt + √η Σ̄(X)^{1/2} dW`, `Σ̄ = Cov(sign g(X))`.

    The drift is `-E[sign g]`, in closed form for Gaussian (erf, Cor. 3.3) and Student-t
    (t CDF) noise and by Monte Carlo for `SampledNoise`. Exists for any Student-t `df > 0`.
    """

    optimizer: SignSGD
    problem: AbstractProblem
    optimizer_type: ClassVar[type] = SignSGD
    form: ClassVar[str] = "default"

    @property
    def coupling_sign(self) -> int | None:
        return -1  # x: +√η Σ̄^{1/2} dW, the optimizer: -η sign(g)

    def rest_state(self, x):
        return ParamState(x)

    def drift(self, t, y, args):
        return ParamState(-self.problem.noise.sign_mean_at(self.problem, y.x))

    def diffusion(self, t, y, args):
        root = self.problem.noise.sign_cov_sqrt_at(self.problem, y.x)
        return embed_noise(root, y, x=jnp.sqrt(self.lr))

    def _increment(self, t, y, args, dt, dw):
        """`b dt + G dW` with both moments of `sign g` from one gradient (and, under minibatch
        noise, one pass of per-example gradients) (`_euler.EulerIncrementTerm`)."""
        noise, x = self.problem.noise, y.x
        if isinstance(noise, AbstractAdditiveNoise):
            grad = self.problem.grad(x)
            mean, root = noise.sign_mean(grad), noise.sign_cov_sqrt(grad)
        elif isinstance(noise, MinibatchNoise):
            mean, root = noise.sign_moments_at(self.problem, x)
        else:
            mean, root = (
                noise.sign_mean_at(self.problem, x),
                noise.sign_cov_sqrt_at(self.problem, x),
            )
        drift = ParamState(-mean)
        return combine_increment(drift, embed_noise(root, y, x=jnp.sqrt(self.lr)), dt, dw)
