"""Gaussian variational inference beside local entropy and smoothing: which of two minima each
prefers, and how a learned variational width relates to the curvature (docs/math.md §7.8)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import PRNGKeyArray

from .. import _check, flatness
from .._problems import AbstractProblem, network_problem
from .._simulate import check_key
from .._stats import loglog_slope
from ._common import Progress, say
from ._entropy import PREFERENCE_GAMMAS as GAMMAS, PREFERENCE_TEMPERATURES as TEMPERATURES
from ._preference import Preference, minimum_preference

__all__ = [
    "VariationalPreference",
    "VariationalNetwork",
    "VariationalStudy",
    "variational_preference",
    "variational_network",
    "variational_study",
]

BASINS = ("narrow", "wide")
# A fit "holds" its basin when its mean stays nearer its start than the other minimum and the
# other minimum is more than this many standard deviations away on every axis: beyond, q spans
# both wells and ranks neither.
HELD_STDS = 3.0
# ... and it reached a stationary point: |∇| ≤ this fraction of T (VariationalFit.grad_norm).
HELD_GRAD = 1e-2
# The small network of the study: breast cancer, 64 training examples, one hidden layer of 4
# tanh units (134 parameters): a dense Hessian per draw stays cheap.
NETWORK = {"name": "mlp-breast-cancer", "train_size": 64, "width": 4, "depth": 1}


def _labels(gap) -> np.ndarray:
    """`"wide"` where `gap = wide - narrow < 0`, `"narrow"` where `> 0`, `"none"` where NaN."""
    gap = np.asarray(gap, float)
    return np.where(np.isnan(gap), "none", np.where(gap < 0, "wide", "narrow"))


@dataclasses.dataclass(frozen=True, eq=False)
class VariationalPreference:
    """Which of two minima each objective prefers on a grid of temperatures `T` and couplings
    `γ`, and the fitted Gaussians (`variational_preference`).

    `preference`: local entropy (quadrature) and smoothing at width `√(T/γ)`
    (`minimum_preference`). The fits are indexed `[i, j, b]`: `temperatures[i]`,
    `fit_gammas[j]` (`0`, plain variational inference, then `gammas`: Gaussian local entropy),
    `b` = 0 started at the narrow minimum, 1 at the wide one; `value`, `mean`, `std`,
    `grad_norm` are those of `flatness.fit_variational`, `expected_curvature` is
    `E_q[∂ᵢ²f]` at the fitted `q` (quadrature), `held` says the fit stayed in its basin at a
    stationary point (else its value ranks nothing: the gaps are NaN there). `curvature[b]` is
    the Hessian diagonal at minimum `b`."""

    dim: int
    temperatures: np.ndarray
    gammas: np.ndarray
    preference: Preference
    curvature: np.ndarray
    value: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    grad_norm: np.ndarray
    expected_curvature: np.ndarray
    held: np.ndarray

    @property
    def fit_gammas(self) -> np.ndarray:
        """`(0, *gammas)`: the couplings of the fits (0: plain variational inference)."""
        return np.concatenate([[0.0], self.gammas])

    @property
    def _fit_gap(self) -> np.ndarray:
        both = self.held[..., 0] & self.held[..., 1]
        return np.where(both, self.value[..., 1] - self.value[..., 0], np.nan)

    @property
    def gaussian_gap(self) -> np.ndarray:
        """`(T, γ)`: Gaussian local entropy at the wide minimum minus at the narrow one (NaN
        where a fit left its basin)."""
        return self._fit_gap[:, 1:]

    @property
    def vi_gap(self) -> np.ndarray:
        """`(T,)`: plain variational inference (`γ = 0`), wide minus narrow."""
        return self._fit_gap[:, 0]

    @property
    def predicted_variance(self) -> np.ndarray:
        """`T/(h + γ)`, `h` the curvature at the fit's minimum: the fit's variance on a
        quadratic, shaped as `std`."""
        t = self.temperatures[:, None, None, None]
        return t / (self.curvature[None, None] + self.fit_gammas[None, :, None, None])

    @property
    def self_consistent_variance(self) -> np.ndarray:
        """`T/(E_q[∂ᵢ²f] + γ)`: the stationarity condition of any fit, shaped as `std`."""
        t = self.temperatures[:, None, None, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = t / (self.expected_curvature + self.fit_gammas[None, :, None, None])
        return np.where(out > 0, out, np.nan)

    def preferred(self) -> dict[str, np.ndarray]:
        """The preferred minimum (`"narrow"`, `"wide"`, `"none"`: a fit left its basin) of each
        objective: `(T, γ)` arrays, `(T,)` for plain variational inference."""
        return {
            "local_entropy": _labels(self.preference.entropy_gap),
            "smoothing": _labels(self.preference.smoothing_gap),
            "gaussian_local_entropy": _labels(self.gaussian_gap),
            "variational_inference": _labels(self.vi_gap),
        }

    def flip_temperature(self, objective: str, gamma: float | None = None) -> float:
        """The temperature where `objective` (`"local_entropy"`, `"smoothing"`,
        `"gaussian_local_entropy"` or `"variational_inference"`) first prefers the wide minimum
        at coupling `gamma` (one of `gammas`; not for `"variational_inference"`): the zero of
        the gap, linearly interpolated in `log T` between the two grid temperatures around the
        first sign change from narrow to wide. NaN if the grid holds no such change."""
        gaps = {
            "local_entropy": self.preference.entropy_gap,
            "smoothing": self.preference.smoothing_gap,
            "gaussian_local_entropy": self.gaussian_gap,
        }
        _check.choice("objective", objective, (*gaps, "variational_inference"))
        if objective == "variational_inference":
            gap = self.vi_gap
        else:
            match = np.nonzero(np.isclose(self.gammas, float(gamma if gamma is not None else -1)))
            if match[0].size == 0:
                raise ValueError(
                    f"gamma={gamma!r} is invalid: choose one of {_check.short(self.gammas)}."
                )
            gap = gaps[objective][:, match[0][0]]
        log_t = np.log(self.temperatures)
        for i in range(gap.size - 1):
            if gap[i] > 0 > gap[i + 1]:
                fraction = gap[i] / (gap[i] - gap[i + 1])
                return float(np.exp(log_t[i] + fraction * (log_t[i + 1] - log_t[i])))
        return float("nan")

    def metrics(self) -> dict:
        preferred = {k: v.tolist() for k, v in self.preferred().items()}
        ratio = self.std**2 / self.predicted_variance
        return {
            "dim": self.dim,
            "temperatures": self.temperatures.tolist(),
            "gammas": self.gammas.tolist(),
            "fit_gammas": self.fit_gammas.tolist(),
            "curvature_narrow": self.curvature[0].tolist(),
            "curvature_wide": self.curvature[1].tolist(),
            **self.preference.metrics(),
            "gaussian_wide_minus_narrow": self.gaussian_gap.tolist(),
            "vi_wide_minus_narrow": self.vi_gap.tolist(),
            "preferred": preferred,
            "fit_value": self.value.tolist(),
            "fit_std": self.std.tolist(),
            "fit_held": self.held.tolist(),
            "variance_over_curvature_prediction": np.where(self.held[..., None], ratio, np.nan)
            .max(axis=-1)
            .tolist(),
            "flip_temperature": {
                "variational_inference": self.flip_temperature("variational_inference"),
                **{
                    name: {f"{g:g}": self.flip_temperature(name, g) for g in self.gammas}
                    for name in ("local_entropy", "smoothing", "gaussian_local_entropy")
                },
            },
        }


def _point(x):
    """`x` as a floating-point array of at least one dimension, in JAX's default precision."""
    x = jnp.atleast_1d(jnp.asarray(x))
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return x
    return x.astype(jax.dtypes.canonicalize_dtype(jnp.float64))


