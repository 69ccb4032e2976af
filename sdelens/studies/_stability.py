"""Where Entropy-SGD is stable on a quadratic: the region in `(lr, gamma, inner_lr)` mapped by
running the optimizer, against the exact linear rate of docs/math.md §7.4 and its closed-form
boundary."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from .. import _check
from .._optimizers import EntropySGD
from .._problems import Quadratic
from .._simulate import check_key
from .._theory import entropy_sgd_rate
from ._common import Progress, say

__all__ = ["EntropyStability", "entropy_sgd_stability", "entropy_sgd_lr_max"]

# A point is "near the boundary" when the theory's dominant mode ends the horizon within this
# many nats of the threshold: a start point's share of that mode (random directions: ~1/√d)
# and the finite horizon can then tip the measured verdict either way.
HORIZON_BAND = 3.0


def _one_minus_c(h, gamma, inner_lr, inner_steps: int, alpha: float) -> np.ndarray:
    """`1 - c`, where `c x` is the inner chain's running average after `L` steps from
    `x' = μ = x` along an eigenvector with curvature `h` (broadcast over `h`, `gamma`,
    `inner_lr`):

        1 - c = (h/(h+γ)) (1 - βᴸ - α Σ_{i=1}^{L} β^{L-i} aⁱ),   a = 1 - η'(h+γ),  β = 1 - α,

    the geometric sum `α a (aᴸ - βᴸ)/(a - β)` summed term by term (no removable singularity at
    `a = β`). `|a| > 1` may overflow to ±inf or NaN: no learning rate is stable there."""
    h, gamma, inner_lr = np.broadcast_arrays(*(np.asarray(v, float) for v in (h, gamma, inner_lr)))
    a = 1.0 - inner_lr * (h + gamma)
    beta = 1.0 - alpha
    total = np.zeros_like(a)
    power = np.ones_like(a)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(1, inner_steps + 1):
            power = power * a
            total = total + beta ** (inner_steps - i) * power
        return (h / (h + gamma)) * (1.0 - beta**inner_steps - alpha * total)


def _gamma_out(gamma, gamma_in_outer_step: bool):
    return gamma if gamma_in_outer_step else np.ones_like(np.asarray(gamma, float))


def _radius(h, lr, gamma, inner_lr, inner_steps, alpha, gamma_in_outer_step) -> np.ndarray:
    """`max_h |r|`, `r = 1 - η γ_out (1 - c)`, broadcast over `lr`, `gamma`, `inner_lr`
    (NaN from an overflowing inner chain is returned as +inf: unstable)."""
    lr, gamma, inner_lr = np.broadcast_arrays(
        *(np.asarray(v, float) for v in (lr, gamma, inner_lr))
    )
    d = _one_minus_c(
        np.asarray(h, float), gamma[..., None], inner_lr[..., None], inner_steps, alpha
    )
    with np.errstate(over="ignore", invalid="ignore"):
        r = 1.0 - (lr * _gamma_out(gamma, gamma_in_outer_step))[..., None] * d
        out = np.max(np.abs(r), axis=-1)
    return np.where(np.isnan(out), np.inf, out)


def _curvatures(prob) -> np.ndarray:
    if not isinstance(prob, Quadratic):
        raise ValueError(
            f"prob={type(prob).__name__} is invalid: an sl.Quadratic is required (the rate "
            "and its boundary are exact for a linear gradient only)."
        )
    return prob.curvatures


def _hyper(inner_steps, alpha, gamma_in_outer_step) -> tuple[int, float, bool]:
    inner_steps = _check.positive_int("inner_steps", inner_steps)
    _check.in_interval("alpha", alpha, 0.0, 1.0, closed_high=True)
    if float(alpha) == 0.0:
        raise ValueError("alpha=0.0 is invalid: allowed range is (0, 1].")
    if not isinstance(gamma_in_outer_step, (bool, np.bool_)):
        raise ValueError(
            f"gamma_in_outer_step={gamma_in_outer_step!r} is invalid: True or False is required."
        )
    return inner_steps, float(alpha), bool(gamma_in_outer_step)


def entropy_sgd_lr_max(
    prob: Quadratic,
    gamma,
    inner_lr,
    *,
    inner_steps: int = 20,
    alpha: float = 0.75,
    gamma_in_outer_step: bool = True,
) -> np.ndarray:
    """The largest stable learning rate of Entropy-SGD's mean on a quadratic: where the spectral
    radius `max_h |r|` of `entropy_sgd_rate` crosses 1, in closed form (broadcast over `gamma`
    and `inner_lr`).

    Along an eigenvector with curvature `h`, `r = 1 - η γ_out D(h)` with (β = 1 - α,
    a = 1 - η'(h + γ), q = γ/(h + γ))

        D(h) = 1 - c = (1 - q) (1 - βᴸ - α a (aᴸ - βᴸ)/(a - β))     (a = β: α L aᴸ for the sum).

    `r` is affine in `η` and `r(0) = 1`, so `|r| < 1` holds exactly for `0 < η γ_out D(h) < 2`:

        lr_max(γ, η') = 2 / (γ_out · max_h D(h))     if D(h) > 0 for every h, else 0.

    `|a| < 1` implies `D(h) > 0` (each `1 - x'ᵢ/x = (1 - q)(1 - aⁱ) > 0`), and `L → ∞` gives
    `D → h/(h + γ)`, `lr_max → 2(h + γ)/(γ_out h)` at the largest `h` (for `γ_out = γ`,
    `2/γ + 2/h_max`). The theory's `stable` also needs the inner chain to contract,
    `|a| < 1` at `h_max`: `η' < 2/(h_max + γ)`, i.e. `γ < 2/η' - h_max` (a horizontal line in
    the `(lr, γ)` plane); this function returns the radius boundary alone.
    """
    h = _curvatures(prob)
    inner_steps, alpha, gamma_in_outer_step = _hyper(inner_steps, alpha, gamma_in_outer_step)
    for name, value in (("gamma", gamma), ("inner_lr", inner_lr)):
        _check.positive_finite(name, value)
    gamma, inner_lr = np.broadcast_arrays(np.asarray(gamma, float), np.asarray(inner_lr, float))
    d = _one_minus_c(h, gamma[..., None], inner_lr[..., None], inner_steps, alpha)
    ok = np.all(d > 0, axis=-1)  # NaN (an overflowing chain) is not > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        lr_max = 2.0 / (_gamma_out(gamma, gamma_in_outer_step) * np.max(d, axis=-1))
    return np.where(ok, lr_max, 0.0)


@dataclasses.dataclass(frozen=True, eq=False)
class EntropyStability:
    """Entropy-SGD's stability on a quadratic over a grid, from `entropy_sgd_stability`.

    Arrays over the grid have shape `(len(lrs), len(gammas), len(inner_lrs))`:

    - `spectral_radius`: the theory's `max_h |r|` (`entropy_sgd_rate(...).per_step`), the
      factor by which the mean's recursion grows or shrinks per outer step;
    - `inner_radius`: `max_h |a|`, the inner chain's factor per inner step;
    - `theory_stable`: `entropy_sgd_rate(...).stable` at every curvature (`|r| < 1`, `|a| < 1`);
    - `growth`: the measured growth factor per outer step `(|x_K - x*|/|x_0 - x*|)^{1/K}`,
      the largest over the start points (inf where the run became non-finite);
    - `last_growth`: the last step's factor `|x_K - x*|/|x_{K-1} - x*|` (largest over start
      points), which converges to the spectral radius much faster than the average;
    - `final_ratio`: `|x_K - x*|/|x_0 - x*|`, the largest over start points (may be inf);
    - `numeric_stable`: every start point's run stayed finite with `final_ratio ≤ threshold`;
    - `near_boundary`: `|K log ρ - log threshold| < HORIZON_BAND` (ρ the spectral radius): a
      finite horizon and a start point's small share of the dominant mode may tip the verdict.

    `lr_max` (`(len(gammas), len(inner_lrs))`) is `entropy_sgd_lr_max`, the closed-form
    boundary `|r| = 1`; `gamma_max` (`(len(inner_lrs),)`) the inner chain's bound
    `γ < 2/η' - h_max`. `curvatures`, `inner_steps`, `alpha`, `gamma_in_outer_step`, `steps`
    and `threshold` say what was run.
    """

    lrs: np.ndarray
    gammas: np.ndarray
    inner_lrs: np.ndarray
    curvatures: np.ndarray
    inner_steps: int
    alpha: float
    gamma_in_outer_step: bool
    steps: int
    threshold: float
    spectral_radius: np.ndarray
    inner_radius: np.ndarray
    theory_stable: np.ndarray
    growth: np.ndarray
    last_growth: np.ndarray
    final_ratio: np.ndarray
    numeric_stable: np.ndarray
    near_boundary: np.ndarray
    lr_max: np.ndarray
    gamma_max: np.ndarray

    @property
    def agree(self) -> np.ndarray:
        """Where the measured and the theory's verdicts agree."""
        return self.numeric_stable == self.theory_stable

    @property
    def agreement(self) -> float:
        """The fraction of grid points where they agree."""
        return float(self.agree.mean())

    @property
    def agreement_away_from_boundary(self) -> float:
        """The fraction of agreement over the points not `near_boundary` (NaN if none)."""
        away = ~self.near_boundary
        return float(self.agree[away].mean()) if away.any() else float("nan")

    def spectral_radius_at(self, lr, gamma, inner_lr) -> np.ndarray:
        """The theory's `max_h |r|` at any `(lr, gamma, inner_lr)` (broadcast), in closed form
        (see `entropy_sgd_lr_max`): what the figure contours at 1."""
        return _radius(
            self.curvatures,
            lr,
            gamma,
            inner_lr,
            self.inner_steps,
            self.alpha,
            self.gamma_in_outer_step,
        )

    def disagreements(self) -> list[dict]:
        """Every grid point where the verdicts differ, with why:

        - `"inner chain"`: the theory says unstable only because the inner chain does not
          contract (`|a| ≥ 1`), while the outer recursion does (`|r| < 1`): the mean stays
          bounded although each outer step's chain grows before it is restarted;
        - `"finite horizon"`: `near_boundary`, `|r| ≈ 1` on this horizon;
        - `"unexplained"`: neither (a bug, or float precision)."""
        out = []
        for i, j, k in zip(*np.nonzero(~self.agree), strict=True):
            radius = float(self.spectral_radius[i, j, k])
            if radius < 1.0 and self.inner_radius[i, j, k] >= 1.0:
                reason = "inner chain"
            elif self.near_boundary[i, j, k]:
                reason = "finite horizon"
            else:
                reason = "unexplained"
            out.append(
                {
                    "lr": float(self.lrs[i]),
                    "gamma": float(self.gammas[j]),
                    "inner_lr": float(self.inner_lrs[k]),
                    "spectral_radius": radius,
                    "inner_radius": float(self.inner_radius[i, j, k]),
                    "growth": float(self.growth[i, j, k]),
                    "theory_stable": bool(self.theory_stable[i, j, k]),
                    "numeric_stable": bool(self.numeric_stable[i, j, k]),
                    "reason": reason,
                }
            )
        return out

    def metrics(self) -> dict:
        """JSON-ready numbers: the grid, the agreement, the disagreements, the boundary, and the
        largest relative gaps `|growth/ρ - 1|`, `|last_growth/ρ - 1|` between the measured
        growth and the spectral radius `ρ` at finite points not near the boundary."""
        finite = np.isfinite(self.growth) & ~self.near_boundary & (self.spectral_radius > 0)
        gap = np.abs(self.growth / self.spectral_radius - 1.0)[finite]
        last_gap = np.abs(self.last_growth / self.spectral_radius - 1.0)[finite]
        return {
            "lrs": self.lrs.tolist(),
            "gammas": self.gammas.tolist(),
            "inner_lrs": self.inner_lrs.tolist(),
            "curvatures": self.curvatures.tolist(),
            "inner_steps": self.inner_steps,
            "alpha": self.alpha,
            "gamma_in_outer_step": self.gamma_in_outer_step,
            "steps": self.steps,
            "threshold": self.threshold,
            "n_points": int(self.agree.size),
            "agreement": self.agreement,
            "agreement_away_from_boundary": self.agreement_away_from_boundary,
            "n_near_boundary": int(self.near_boundary.sum()),
            "disagreements": self.disagreements(),
            "max_rel_growth_gap": float(gap.max()) if gap.size else None,
            "max_rel_last_growth_gap": float(last_gap.max()) if last_gap.size else None,
            "lr_max": self.lr_max.tolist(),
            "gamma_max": self.gamma_max.tolist(),
        }


def _grid(name: str, values) -> np.ndarray:
    if values is None or isinstance(values, (str, bytes)):
        raise ValueError(f"{name}={values!r} is invalid: a sequence of numbers > 0 is required.")
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=float))
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}={values!r} is invalid: a sequence of numbers > 0 is required."
        ) from None
    if arr.ndim != 1:
        raise ValueError(f"{name} has shape {arr.shape}: a 1-D sequence of values is required.")
    if arr.size == 0:
        raise ValueError(f"{name}=[] is invalid: at least one value is required.")
    _check.positive_finite(name, arr)
    if np.any(np.diff(arr) <= 0):
        raise ValueError(f"{name}={_check.short(arr)} is invalid: values must be increasing.")
    return arr


