"""Which minimum local entropy and plain smoothing prefer (docs/math.md §7)."""

from __future__ import annotations

import dataclasses
import itertools

import jax.numpy as jnp
import numpy as np

from .. import flatness

__all__ = ["Preference", "minimum_preference"]


@dataclasses.dataclass(frozen=True, eq=False)
class Preference:
    """Which of two minima an objective ranks lower, on a grid of temperatures and couplings.

    `entropy_gap[i, j]` = local-entropy loss at `wide` minus at `narrow` for `temperatures[i]`,
    `gammas[j]` (negative: the wide minimum is preferred); `smoothing_gap` the same for the
    Gaussian-smoothed loss at the same width `√(T/γ)`."""

    temperatures: np.ndarray
    gammas: np.ndarray
    entropy_gap: np.ndarray
    smoothing_gap: np.ndarray

    def metrics(self) -> dict:
        return {
            "temperatures": self.temperatures.tolist(),
            "gammas": self.gammas.tolist(),
            "entropy_wide_minus_narrow": self.entropy_gap.tolist(),
            "smoothing_wide_minus_narrow": self.smoothing_gap.tolist(),
        }


def minimum_preference(loss, narrow, wide, temperatures, gammas) -> Preference:
    """Compare local entropy (`-T F`, quadrature) and plain smoothing at equal width on a
    1-D or 2-D landscape with minima `narrow` and `wide` (docs/math.md §7: log-det vs trace
    penalty). The quadrature window holds both wells (4001 points in 1-D, 601² in 2-D)."""
    narrow, wide = jnp.atleast_1d(jnp.asarray(narrow)), jnp.atleast_1d(jnp.asarray(wide))
    # the window must hold both wells from either minimum (a deep well outside it would be lost)
    reach = 1.5 * float(jnp.linalg.norm(wide - narrow))
    temperatures, gammas = np.asarray(temperatures, float), np.asarray(gammas, float)
    shape = (temperatures.size, gammas.size)
    ent, smooth = np.zeros(shape), np.zeros(shape)
    for (i, t), (j, g) in itertools.product(enumerate(temperatures), enumerate(gammas)):
        half_width, n = reach + 8.0 * float(np.sqrt(t / g)), 4001 if narrow.size == 1 else 601
        ent[i, j] = float(
            flatness.local_entropy_integral(loss, wide, g, t, n=n, half_width=half_width)
            - flatness.local_entropy_integral(loss, narrow, g, t, n=n, half_width=half_width)
        )
        width = float(np.sqrt(t / g))
        smooth[i, j] = float(
            flatness.smoothed_loss_integral(loss, wide, width)
            - flatness.smoothed_loss_integral(loss, narrow, width)
        )
    return Preference(temperatures, gammas, ent, smooth)
