"""The Hessian spectrum at a point (Chaudhari et al. 2017, Fig. 1)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from .. import flatness
from .._problems import AbstractProblem
from .._simulate import check_key

__all__ = ["HessianSpectrum", "hessian_spectrum"]


@dataclasses.dataclass(frozen=True, eq=False)
class HessianSpectrum:
    """The Hessian at a point: SLQ `density`, `top` eigenvalues, Hutchinson `trace` (± SE) and
    the fraction of the spectral mass with `|λ| < near_zero · λ_max`."""

    density: flatness.SpectralDensity
    top: np.ndarray
    trace: float
    trace_se: float
    near_zero_fraction: float

    def metrics(self) -> dict:
        return {
            "top_eigenvalues": self.top.tolist(),
            "trace": self.trace,
            "trace_se": self.trace_se,
            "near_zero_fraction": self.near_zero_fraction,
        }


def hessian_spectrum(
    loss,
    x,
    key: PRNGKeyArray,
    *,
    k: int = 10,
    n_probes: int = 8,
    n_iter: int = 60,
    near_zero: float = 0.01,
) -> HessianSpectrum:
    """Spectrum of `∇²f(x)` (Chaudhari et al. 2017, Fig. 1: most eigenvalues of a trained
    network sit near zero; docs/math.md §8). `loss` is a problem (its `loss`) or a callable;
    `key` (required) drives Lanczos, the SLQ probes and Hutchinson's probes."""
    loss = loss.loss if isinstance(loss, AbstractProblem) else loss
    k_top, k_slq, k_trace = jax.random.split(check_key(key), 3)
    x = jnp.asarray(x)
    top, _ = flatness.top_eigenvalues(loss, x, k, k_top, n_iter=min(n_iter, x.shape[0]))
    # a kernel 1% of the largest |eigenvalue| wide: a curve to plot, not single eigenvalues
    sigma = 0.01 * max(float(jnp.max(jnp.abs(top))), 1e-12)
    density = flatness.spectral_density(
        loss, x, k_slq, n_probes=n_probes, n_iter=n_iter, grid=400, sigma=sigma
    )
    trace, trace_se = flatness.hutchinson_trace(loss, x, k_trace, n_probes=4 * n_probes)
    scale = jnp.max(jnp.abs(density.nodes))
    near = jnp.sum(jnp.where(jnp.abs(density.nodes) < near_zero * scale, density.weights, 0.0))
    return HessianSpectrum(
        density, np.asarray(top), float(trace), float(trace_se), float(near / n_probes)
    )