def _start_points(prob: Quadratic, x0, paths, key) -> jax.Array:
    """Unit start offsets `(x0 - x*)/|x0 - x*|`, `(n, d)`: the given ones or `paths` random
    directions drawn from `key`."""
    d = prob.dim
    if x0 is None:
        paths = 4 if paths is None else _check.positive_int("paths", paths)
        z = jax.random.normal(jax.random.fold_in(key, 0), (paths, d), jnp.result_type(float))
    else:
        x = prob.check_x0(x0)
        x = x[None] if x.ndim == 1 else x
        if paths is not None and _check.positive_int("paths", paths) != x.shape[0]:
            raise ValueError(
                f"paths={paths} is invalid with x0 of shape {tuple(x.shape)}: leave paths=None "
                f"or pass paths={x.shape[0]} (one path per start point)."
            )
        z = x - prob.x_star
    norm = jnp.linalg.norm(z, axis=1, keepdims=True)
    if np.any(np.asarray(norm) == 0.0):
        raise ValueError("x0 is invalid: a start point at the minimum x* has nothing to grow.")
    return z / norm


@eqx.filter_jit
def _log_growth(template, centred, grid, starts, key, steps):
    """`(N, P, 2)`: per grid point `(lr, γ, η')` and start point, `log(|x_K|/|x_0|)` and the
    last step's `log(|x_K|/|x_{K-1}|)`, running the optimizer's own update on the quadratic
    centred at its minimum. The offset is renormalised to unit length after every step (and the
    optimizer's velocity with it): the update is linear in `x - x*` (no noise, T = 0), so this is
    exact, and neither a fast contraction underflows nor a growth overflows."""

    def one_point(point):
        opt = eqx.tree_at(lambda o: (o.lr, o.gamma, o.inner_lr), template, tuple(point))
        tx = opt.to_optax()

        def grad_fn(x, _key):
            return centred.grad(x)

        def one_path(e0):
            def step(carry, k):
                e, state, total, _ = carry
                updates, state = tx.update(
                    centred.grad(e), state, e, grad_fn=grad_fn, key=jax.random.fold_in(key, k)
                )
                e = e + updates
                n = jnp.linalg.norm(e)
                scale = jnp.where(n > 0, n, 1.0)
                state = state._replace(velocity=state.velocity / scale)
                return (e / scale, state, total + jnp.log(n), jnp.log(n)), None

            zero = jnp.zeros((), e0.dtype)
            init = (e0, tx.init(e0), zero, zero)
            (_, _, total, last), _ = jax.lax.scan(step, init, jnp.arange(steps))
            return jnp.stack([total, last])

        return jax.vmap(one_path)(starts)

    return jax.vmap(one_point)(grid)


