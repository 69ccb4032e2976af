"""Lion (Chen et al. 2023): the sign of an interpolated momentum, with decoupled weight decay."""

from typing import ClassVar, NamedTuple, final

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from .. import _check
from .._linalg import lyapunov
from .._noise import GaussianNoise, StudentTNoise
from ._base import AbstractOptimizer, require_minimum_at_zero, require_quadratic

__all__ = ["Lion", "LionState"]


class LionState(NamedTuple):
    """Lion's state and its SDE's: parameters `x` and the momentum `m`."""

    x: Float[Array, " d"]
    m: Float[Array, " d"]


@final
class Lion(AbstractOptimizer):
    """Lion (Chen et al. 2023, "Symbolic discovery of optimization algorithms"), exactly
    `optax.lion(lr, b1=beta1, b2=beta2, weight_decay=weight_decay)` (docs/math.md §11.1):

    `c = β₁ m + (1-β₁) g`,  `x ← x - η (sign(c) + θ x)`,  `m ← β₂ m + (1-β₂) g`,  `m₀ = 0`.

    The step uses the momentum *before* this step's update. With `beta1 == beta2` it is
    Signum (Bernstein et al. 2018): `c` is then the updated `m` and the step is `sign(m)`.
    Weight decay is decoupled and multiplied by `η` (optax's convention; note that
    `optax.lion`'s own default is `weight_decay=1e-3`, sdelens's is 0).

    **The small-η family** (`with_lr`, docs/math.md §1.3): both `β₁` and `β₂` are moving-average
    decays held at fixed `ρᵢ = (1-βᵢ)/η`. `c/(1-β₁) = m/(1-β₁) + (g - m)` then flips sign only
    within an `O(η)` band of `m = 0`, so as `η → 0` the step tends to `-sign(m)` wherever `m` is
    not that small. Batch-size scaling: the `"sqrt"` rule, as for SignSGD (the update is a sign;
    `η → √κ η`, decays unchanged).
    """

    lr: float = eqx.field(converter=_check.number("lr"))
    beta1: float = eqx.field(converter=_check.number("beta1"), default=0.9)
    beta2: float = eqx.field(converter=_check.number("beta2"), default=0.99)
    weight_decay: float = eqx.field(converter=_check.number("weight_decay"), default=0.0)
    decay_names: ClassVar[tuple[str, ...]] = ("beta1", "beta2")
    scaling_rules: ClassVar[tuple[str, ...]] = ("sqrt",)
    coordinatewise: ClassVar[bool] = True

    def __check_init__(self):
        _check.positive_finite("lr", self.lr, scalar=True)
        _check.in_interval("beta1", self.beta1, 0.0, 1.0)
        _check.in_interval("beta2", self.beta2, 0.0, 1.0)
        _check.positive_finite("weight_decay", self.weight_decay, allow_zero=True, scalar=True)

    @property
    def name(self) -> str:
        """`"lion"`, or `"lionw"` with decoupled weight decay (as the command line names it)."""
        return "lionw" if self.weight_decay > 0 else "lion"

    @property
    def grads_per_step(self) -> int:
        return 1

    def to_optax(self) -> optax.GradientTransformation:
        return optax.lion(
            learning_rate=self.lr, b1=self.beta1, b2=self.beta2, weight_decay=self.weight_decay
        )

    def initial_state(self, x0):
        return LionState(x0, jnp.zeros_like(x0))

    def state(self, x, opt_state):
        return LionState(x, opt_state[0].mu)

    def default_scaling_rule(self) -> str:
        return "sqrt"

    def stationary_cov(self, problem):
        """Phase-3 linearisation of Lion's SDE at the minimum (docs/math.md §11.1).

        Near `x*` (`x* = 0` when `θ > 0`), `E sign(u + Z) ≈ (c/w) u` with
        `u = (β₁ m + (1-β₁) ∇f)/(1-β₁) = b m + ∇f`, `b = β₁/(1-β₁)`, and `c/w` the slope of
        SignSGD's phase 3 (`√(2/π)/s` Gaussian, `c_ν/s` Student-t). Per coordinate, with
        `k = c/w`, `ρ = ρ₂`, `κ = E|Z|` and `s² = Var Z`, the state `(e = x - x*, m)` follows the
        linear SDE with drift `[[-kh - θ, -kb], [ρh, -ρ]]` and diffusion covariance
        `η [[1, -ρκ], [-ρκ, ρ² s²]]`. Its Lyapunov equation gives, for `θ = 0`,

        `Cov(e, m) = r = η ρ (1-β₁) (1/(2k) - k b s²/2 - κ) / (ρ + k h)`,
        `Var e = η/(2kh) - b r/h`

        (`"closed form"`, diagonal `h`; SignSGD's `η/(2kh)` at `β₁ = 0`); otherwise the Lyapunov
        equation is solved (`"lyapunov"`). The linearisation needs `|u| ≲ w` at the minimum,
        i.e. `b √(η ρ₂/2) ≲ 1`: along the small-η family (fixed `ρ₁`, `b ~ 1/(ρ₁η)`) it fails,
        and so does this law. Needs diagonal Gaussian or Student-t (`df > 2`) noise.
        """
        quadratic = require_quadratic(self, problem)
        noise = quadratic.noise
        if not (isinstance(noise, GaussianNoise | StudentTNoise) and noise.is_diagonal):
            raise NotImplementedError(
                "Lion's stationary law needs diagonal GaussianNoise or StudentTNoise: use "
                "sl.linearised_stationary."
            )
        if not noise.has_finite_variance:
            raise ValueError(
                f"Lion's SDE has no stationary law under {noise.label}: its momentum averages "
                "raw gradients, whose variance is infinite."
            )
        require_minimum_at_zero(self, quadratic)
        d = quadratic.dim
        k = noise.phase3_slope() / np.asarray(noise.sign_width(d), dtype=float)
        var = np.asarray(noise.variance_at(quadratic, jnp.zeros(d)), dtype=float)
        abs_mean = np.asarray(noise.sign_noise_moment(jnp.zeros(d)), dtype=float)  # E|Z|
        rho = (1.0 - self.beta2) / self.lr
        b = self.beta1 / (1.0 - self.beta1)
        eta, theta = self.lr, self.weight_decay
        if quadratic.h.ndim == 1 and theta == 0:
            h = np.asarray(quadratic.h, dtype=float)
            r = eta * rho * (1 - self.beta1) * (0.5 / k - 0.5 * k * b * var - abs_mean)
            r = r / (rho + k * h)
            return np.diag(eta / (2 * k * h) - b * r / h), "closed form"
        hess = np.asarray(quadratic.hessian, dtype=float)
        eye = np.eye(d)
        drift = np.block(
            [[-k[:, None] * hess - theta * eye, -np.diag(k * b)], [rho * hess, -rho * eye]]
        )
        q = eta * np.block(
            [[eye, -np.diag(rho * abs_mean)], [-np.diag(rho * abs_mean), np.diag(rho**2 * var)]]
        )
        return lyapunov(drift, q)[:d, :d], "lyapunov"
