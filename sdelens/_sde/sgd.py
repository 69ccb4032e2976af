from __future__ import annotations

import jax.numpy as jnp

from .._optimizers import SGD
from .._problems import AbstractProblem
from .base import AbstractParameterSDE, register_sde, scale_operator


@register_sde(SGD)
class SGDSDE(AbstractParameterSDE):
    """SGD's SDE (Li, Tai & E 2019): `dX = -∇f(X) dt + √η Σ^{1/2} dW`.

    Weak order 1 in `η`. Needs finite-variance noise: for `StudentTNoise(df <= 2)` the
    covariance `Σ` does not exist and neither does this SDE.
    """

    optimizer: SGD
    problem: AbstractProblem

    def __check_init__(self):
        noise = self.problem.noise
        if not noise.has_finite_variance:
            raise ValueError(
                f"The SGD SDE does not exist for {type(noise).__name__} with infinite variance "
                f"(df={float(getattr(noise, 'df', float('nan')))} <= 2): its diffusion needs the "
                "noise covariance Σ. SignSGD's SDE exists for any df > 0: use sl.SignSGD."
            )

    def drift(self, t, y, args):
        return -self.problem.grad(y)

    def diffusion(self, t, y, args):
        return scale_operator(self.problem.noise.cov_sqrt(y.shape[0]), jnp.sqrt(self.lr))