def entropy_sgd_stability(
    prob: Quadratic,
    *,
    lrs: Sequence[float],
    gammas: Sequence[float],
    inner_lrs: Sequence[float],
    inner_steps: int = 20,
    alpha: float = 0.75,
    gamma_in_outer_step: bool = True,
    steps: int = 1000,
    paths: int | None = None,
    x0=None,
    key: PRNGKeyArray,
    threshold: float = 1.0,
    progress: Progress = None,
) -> EntropyStability:
    """The stability region of Entropy-SGD (`momentum = 0`, SGLD inner chain, no scoping) on a
    quadratic over the grid `lrs × gammas × inner_lrs`, measured and in theory (docs/math.md
    §7.4, "Rate").

    **Theory.** At every grid point `entropy_sgd_rate` gives `r` and `a` per curvature; the
    point is stable when `|r| < 1` and `|a| < 1` at every curvature, and
    `spectral_radius = max_h |r|`. In closed form (`entropy_sgd_lr_max`), with
    `D(h) = (h/(h+γ)) (1 - βᴸ - α a (aᴸ - βᴸ)/(a - β))`, `β = 1 - α`, `a = 1 - η'(h+γ)`:

        stable  ⇔  η < lr_max = 2/(γ_out max_h D(h))   and   γ < 2/η' - h_max,

    the second being the inner chain's `η' < 2/(h_max + γ)` (`γ_out = γ`, or 1 with
    `gamma_in_outer_step=False`).

    **Measurement.** The real `EntropySGD` update (`to_optax()`, temperature 0, exact gradients)
    runs `steps` outer steps from each start point at every grid point: one jitted call,
    `vmap` over grid points and start points, `lax.scan` over steps. Without noise the optimizer
    *is* the mean's linear recursion, and it acts on `x - x*` alone, so the run is centred at
    the minimum and renormalised after each step (exact; no under- or overflow). Start points
    are `x0` (`(d,)` or `(n, d)`) or, by default, `paths` (4) random directions from `key`; the
    largest growth over them is reported, as a random direction excites every mode. A point is
    numerically unstable when some run ends with `|x_K - x*| > threshold · |x_0 - x*|` or
    non-finite. `H` is symmetric, so the recursion has no transient growth and `threshold = 1`
    separates `|r| < 1` from `|r| > 1` up to the horizon: points with `|r| ≈ 1` are flagged
    `near_boundary` and may disagree (`EntropyStability.disagreements`), as may points with
    `|r| < 1 ≤ |a|`, where the theory's inner-chain condition is stricter than the mean's
    boundedness.

    Every argument is checked before anything runs; `key` (required) draws the start directions
    (and the inner chain's noise, which temperature 0 multiplies by zero).
    """
    h = _curvatures(prob)
    lrs, gammas, inner_lrs = (
        _grid(n, v) for n, v in (("lrs", lrs), ("gammas", gammas), ("inner_lrs", inner_lrs))
    )
    inner_steps, alpha, gamma_in_outer_step = _hyper(inner_steps, alpha, gamma_in_outer_step)
    steps = _check.positive_int("steps", steps)
    _check.positive_finite("threshold", threshold, scalar=True)
    threshold = float(threshold)
    key = check_key(key)
    starts = _start_points(prob, x0, paths, key)

    shape = (lrs.size, gammas.size, inner_lrs.size)
    say(progress, f"theory at {np.prod(shape)} grid points ({' x '.join(map(str, shape))})")
    template = EntropySGD(
        lr=lrs[0],
        gamma=gammas[0],
        inner_lr=inner_lrs[0],
        inner_steps=inner_steps,
        temperature=0.0,
        alpha=alpha,
        gamma_in_outer_step=gamma_in_outer_step,
    )
    radius, inner, stable = np.zeros(shape), np.zeros(shape), np.zeros(shape, bool)
    for (i, lr), (j, g), (k, il) in itertools.product(
        enumerate(lrs), enumerate(gammas), enumerate(inner_lrs)
    ):
        rate = entropy_sgd_rate(template.replace(lr=lr, gamma=g, inner_lr=il), prob)
        radius[i, j, k] = np.max(np.abs(rate.per_step))
        inner[i, j, k] = np.max(np.abs(rate.inner_factor))
        stable[i, j, k] = bool(np.all(rate.stable))

    say(progress, f"Entropy-SGD: {steps} outer steps x {starts.shape[0]} start points per point")
    dtype = starts.dtype
    mesh = np.stack(np.meshgrid(lrs, gammas, inner_lrs, indexing="ij"), axis=-1).reshape(-1, 3)
    centred = Quadratic(h=prob.h, noise=prob.noise)  # the same H, its minimum at 0
    logs = np.asarray(
        _log_growth(template, centred, jnp.asarray(mesh, dtype), starts, key, steps),
        dtype=float,
    )
    total, last = logs[..., 0], logs[..., 1]
    finite = np.all(np.isfinite(total) | (total == -np.inf), axis=1)  # -inf: exactly at x*
    with np.errstate(over="ignore"):
        growth = np.where(finite, np.exp(np.max(total, axis=1) / steps), np.inf).reshape(shape)
        last_growth = np.where(finite, np.exp(np.max(last, axis=1)), np.inf).reshape(shape)
        final_ratio = np.where(finite, np.exp(np.max(total, axis=1)), np.inf).reshape(shape)
    numeric_stable = (finite & np.all(total <= np.log(threshold), axis=1)).reshape(shape)
    with np.errstate(divide="ignore"):
        margin = steps * np.log(radius) - np.log(threshold)
    near = np.abs(margin) < HORIZON_BAND
    lr_max = entropy_sgd_lr_max(
        prob,
        gammas[:, None],
        inner_lrs[None, :],
        inner_steps=inner_steps,
        alpha=alpha,
        gamma_in_outer_step=gamma_in_outer_step,
    )
    return EntropyStability(
        lrs=lrs,
        gammas=gammas,
        inner_lrs=inner_lrs,
        curvatures=h,
        inner_steps=inner_steps,
        alpha=alpha,
        gamma_in_outer_step=gamma_in_outer_step,
        steps=steps,
        threshold=threshold,
        spectral_radius=radius,
        inner_radius=inner,
        theory_stable=stable,
        growth=growth,
        last_growth=last_growth,
        final_ratio=final_ratio,
        numeric_stable=numeric_stable,
        near_boundary=near,
        lr_max=lr_max,
        gamma_max=2.0 / inner_lrs - h[-1],
    )
