"""Noise known only through a sampler: every moment by Monte Carlo."""

from __future__ import annotations

from collections.abc import Callable
from typing import final

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _check
from .._linalg import psd_sqrt
from ._base import AbstractAdditiveNoise, AbstractNoise, check_scale

__all__ = ["SampledNoise", "monte_carlo_sign_moments"]


def monte_carlo_sign_moments(
    noise: AbstractAdditiveNoise, grad: Float[Array, " d"], key: PRNGKeyArray, n_samples: int
) -> tuple[Float[Array, " d"], Float[Array, "d d"]]:
    """Monte Carlo estimates of `E[sign g]` and `Cov(sign g)` from the noise sampler.

    The fallback for noise without closed forms, and the check of the closed forms in tests.
    """
    n_samples = _check.positive_int("n_samples", n_samples)
    keys = jax.random.split(key, n_samples)
    signs = jnp.sign(grad + jax.vmap(lambda k: noise.sample(k, grad.shape))(keys))
    mean = jnp.mean(signs, axis=0)
    centred = signs - mean
    return mean, centred.T @ centred / n_samples


@final
class SampledNoise(AbstractAdditiveNoise):
    """Noise given only by a sampler `sampler(key, shape) -> Z`; every moment by Monte Carlo.

    `E[sign g]` and `Cov(sign g)` are estimated from `n_samples` draws with a fixed key
    (common random numbers), so the SDE's drift is a deterministic function of the state; its
    Monte Carlo error is `O(n_samples^{-1/2})`. `covariance_sqrt` (a `(d, d)` matrix) must be
    given for the SGD SDE, since a sample covariance is unreliable for heavy tails.
    """

    sampler: Callable = eqx.field(static=True)
    n_samples: int = eqx.field(static=True, default=4096)
    seed: int = eqx.field(static=True, default=0)
    covariance_sqrt: Float[Array, "d d"] | None = None

    def __check_init__(self):
        _check.positive_int("n_samples", self.n_samples)
        if not callable(self.sampler):
            raise ValueError(
                f"sampler={self.sampler!r} is invalid: a callable (key, shape) -> Z is required."
            )
        if self.covariance_sqrt is not None:
            check_scale("covariance_sqrt", self.covariance_sqrt, allow_matrix=True)

    @property
    def dim(self) -> int | None:
        return None if self.covariance_sqrt is None else self.covariance_sqrt.shape[0]

    @property
    def has_finite_variance(self) -> bool:
        return self.covariance_sqrt is not None

    @property
    def label(self) -> str:
        return "SampledNoise"

    @property
    def is_diagonal(self) -> bool:
        return False

    def sample(self, key, shape):
        return self.sampler(key, shape)

    def normals_shape(self, problem, x):
        return None  # a sampler takes a key: there is no map from normals

    def from_normals(self, xi):
        raise NotImplementedError(
            "SampledNoise draws from its sampler's key only: it has no map from standard "
            "normals (coupled runs need GaussianNoise, StudentTNoise or MinibatchNoise)."
        )

    def cov_sqrt(self, d):
        if self.covariance_sqrt is None:
            raise ValueError(
                "SampledNoise(covariance_sqrt=None) has no known covariance: pass "
                "covariance_sqrt (a (d, d) matrix S with Cov Z = S Sᵀ) to use it with SGD."
            )
        return lx.MatrixLinearOperator(jnp.asarray(self.covariance_sqrt))

    def _moments(self, grad):
        return monte_carlo_sign_moments(self, grad, jax.random.key(self.seed), self.n_samples)

    def sign_mean(self, grad):
        return self._moments(grad)[0]

    def sign_cov(self, grad):
        return self._moments(grad)[1]

    def sign_cov_sqrt(self, grad):
        return psd_sqrt(self.sign_cov(grad))

    def phase3_slope(self) -> float:
        raise NotImplementedError(
            "SampledNoise has no closed-form phase-3 slope: GaussianNoise and StudentTNoise do."
        )

    def sign_width(self, d):
        raise NotImplementedError(
            "SampledNoise has no closed-form sign width: GaussianNoise and StudentTNoise do."
        )

    def scaled(self, factor) -> AbstractNoise:
        raise ValueError(
            "noise=SampledNoise cannot be rescaled: GaussianNoise, StudentTNoise or "
            "MinibatchNoise is required."
        )
