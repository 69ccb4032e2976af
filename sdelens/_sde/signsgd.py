from __future__ import annotations

import jax.numpy as jnp

from .._optimizers import SignSGD
from .._problems import AbstractProblem
from .base import AbstractParameterSDE, register_sde, scale_operator


@register_sde(SignSGD)
class SignSGDSDE(AbstractParameterSDE):
    """SignSGD's SDE (Compagnoni et al. 2025, Thm 3.2):

    `dX = -(1 - 2 P[g(X) < 0]) dt + √η Σ̄(X)^{1/2} dW`, `Σ̄ = Cov(sign g(X))`.

    The drift is `-E[sign g]`, in closed form for Gaussian (erf, Cor. 3.3) and Student-t
    (t CDF) noise and by Monte Carlo for `SampledNoise`. Exists for any Student-t `df > 0`.
    """

    optimizer: SignSGD
    problem: AbstractProblem

    def drift(self, t, y, args):
        return -self.problem.sign_mean(y)

    def diffusion(self, t, y, args):
        return scale_operator(self.problem.sign_cov_sqrt(y), jnp.sqrt(self.lr))
