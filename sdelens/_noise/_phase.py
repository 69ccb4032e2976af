"""SignSGD phases (Compagnoni et al. 2025, Lemma 3.4)."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ._base import AbstractAdditiveNoise, AbstractNoise

__all__ = ["sign_phase"]


def sign_phase(
    noise: AbstractNoise, grad: Float[Array, " d"], *, low: float = 1.0, high: float = 1.5
) -> Int[Array, " d"]:
    """SignSGD phase (1, 2 or 3) per coordinate (Compagnoni et al. 2025, Lemma 3.4;
    docs/math.md §3).

    With the signal-to-noise ratio `Y = ∂ᵢf / (√2 wᵢ)` (`w` the noise's `sign_width`: the std for
    Gaussian noise, the scale for Student-t): phase 1 `|Y| > high` (SignGD ODE,
    `dX ≈ -sign ∇f dt`), phase 3 `|Y| < low` (linear, `dX ≈ -√(2/π) Σ^{-1/2} ∇f dt + √η dW`),
    phase 2 in between. Defaults follow the Lemma.
    """
    if not 0 < low <= high:
        raise ValueError(f"low={low}, high={high} are invalid: 0 < low <= high is required.")
    try:
        if not isinstance(noise, AbstractAdditiveNoise):
            raise NotImplementedError
        width = noise.sign_width(grad.shape[0])
    except NotImplementedError:
        raise ValueError(
            f"noise={type(noise).__name__} is invalid: phases are defined for "
            "GaussianNoise and StudentTNoise."
        ) from None
    y = jnp.abs(grad) / (jnp.sqrt(2.0) * width)
    return jnp.where(y > high, 1, jnp.where(y < low, 3, 2))