def _basin_held(fit, start, other, temperature) -> bool:
    distance = float(jnp.linalg.norm(other - start))
    return bool(
        jnp.linalg.norm(fit.mean - start) < 0.5 * distance
        and jnp.max(fit.std) * HELD_STDS < distance
        and fit.grad_norm <= HELD_GRAD * temperature
    )


def variational_preference(
    loss,
    narrow,
    wide,
    temperatures: Sequence[float] = TEMPERATURES,
    gammas: Sequence[float] = GAMMAS,
    *,
    n_steps: int = 1000,
    lr: float = 0.05,
    progress: Progress = None,
) -> VariationalPreference:
    """Which of the minima `narrow` and `wide` of a 1-D or 2-D loss each objective prefers over
    a grid of temperatures and couplings (docs/math.md §7.8): local entropy and smoothing at
    width `√(T/γ)` (`minimum_preference`, quadrature), Gaussian local entropy (`γ > 0`) and
    plain variational inference (`γ = 0`), each fitted by `flatness.fit_variational`
    (Gauss–Hermite quadrature, deterministic) from each minimum with a tenth of the
    quadratic prediction `√(T/(h + γ))` as the start width (`h` the curvature there).

    A fit that leaves its basin (its mean nearer the other minimum, or the other minimum
    within `3σ`) or does not reach a stationary point (`grad_norm > 0.01 T`) ranks nothing:
    its gap is NaN and the objective prefers "none" there. Plain variational inference on a
    loss that flattens at infinity has such cells: `e^{-f/T}` cannot be normalised, and above a
    temperature a basin holds no Gaussian (`σ` grows without limit).
    """
    narrow, wide = (_point(x) for x in (narrow, wide))
    if narrow.ndim != 1 or narrow.shape != wide.shape or narrow.shape[0] > 2:
        raise ValueError(
            f"narrow and wide have shapes {narrow.shape} and {wide.shape}: two points of one "
            "dimension d <= 2 are required (the objectives are integrated on grids)."
        )
    temperatures, gammas = np.asarray(temperatures, float), np.asarray(gammas, float)
    for name, values in (("temperatures", temperatures), ("gammas", gammas)):
        if values.ndim != 1:
            raise ValueError(f"{name} has shape {values.shape}: a list of numbers is required.")
        _check.positive_finite(name, values)
    _check.positive_int("n_steps", n_steps)
    _check.positive_finite("lr", lr, scalar=True)
    starts = (narrow, wide)
    curvature = np.stack([np.diag(flatness.dense_hessian(loss, x)) for x in starts])
    for name, h in zip(BASINS, curvature, strict=True):
        if not np.all(h > 0):
            raise ValueError(
                f"{name} has Hessian diagonal {_check.short(h)}: a minimum (curvature > 0 on "
                "every axis) is required."
            )
    say(progress, f"{narrow.shape[0]}-D: local entropy and smoothing by quadrature")
    preference = minimum_preference(loss, narrow, wide, temperatures, gammas)
    fit_gammas = np.concatenate([[0.0], gammas])
    shape = (temperatures.size, fit_gammas.size, 2)
    d = narrow.shape[0]
    value, grad_norm = np.full(shape, np.nan), np.full(shape, np.nan)
    mean, std, expected = (np.full((*shape, d), np.nan) for _ in range(3))
    held = np.zeros(shape, bool)
    say(progress, f"{narrow.shape[0]}-D: {2 * temperatures.size * fit_gammas.size} Gaussian fits")
    for i, t in enumerate(temperatures):
        for j, g in enumerate(fit_gammas):
            for b, start in enumerate(starts):
                # from a tenth of the quadratic prediction: σ grows into its basin's
                # optimum, where a start wider than the basin would leave it at once
                std0 = 0.1 * np.sqrt(t / (curvature[b] + g))
                fit = flatness.fit_variational(
                    loss, start, std0, t, gamma=g, n_steps=n_steps, lr=lr
                )
                value[i, j, b], grad_norm[i, j, b] = float(fit.value), float(fit.grad_norm)
                mean[i, j, b], std[i, j, b] = fit.mean, fit.std
                expected[i, j, b] = flatness.expected_hessian_diagonal(loss, fit.mean, fit.std)[0]
                held[i, j, b] = _basin_held(fit, start, starts[1 - b], t)
    return VariationalPreference(
        d,
        temperatures,
        gammas,
        preference,
        curvature,
        value,
        mean,
        std,
        grad_norm,
        expected,
        held,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class VariationalNetwork:
    """Variational inference at a trained point of a network (`variational_network`).

    The posterior is `e^{-f_λ/T}`, `f_λ = f + (λ/2)|x|²` (`λ` = `weight_decay`, a Gaussian
    prior); `trained` is the minimiser of `f_λ` reached by Adam, `fit` the fitted
    `q = N(m, diag s²)`, `expected_curvature` `E_q[∂ᵢ²f_λ]` (Monte Carlo, standard error
    `expected_curvature_se`) and `curvature_at_mean` `∂ᵢ²f_λ(m)`. Coordinates where
    `E_q[∂ᵢ²f_λ] + γ ≤ 0` (no stationary width) are left out of the statistics."""

    name: str
    temperature: float
    gamma: float
    weight_decay: float
    trained: np.ndarray
    fit: flatness.VariationalFit
    expected_curvature: np.ndarray
    expected_curvature_se: np.ndarray
    curvature_at_mean: np.ndarray
    train_loss: dict[str, float]

    @property
    def variance(self) -> np.ndarray:
        """The learned `sᵢ²`."""
        return np.asarray(self.fit.std) ** 2

    @property
    def predicted_variance(self) -> np.ndarray:
        """`T/(E_q[∂ᵢ²f_λ] + γ)` (NaN where not positive): the stationarity condition."""
        return self._over(self.expected_curvature)

    @property
    def variance_at_mean(self) -> np.ndarray:
        """`T/(∂ᵢ²f_λ(m) + γ)` (NaN where not positive): the curvature at the mean alone."""
        return self._over(self.curvature_at_mean)

    def _over(self, curvature) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = self.temperature / (np.asarray(curvature) + self.gamma)
        return np.where(out > 0, out, np.nan)

    def agreement(self, prediction: str = "expected") -> dict[str, float]:
        """How `sᵢ²` follows `T/(E_q[∂ᵢ²f_λ] + γ)` (`prediction="expected"`) or
        `T/(∂ᵢ²f_λ(m) + γ)` (`"at_mean"`) over coordinates: correlation of the logarithms,
        log-log slope (1 if `s²` is proportional), median ratio, the share within a factor 2,
        and the count used. NaN with fewer than 2 usable coordinates."""
        _check.choice("prediction", prediction, ("expected", "at_mean"))
        pred = self.predicted_variance if prediction == "expected" else self.variance_at_mean
        ok = np.isfinite(pred) & np.isfinite(self.variance) & (self.variance > 0)
        out = {"count": int(ok.sum())}
        if out["count"] < 2 or np.ptp(np.log(pred[ok])) == 0:
            nan = float("nan")
            return {
                **out,
                "log_correlation": nan,
                "loglog_slope": nan,
                "median_ratio": nan,
                "within_factor_2": nan,
            }
        log_ratio = np.log(self.variance[ok] / pred[ok])
        return {
            **out,
            "log_correlation": float(
                np.corrcoef(np.log(pred[ok]), np.log(self.variance[ok]))[0, 1]
            ),
            "loglog_slope": loglog_slope(pred[ok], self.variance[ok]),
            "median_ratio": float(np.exp(np.median(log_ratio))),
            "within_factor_2": float(np.mean(np.abs(log_ratio) < np.log(2.0))),
        }

    def metrics(self) -> dict:
        return {
            "problem": self.name,
            "temperature": self.temperature,
            "gamma": self.gamma,
            "weight_decay": self.weight_decay,
            "dim": int(self.trained.shape[0]),
            "fit_value": float(self.fit.value),
            "fit_std_error": float(self.fit.std_error),
            "fit_grad_norm_over_t": float(self.fit.grad_norm) / self.temperature,
            "mean_shift": float(np.linalg.norm(np.asarray(self.fit.mean) - self.trained)),
            "train_loss": self.train_loss,
            "std_range": [float(np.min(self.fit.std)), float(np.max(self.fit.std))],
            "vs_expected_curvature": self.agreement("expected"),
            "vs_curvature_at_mean": self.agreement("at_mean"),
        }


class _WithWeightDecay(eqx.Module):
    """`f(x) + (λ/2)|x|²` as a pytree: one compilation serves every call on one problem."""

    problem: AbstractProblem
    weight_decay: float

    def __call__(self, x):
        return self.problem.loss(x) + 0.5 * self.weight_decay * jnp.sum(x**2)


@eqx.filter_jit
def _losses(loss, xs):
    """`loss` at each row of `xs`, in one compiled call (eagerly, a network compiles op by op)."""
    return jax.vmap(loss)(xs)


@eqx.filter_jit
def _minimise(loss, x0, n_steps: int, lr: float):
    """Full-batch Adam with a cosine decay on `loss` from `x0`, one `lax.scan`."""
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, n_steps))
    grad = jax.grad(loss)

    def step(carry, _):
        x, state = carry
        updates, state = optimizer.update(grad(x), state, x)
        return (optax.apply_updates(x, updates), state), None

    (x, _), _ = jax.lax.scan(step, (x0, optimizer.init(x0)), None, length=n_steps)
    return x


