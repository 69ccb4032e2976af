from __future__ import annotations

import jax.numpy as jnp

from .._optimizers import SGD
from .._problems import AbstractProblem
from .base import AbstractParameterSDE, register_sde, require_finite_variance, scale_operator


@register_sde(SGD)
class SGDSDE(AbstractParameterSDE):
    """SGD's SDE (Li, Tai & E 2019): `dX = -∇f(X) dt + √η Σ^{1/2} dW`.

    Weak order 1 in `η`. Needs finite-variance noise: for `StudentTNoise(df <= 2)` the
    covariance `Σ` does not exist and neither does this SDE.
    """

    optimizer: SGD
    problem: AbstractProblem

    def __check_init__(self):
        require_finite_variance("SGD", self.problem.noise)

    def drift(self, t, y, args):
        return -self.problem.grad(y)

    def diffusion(self, t, y, args):
        return scale_operator(self.problem.noise_cov_sqrt(y), jnp.sqrt(self.lr))
