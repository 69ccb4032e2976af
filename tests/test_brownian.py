"""The counter-based Brownian path that drives `simulate`."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from sdelens._brownian import (
    CounterBrownianPath,
    EnsembleBrownianPath,
    standard_normal,
    threefry2x32,
)


def test_threefry_is_bit_identical_to_jax():
    key = jax.random.key_data(jax.random.key(7))
    counts = jnp.arange(1000, dtype=jnp.uint32)
    hi, lo = threefry2x32((key[0], key[1]), (counts, counts * 7 + 3))
    reference = threefry_2x32(key, jnp.concatenate([counts, counts * 7 + 3]))
    np.testing.assert_array_equal(np.concatenate([hi, lo]), np.asarray(reference))


def _moments_within_standard_error(z):
    n = z.size
    z = np.asarray(z, np.float64).ravel()
    # SEs of the sample mean, variance and fourth moment of N(0, 1): 1, √2, √96 over √n.
    assert abs(z.mean()) < 4 / np.sqrt(n)
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / n)
    assert abs(np.mean(z**4) - 3) < 4 * np.sqrt(96 / n)
    # Tail mass P(|z| > 2) = 0.0455.
    p = 0.04550026
    assert abs(np.mean(np.abs(z) > 2) - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_standard_normal_float32_moments():
    key = jax.random.key_data(jax.random.key(11))
    z = standard_normal((key[0], key[1]), (501, 999), jnp.float32)
    assert z.dtype == jnp.float32 and z.shape == (501, 999)
    _moments_within_standard_error(z)
    # Consecutive draws (the two words of one hash) are uncorrelated.
    flat = np.asarray(z, np.float64).ravel()
    assert abs(np.mean(flat[:-1] * flat[1:])) < 4 / np.sqrt(flat.size)


def test_standard_normal_float64_moments():
    with jax.enable_x64(True):
        key = jax.random.key_data(jax.random.key(12))
        z = standard_normal((key[0], key[1]), (300_001,), jnp.float64)
        assert z.dtype == jnp.float64
        _moments_within_standard_error(z)
        # 53-bit uniforms: far more distinct values than float32's 2^24 grid.
        assert np.unique(np.asarray(z)).size == z.size


def test_increments_have_variance_dt_and_are_independent_across_steps():
    paths = jax.vmap(lambda k: CounterBrownianPath((4,), k, jnp.float32))(
        jax.random.split(jax.random.key(0), 20_000)
    )
    dt = 0.01

    def increments(path):
        return jnp.stack([path.evaluate(k * dt, (k + 1) * dt) for k in range(3)])

    dw = np.asarray(jax.vmap(increments)(paths), np.float64)  # (paths, steps, 4)
    n = dw.shape[0]
    var = dw.var(axis=0)
    np.testing.assert_array_less(np.abs(var / dt - 1), 4 * np.sqrt(2 / n))
    corr_steps = np.mean(dw[:, 0] * dw[:, 1], axis=0) / dt
    corr_coords = np.mean(dw[:, 0, 0] * dw[:, 0, 1]) / dt
    assert np.all(np.abs(corr_steps) < 4 / np.sqrt(n))
    assert abs(corr_coords) < 4 / np.sqrt(n)


def test_path_is_deterministic_and_depends_on_key_and_times():
    path = CounterBrownianPath((3,), jax.random.key(5), jnp.float32)
    a = path.evaluate(0.1, 0.2)
    np.testing.assert_array_equal(a, path.evaluate(0.1, 0.2))
    assert not np.allclose(a, path.evaluate(0.2, 0.3))
    other = CounterBrownianPath((3,), jax.random.key(6), jnp.float32)
    assert not np.allclose(a, other.evaluate(0.1, 0.2))
    # W(t) alone is the increment from 0.
    np.testing.assert_array_equal(path.evaluate(0.2), path.evaluate(0.0, 0.2))


def test_any_key_implementation_works():
    path = CounterBrownianPath((2,), jax.random.key(1, impl="rbg"), jnp.float32)
    assert np.all(np.isfinite(path.evaluate(0.0, 1.0)))


def test_levy_area_is_refused_with_a_pointer():
    path = CounterBrownianPath((2,), jax.random.key(1), jnp.float32)
    with pytest.raises(ValueError, match="Lévy area"):
        path.evaluate(0.0, 1.0, use_levy=True)


def test_drives_diffeqsolve_like_a_brownian_motion():
    """Ornstein–Uhlenbeck dX = -X dt + dW from 0 to T = 1 by Euler: Var X_T = (1 - e^{-2T})/2
    up to O(dt)."""
    dt, n = 0.01, 4000
    terms = lambda bm: diffrax.MultiTerm(  # noqa: E731
        diffrax.ODETerm(lambda t, y, a: -y),
        diffrax.ControlTerm(lambda t, y, a: jnp.ones_like(y), bm),
    )

    def final(key):
        bm = CounterBrownianPath((), key, jnp.float32)
        sol = diffrax.diffeqsolve(
            terms(bm), diffrax.Euler(), 0.0, 1.0, dt, jnp.float32(0.0), max_steps=200
        )
        return sol.ys[-1]

    x = np.asarray(jax.jit(jax.vmap(final))(jax.random.split(jax.random.key(3), n)), np.float64)
    # Euler's own stationary-path variance at step dt: Σ_k (1-dt)^{2k} dt.
    steps = round(1 / dt)
    exact = dt * (1 - (1 - dt) ** (2 * steps)) / (1 - (1 - dt) ** 2)
    assert abs(x.var() - exact) < 4 * exact * np.sqrt(2 / n)


def test_ensemble_path_gives_each_path_its_own_stream():
    keys = jax.random.split(jax.random.key(4), 6)
    whole = EnsembleBrownianPath((3,), keys, jnp.float32).evaluate(0.5, 0.75)
    part = EnsembleBrownianPath((3,), keys[2:5], jnp.float32).evaluate(0.5, 0.75)
    assert whole.shape == (3, 6)
    np.testing.assert_array_equal(whole[:, 2:5], part)


def test_ensemble_increments_have_variance_dt_and_are_independent():
    n, dt = 50_000, 0.02
    path = EnsembleBrownianPath((2,), jax.random.split(jax.random.key(8), n), jnp.float32)
    first = np.asarray(path.evaluate(0.0, dt), np.float64)
    second = np.asarray(path.evaluate(dt, 2 * dt), np.float64)
    np.testing.assert_array_less(np.abs(first.var(axis=1) / dt - 1), 4 * np.sqrt(2 / n))
    assert abs(np.mean(first[0] * first[1]) / dt) < 4 / np.sqrt(n)
    assert np.all(np.abs(np.mean(first * second, axis=1) / dt) < 4 / np.sqrt(n))


@pytest.mark.parametrize("solver", [diffrax.Euler(), diffrax.Heun()])
def test_both_ensemble_layouts_integrate_the_same_process(solver):
    """The small-state layout (paths on the minor axis) and vmap over paths draw different
    numbers but must give the same law: SignSGD on a 3-d quadratic, mean and variance of X at
    the end of 200 steps agree within Monte Carlo error."""
    import sdelens as sl
    from sdelens._kernels import solve_paths

    d, n = 3, 6000
    prob = sl.Quadratic(h=jnp.array([1.0, 2.0, 4.0]), noise=sl.GaussianNoise(jnp.ones(d)))
    sde = sl.sde_for(sl.SignSGD(lr=0.01), prob)
    x0s = jnp.ones((n, d))
    keys = jax.random.split(jax.random.key(2), n)
    stratonovich = isinstance(solver, diffrax.AbstractStratonovichSolver)
    finals = []
    for paths_minor in (True, False):
        states, loss = solve_paths(sde, solver, stratonovich, x0s, keys, 200, 100, 1, paths_minor)
        assert type(states) is sl.ParamState and states.x.shape == (n, 3, d)
        assert loss.shape == (n, 3)
        finals.append(np.asarray(states.x[:, -1], np.float64))
    a, b = finals
    se_mean = np.sqrt((a.var(0) + b.var(0)) / n)
    np.testing.assert_array_less(np.abs(a.mean(0) - b.mean(0)), 4 * se_mean)
    np.testing.assert_array_less(np.abs(a.var(0) / b.var(0) - 1), 4 * np.sqrt(4 / n))
    assert not np.allclose(a, b)  # different draws: the comparison is not vacuous
