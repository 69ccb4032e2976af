"""SDEs of USAM and SAM (Compagnoni et al. 2023; docs/math.md §11.3)."""

from typing import ClassVar, final

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from .._linalg import psd_sqrt
from .._noise import AbstractAdditiveNoise
from .._optimizers import SAM, ParamState
from .._problems import AbstractProblem
from ._base import AbstractOwnStateSDE, embed_noise

__all__ = ["USAMSDE", "SAMSDE"]


def hvp(problem: AbstractProblem, x, v):
    """`∇²f(x) v`, forward-over-reverse: no Hessian is formed."""
    return jax.jvp(problem.grad, (x,), (v,))[1]


class AbstractSAMSDE(AbstractOwnStateSDE):
    """What USAM's and SAM's SDEs share: the optimizer type, additive noise only, and which
    variant (`normalize`) each one models."""

    optimizer: eqx.AbstractVar[SAM]
    problem: eqx.AbstractVar[AbstractProblem]
    optimizer_type: ClassVar[type] = SAM
    form: ClassVar[str] = "default"
    normalize: eqx.AbstractClassVar[bool]

    @property
    def coupling_sign(self) -> int | None:
        return -1  # x: +√η (Σ^{1/2} + ...) dW, the optimizer: -η g(x + ρ ...)

    def __check_init__(self):
        what = "SAM" if self.normalize else "USAM"
        if self.optimizer.normalize != self.normalize:
            raise ValueError(
                f"normalize={self.optimizer.normalize}: {type(self).__name__} models "
                f"{what} (normalize={self.normalize}); use sl.sde_for(opt, problem)."
            )
        noise = self.problem.noise
        if not isinstance(noise, AbstractAdditiveNoise):
            raise NotImplementedError(
                f"The {what} SDE in sdelens needs additive noise, not {noise.label}: use "
                "form='moments' (the moment-matched SDE of any optimizer step)."
            )
        noise.require_finite_variance(what)

    @classmethod
    def models(cls, opt) -> bool:
        """Whether this SDE is the one of `opt` (SAM and USAM share the optimizer type)."""
        return isinstance(opt, SAM) and opt.normalize == cls.normalize

    @property
    def rho(self) -> float:
        return self.optimizer.rho

    def rest_state(self, x):
        return ParamState(x)


@final
class USAMSDE(AbstractSAMSDE):
    """USAM's SDE (Compagnoni et al. 2023; docs/math.md §11.3), on the clock `t = kη`:

        dX = -(I + ρ∇²f) ∇f dt + √η (I + ρ∇²f) Σ^{1/2} dW

    The drift is `-∇(f + (ρ/2)‖∇f‖²)`. With additive noise one USAM step is
    `-η ∇f(x + ρ(∇f + Z)) - η Z = -η (I + ρ∇²f)(∇f + Z) + O(ηρ²)`, so the drift and the
    diffusion are the step's mean and noise to first order in `ρ` (exact on a quadratic).
    The paper writes the diffusion covariance to first order in `ρ`,
    `η (Σ + ρ(∇²f Σ + Σ ∇²f))`; sdelens keeps the factor `(I + ρ∇²f) Σ^{1/2}`, whose
    covariance adds `η ρ² ∇²f Σ ∇²f`: the step's own covariance on a quadratic, and positive
    semidefinite for any `ρ`. Matrix-free: the Hessian acts by Hessian-vector products.
    Additive finite-variance noise only.
    """

    optimizer: SAM
    problem: AbstractProblem
    normalize: ClassVar[bool] = False

    def drift(self, t, y, args):
        grad = self.problem.grad(y.x)
        return ParamState(-(grad + self.rho * hvp(self.problem, y.x, grad)))

    def diffusion(self, t, y, args):
        root = self.problem.noise.cov_sqrt_at(self.problem, y.x)
        x, rho = y.x, self.rho

        def lifted(w):
            v = root.mv(w)
            return v + rho * hvp(self.problem, x, v)

        operator = lx.FunctionLinearOperator(lifted, root.in_structure())
        return embed_noise(operator, y, x=jnp.sqrt(self.lr))


