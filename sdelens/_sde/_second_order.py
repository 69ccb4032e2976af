"""The second-order SDE of SGD (Li, Tai & E 2017, 2019; docs/math.md §12)."""

from typing import ClassVar, final

import jax
import jax.numpy as jnp

from .._optimizers import SGD, ParamState
from .._problems import AbstractProblem
from ._base import AbstractOwnStateSDE, embed_noise

__all__ = ["SecondOrderSGDSDE"]


@final
class SecondOrderSGDSDE(AbstractOwnStateSDE):
    """SGD's second-order stochastic modified equation (Li, Tai & E 2017, 2019;
    docs/math.md §12), `form="second_order"`:

        dX = -∇(f + (η/4)‖∇f‖²)(X) dt + (η Σ(X))^{1/2} dW,   ∇(f + (η/4)‖∇f‖²) = ∇f + (η/2) ∇²f ∇f

    Weak order 2 in `η` on a finite horizon, against SGD's weak order 1 for
    `dX = -∇f dt + √η Σ^{1/2} dW` (§2). The variant implemented is the one Li, Tai & E state for
    SGD with a state-dependent covariance `Σ(x)`: the `η/4` correction enters the drift only and
    the diffusion is SGD's first-order one, `√η Σ(X)^{1/2}` (the noise model's
    `cov_sqrt_at`). The drift's Hessian term is one Hessian-vector product (forward over
    reverse): no Hessian is formed. The order-2 guarantee is for finite horizons only: the
    stationary variance on a quadratic is `O(η)` off in both forms (§12).

    Seeing the second order takes an integrator whose own weak error is below `η²`: many
    substeps, or `sl.weak_order(..., extrapolate=True)` (Talay–Tubaro). For plain SGD only
    (`momentum` 0) and finite-variance noise.
    """

    optimizer: SGD
    problem: AbstractProblem
    optimizer_type: ClassVar[type] = SGD
    form: ClassVar[str] = "second_order"

    @property
    def coupling_sign(self) -> int | None:
        return -1  # as SGD's

    @classmethod
    def models(cls, opt) -> bool:
        """Plain SGD only (with momentum the construction explains why not)."""
        return getattr(opt, "momentum", 0.0) == 0.0

    def __check_init__(self):
        momentum = getattr(self.optimizer, "momentum", 0.0)
        if momentum != 0.0:
            raise ValueError(
                f"momentum={momentum} is invalid for form='second_order': the second-order SDE "
                "is for plain SGD (momentum=0)."
            )
        self.problem.noise.require_finite_variance("second-order SGD")

    def rest_state(self, x):
        return ParamState(x)

    def drift(self, t, y, args):
        grad, hess_grad = jax.jvp(self.problem.grad, (y.x,), (self.problem.grad(y.x),))
        return ParamState(-(grad + 0.5 * self.lr * hess_grad))

    def diffusion(self, t, y, args):
        root = self.problem.noise.cov_sqrt_at(self.problem, y.x)
        return embed_noise(root, y, x=jnp.sqrt(self.lr))