def variational_network(
    problem: AbstractProblem,
    *,
    key: PRNGKeyArray,
    temperature: float = 1e-3,
    gamma: float = 0.0,
    weight_decay: float = 1e-2,
    train_steps: int = 1000,
    n_steps: int = 500,
    lr: float = 0.1,
    n_samples: int = 128,
    n_hessian_samples: int = 64,
) -> VariationalNetwork:
    """Variational inference at a trained point of `problem` (a network, or any problem with an
    `x0`), and the learned widths against the curvature (docs/math.md §7.8).

    The posterior is `e^{-f_λ/T}` with `f_λ = f + (λ/2)|x|²`: the weight decay `λ` is a
    Gaussian prior, without which a classifier's loss flattens at infinity and variational
    inference diverges along its flat directions (`σ → ∞`). `f_λ` is minimised from
    `problem.x0` by full-batch Adam (`train_steps`, lr `1e-2` with a cosine decay); from there
    `flatness.fit_variational` fits `q` (`gamma`: 0 plain variational inference, `> 0`
    Gaussian local entropy) on `n_samples` fixed draws, starting at the prior width
    `√(T/(λ + γ))`. `E_q[∂ᵢ²f_λ]` is then estimated on `n_hessian_samples` fresh draws (a
    dense Hessian each: small networks), and the learned `sᵢ²` are compared with
    `T/(E_q[∂ᵢ²f_λ] + γ)`, which they equal at a stationary point of the exact objective (Stein's
    lemma), and with `T/(∂ᵢ²f_λ(m) + γ)`, the curvature at the mean alone. `key` (required)
    draws both sets of samples.
    """
    key = check_key(key)
    _check.positive_finite("temperature", temperature, scalar=True)
    _check.positive_finite("gamma", gamma, allow_zero=True, scalar=True)
    _check.positive_finite("weight_decay", weight_decay, scalar=True)
    train_steps = _check.positive_int("train_steps", train_steps)
    _check.positive_int("n_steps", n_steps)
    _check.positive_finite("lr", lr, scalar=True)
    for name, value in (("n_samples", n_samples), ("n_hessian_samples", n_hessian_samples)):
        if _check.positive_int(name, value) < 4:
            raise ValueError(f"{name}={value!r} is invalid: must be an integer >= 4.")
    if not isinstance(problem, AbstractProblem) or getattr(problem, "x0", None) is None:
        raise ValueError(
            f"problem={problem!r} is invalid: a problem with a start point x0 (e.g. "
            "sl.network_problem(...)) is required."
        )

    loss = _WithWeightDecay(problem, float(weight_decay))
    trained = _minimise(loss, jnp.asarray(problem.x0), train_steps, 1e-2)
    k_fit, k_hessian = jax.random.split(key)
    std0 = float(np.sqrt(temperature / (weight_decay + gamma)))
    fit = flatness.fit_variational(
        loss,
        trained,
        std0,
        temperature,
        gamma=gamma,
        key=k_fit,
        n_steps=n_steps,
        lr=lr,
        n_samples=n_samples,
    )
    expected, expected_se = flatness.expected_hessian_diagonal(
        loss, fit.mean, fit.std, key=k_hessian, n_samples=n_hessian_samples
    )
    at_mean = jnp.diag(flatness.dense_hessian(loss, fit.mean))
    losses = _losses(problem.loss, jnp.stack([trained, fit.mean]))
    train_loss = {"trained": float(losses[0]), "variational_mean": float(losses[1])}
    return VariationalNetwork(
        getattr(problem, "name", type(problem).__name__),
        float(temperature),
        float(gamma),
        float(weight_decay),
        np.asarray(trained),
        fit,
        np.asarray(expected),
        np.asarray(expected_se),
        np.asarray(at_mean),
        train_loss,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class VariationalStudy:
    """What `variational_study` measured: `landscapes` (dimension → `VariationalPreference` on
    `flatness.landscape(dim)`) and `network` (a `VariationalNetwork`, or None)."""

    landscapes: dict[int, VariationalPreference]
    network: VariationalNetwork | None

    def metrics(self) -> dict:
        out = {f"landscape_{d}d": r.metrics() for d, r in self.landscapes.items()}
        if self.network is not None:
            out["network"] = self.network.metrics()
        return out


def variational_study(
    temperatures: Sequence[float] = TEMPERATURES,
    gammas: Sequence[float] = GAMMAS,
    *,
    key: PRNGKeyArray,
    dims: Sequence[int] = (1, 2),
    network: bool = True,
    n_steps: int = 1000,
    train_size: int = NETWORK["train_size"],
    progress: Progress = None,
) -> VariationalStudy:
    """Gaussian variational inference beside local entropy and smoothing (docs/math.md §7.8):
    `variational_preference` on `flatness.landscape(dim)` for each of `dims`, then, if
    `network`, `variational_network` on a small MLP (breast cancer, `train_size` examples, one
    hidden layer of 4 tanh units), initialised and sampled from `key` (required)."""
    key = check_key(key)
    dims = [_check.positive_int("dims", d) for d in dims]
    for d in dims:
        if d > 2:
            raise ValueError(f"dims={dims!r} is invalid: landscapes of dimension 1 or 2 only.")
    train_size = _check.positive_int("train_size", train_size)
    landscapes = {}
    for d in dims:
        loss, narrow, wide = flatness.landscape(d)
        landscapes[d] = variational_preference(
            loss, narrow, wide, temperatures, gammas, n_steps=n_steps, progress=progress
        )
    result = None
    if network:
        k_init, k_fit = jax.random.split(key)
        options = {k: v for k, v in NETWORK.items() if k not in ("name", "train_size")}
        problem = network_problem(NETWORK["name"], key=k_init, train_size=train_size, **options)
        say(progress, f"variational inference on {problem.name} ({problem.dim} parameters)")
        result = variational_network(problem, key=k_fit)
    return VariationalStudy(landscapes, result)
