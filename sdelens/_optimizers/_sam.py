"""Sharpness-aware minimization: SAM (Foret et al. 2021) and its unnormalised variant USAM."""

from typing import ClassVar, final

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optax

from .. import _check
from .._linalg import discrete_lyapunov
from ._base import AbstractOptimizer, ParamState, require_quadratic
from ._sgd import _additive

__all__ = ["SAM"]


def ascent_direction(g, normalize: bool):
    """`g/‖g‖` (SAM) or `g` (USAM); SAM's direction is 0 where `‖g‖ = 0` (no perturbation)."""
    if not normalize:
        return g
    norm = jnp.linalg.norm(g)
    positive = norm > 0
    return jnp.where(positive, g / jnp.where(positive, norm, 1.0), 0.0)


@final
class SAM(AbstractOptimizer):
    """Sharpness-aware minimization (Foret et al. 2021) and its unnormalised variant USAM
    (`normalize=False`), docs/math.md §11.3:

        USAM:  x ← x - η g(x + ρ g(x)),       SAM:  x ← x - η g(x + ρ g(x)/‖g(x)‖),

    `η` = `lr`, `ρ` = `rho` (the perturbation radius; docs/math.md writes it `r`). Both
    gradients of one step use **one noise draw**: the second is `step_grad_fn(x')`, the
    stochastic gradient at `x'` under the first one's draw (passed by `run_optimizer`), so
    additive noise adds the same `Z` to both and `MinibatchNoise` reads the same minibatch, as
    in SAM's minibatch implementations. Where `‖g(x)‖ = 0` SAM does not perturb (`x' = x`).

    `to_optax()` is an `optax.GradientTransformationExtraArgs` whose `update(g, state, x, *,
    step_grad_fn)` returns `-η step_grad_fn(x + ρ d)` with `d` the ascent direction above; it
    needs the keyword. Each step costs two stochastic gradients
    (`grads_per_step = 2`). Parameters are a flat vector.

    **Small-η family and scaling.** `with_lr` keeps `ρ` fixed. USAM's SDE
    (`dX = -(I + ρ∇²f)∇f dt + √η (I + ρ∇²f) Σ^{1/2} dW`) is unchanged by `η → κη`, `Σ → Σ/κ` at
    fixed `ρ`, so USAM follows the linear rule; SAM's drift depends on the noise level through
    `E[g/‖g‖]`, so SAM has no batch-size rule (`default_scaling_rule` raises).
    """

    lr: float = eqx.field(converter=_check.number("lr"))
    rho: float = eqx.field(converter=_check.number("rho"))
    normalize: bool = eqx.field(static=True, default=True)
    decay_names: ClassVar[tuple[str, ...]] = ()
    scaling_rules: ClassVar[tuple[str, ...]] = ()
    coordinatewise: ClassVar[bool] = False  # the second gradient is taken at a moved point

    def __check_init__(self):
        _check.positive_finite("lr", self.lr, scalar=True)
        _check.positive_finite("rho", self.rho, scalar=True)
        if not isinstance(self.normalize, bool):
            raise ValueError(
                f"normalize={self.normalize!r} is invalid: True (SAM) or False (USAM)."
            )

    @property
    def name(self) -> str:
        return "sam" if self.normalize else "usam"

    @property
    def weight_decay(self) -> float:
        return 0.0

    @property
    def grads_per_step(self) -> int:
        return 2

    def initial_state(self, x0):
        return ParamState(x0)

    def state(self, x, opt_state):
        return ParamState(x)

    def default_scaling_rule(self) -> str:
        if not self.normalize:
            return "linear"
        raise ValueError(
            "opt=SAM has no batch-size scaling rule in sdelens (its drift depends on the noise "
            "level through E[g/|g|]): pass rule='linear' or 'sqrt' to rescale its learning rate "
            "only."
        )

    def to_optax(self) -> optax.GradientTransformationExtraArgs:
        lr, rho, normalize = self.lr, self.rho, self.normalize

        def init(params):
            return optax.EmptyState()

        def update(updates, state, params=None, *, step_grad_fn=None, **extra_args):
            if params is None or step_grad_fn is None:
                raise ValueError(
                    "SAM's update needs params and step_grad_fn=(x) -> the stochastic gradient "
                    "at x under the first gradient's draw (run_optimizer passes both)."
                )
            perturbed = params + rho * ascent_direction(updates, normalize)
            return -lr * step_grad_fn(perturbed), state

        return optax.GradientTransformationExtraArgs(init, update)

    def stationary_cov(self, problem):
        """USAM on a quadratic with additive noise is the linear recursion
        `x' = A x - η (I + ρH) Z`, `A = I - ηH - ηρH²` (about `x*`), whose stationary covariance
        solves `C = A C Aᵀ + η² (I + ρH) Σ (I + ρH)` exactly (`discrete_lyapunov`; method
        "discrete lyapunov (exact for the optimizer)", docs/math.md §11.3): the optimizer's own
        law, not an SDE's. SAM is not linear: NotImplementedError (use
        `sl.linearised_stationary`)."""
        if self.normalize:
            raise NotImplementedError(
                "SAM has no closed-form stationary law in sdelens: use "
                "sl.linearised_stationary(opt, problem) (its SDE linearised at the minimum)."
            )
        quadratic = require_quadratic(self, problem)
        noise = _additive(self, quadratic)
        if not noise.has_finite_variance:
            raise ValueError(
                f"USAM has no stationary law under {noise.label}: its variance is infinite."
            )
        hess = np.asarray(quadratic.hessian, dtype=float)
        d = hess.shape[0]
        sqrt_sigma = np.asarray(noise.cov_sqrt(d).as_matrix(), dtype=float)
        lift = np.eye(d) + self.rho * hess
        transition = np.eye(d) - self.lr * hess @ lift
        radius = float(np.abs(np.linalg.eigvals(transition)).max())
        if radius >= 1.0:
            raise ValueError(
                f"lr={self.lr:g}, rho={self.rho:g} are too large for a stationary law: USAM on "
                "this quadratic diverges when lr · h (1 + rho h) >= 2 for an eigenvalue h of H "
                f"(spectral radius of I - lr (H + rho H²) is {radius:.4g})."
            )
        noise_cov = self.lr**2 * lift @ sqrt_sigma @ sqrt_sigma.T @ lift.T
        cov = discrete_lyapunov(transition, noise_cov)
        return cov, "discrete lyapunov (exact for the optimizer)"
