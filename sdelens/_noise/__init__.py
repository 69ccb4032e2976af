"""Gradient-noise models (docs/math.md §1-§3, §9)."""

from ._base import AbstractAdditiveNoise as AbstractAdditiveNoise, AbstractNoise as AbstractNoise
from ._gaussian import GaussianNoise as GaussianNoise, bivariate_normal_cdf as bivariate_normal_cdf
from ._minibatch import COVARIANCES as COVARIANCES, MinibatchNoise as MinibatchNoise
from ._phase import sign_phase as sign_phase
from ._sampled import (
    SampledNoise as SampledNoise,
    monte_carlo_sign_moments as monte_carlo_sign_moments,
)
from ._student_t import StudentTNoise as StudentTNoise