@final
class SAMSDE(AbstractSAMSDE):
    """SAM's SDE (Compagnoni et al. 2023; docs/math.md §11.3), on the clock `t = kη`, with the
    normalisation by the stochastic gradient (`g/‖g‖`, as the optimizer runs it):

        dX = -(∇f + ρ ∇²f E[u]) dt + √η M^{1/2} dW,    u = (∇f + Z)/‖∇f + Z‖,
        M = Σ + ρ (C + Cᵀ) + ρ² ∇²f Cov(u) ∇²f,         C = E[Z uᵀ] ∇²f.

    With additive noise one SAM step is `-η (∇f + Z + ρ ∇²f u) + O(ηρ²)`: drift and diffusion are
    that step's mean and covariance (exact on a quadratic). The paper's drift is the same
    (`-∇f - ρ E[∇²f_γ ∇f_γ/‖∇f_γ‖]`, with `∇²f_γ = ∇²f` for additive noise); its diffusion keeps
    `Σ + ρ(Σ̃ + Σ̃ᵀ)`, first order in `ρ`; sdelens adds the `ρ²` term (the step's covariance on a
    quadratic, positive semidefinite by construction). Where `∇f + Z = 0`, `u = 0` (the optimizer
    does not perturb).

    **Monte Carlo.** `E[u]`, `C` and `Cov(u)` have no closed form: they are averages over
    `samples` fixed noise draws (`samples/2` draws from `jax.random.key(seed)` and their
    negatives, so that the draws have mean 0 exactly and `E[u] = 0` at a minimum), the same
    draws at every `x` (common random numbers: the drift is a smooth deterministic function of
    `x`, which `linearised_stationary` differentiates). `Σ` itself is exact. Each drift costs one
    Hessian-vector product, each diffusion `samples` of them and a dense `d × d` square root
    (`M` is formed: meant for small `d`).
    """

    optimizer: SAM
    problem: AbstractProblem
    samples: int = eqx.field(static=True, default=128)
    seed: int = eqx.field(static=True, default=0)
    normalize: ClassVar[bool] = True

    def __check_init__(self):
        if not (isinstance(self.samples, int) and self.samples >= 2 and self.samples % 2 == 0):
            raise ValueError(
                f"samples={self.samples!r} is invalid: an even whole number >= 2 is required."
            )

    def _draws(self, x):
        """The fixed noise draws `Z_j` (antithetic pairs) and `u_j = (∇f + Z_j)/‖∇f + Z_j‖`."""
        keys = jax.random.split(jax.random.key(self.seed), self.samples // 2)
        half = jax.vmap(lambda k: self.problem.noise.sample(k, x.shape))(keys).astype(x.dtype)
        z = jnp.concatenate([half, -half])
        shifted = self.problem.grad(x) + z
        norm = jnp.linalg.norm(shifted, axis=1, keepdims=True)
        positive = norm > 0
        u = jnp.where(positive, shifted / jnp.where(positive, norm, 1.0), 0.0)
        return z, u

    def drift(self, t, y, args):
        _, u = self._draws(y.x)
        grad = self.problem.grad(y.x)
        return ParamState(-(grad + self.rho * hvp(self.problem, y.x, jnp.mean(u, axis=0))))

    def diffusion(self, t, y, args):
        x, rho = y.x, self.rho
        z, u = self._draws(x)
        h = jax.vmap(lambda v: hvp(self.problem, x, v))(u - jnp.mean(u, axis=0))
        sqrt_sigma = self.problem.noise.cov_sqrt_at(self.problem, x).as_matrix()
        cross = h.T @ z / self.samples  # E[(∇²f (u - Eu)) Zᵀ]
        cov = (
            sqrt_sigma @ sqrt_sigma.T + rho * (cross + cross.T) + rho**2 * (h.T @ h) / self.samples
        )
        return embed_noise(psd_sqrt(0.5 * (cov + cov.T)), y, x=jnp.sqrt(self.lr))
