"""`sdelens._langevin`: the update formulas, the Gibbs variance of SGLD and SGHMC chains on a
quadratic against the exact stationary variance of the discretised chain, deterministic descent
at T = 0, and the key scheme of Entropy-SGD's inner chain (bit for bit)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import langevin_on_quadratic

from sdelens import _langevin
from sdelens._langevin import ChainState, langevin_step, run_chain


@pytest.mark.parametrize("traced", [False, True], ids=["python-floats", "jitted-arrays"])
@pytest.mark.parametrize("sampler", _langevin.SAMPLERS)
def test_langevin_step_is_the_update_formula(sampler, traced):
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    x, p, g, xi = (jax.random.normal(k, (3,)) for k in (k1, k2, k3, k4))
    eta, temperature, c = 0.03, 0.2, 0.3

    def step(eta, temperature, c):
        return langevin_step(
            ChainState(x, p),
            g,
            xi,
            step_size=eta,
            temperature=temperature,
            sampler=sampler,
            friction=c,
        )

    if traced:
        step = jax.jit(step)
        eta, temperature, c = (jnp.asarray(v) for v in (eta, temperature, c))
    new = step(eta, temperature, c)
    if sampler == "sgld":
        want_x, want_p = x - 0.03 * g + np.sqrt(2 * 0.03 * 0.2) * xi, p  # momentum untouched
    else:
        want_p = (1 - 0.3) * p - 0.03 * g + np.sqrt(2 * 0.3 * 0.03 * 0.2) * xi
        want_x = x + want_p
    np.testing.assert_allclose(new.position, want_x, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(new.momentum, want_p, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("sampler", _langevin.SAMPLERS)
def test_chain_samples_the_gibbs_variance_of_a_quadratic(sampler):
    """U = ½ Σ kᵢ xᵢ²: the Gibbs measure exp(-U/T) has variance T/kᵢ; the discretised chain's
    exact stationary variance is (T/k)/(1 - ηk/(2(2 - c))), c = 1 for SGLD (η = 0.025, ηk up
    to 0.1: a 5 % SGLD bias, resolved here)."""
    k, temperature, eta, c = jnp.array([1.0, 4.0]), 0.2, 0.025, 0.1
    n_steps, burn_in, n_chains = 5000, 1000, 256
    n_kept = n_steps - burn_in

    def observe(sums, xp, i):
        kept = jnp.where(i >= burn_in, 1.0, 0.0)
        return sums[0] + kept * xp, sums[1] + kept * xp**2

    def chain(key):
        _, (total, total_sq) = run_chain(
            lambda xp, _: k * xp,
            jnp.array([1.0, -1.0]),
            key,
            n_steps,
            step_size=eta,
            temperature=temperature,
            sampler=sampler,
            friction=c,
            observe=observe,
            init=(jnp.zeros(2), jnp.zeros(2)),
        )
        return total / n_kept, total_sq / n_kept

    means, second_moments = jax.jit(jax.vmap(chain))(jax.random.split(jax.random.key(1), n_chains))
    means, second_moments = np.asarray(means, np.float64), np.asarray(second_moments, np.float64)
    exact = [langevin_on_quadratic(float(kk), eta, temperature, sampler, c) for kk in k]
    exact_variance, tau, _ = (np.array(column) for column in zip(*exact, strict=True))
    mean = means.mean(axis=0)
    variance = second_moments.mean(axis=0) - mean**2
    # autocorrelation-aware: the mean of x² over n steps has relative error √(2τ/n)
    rel_se = np.sqrt(2 * tau / (n_kept * n_chains))
    assert np.all(np.abs(variance / exact_variance - 1) < 4 * rel_se)
    gibbs = temperature / np.asarray(k)
    assert np.all(np.abs(variance / gibbs - 1) < 4 * rel_se + eta * np.asarray(k) / 2)
    # τ is right: the spread of the per-chain second moments is what √(2τ/n) predicts
    np.testing.assert_allclose(
        second_moments.std(axis=0, ddof=1), exact_variance * np.sqrt(2 * tau / n_kept), rtol=0.25
    )
    assert np.all(np.abs(mean) < 4 * means.std(axis=0, ddof=1) / np.sqrt(n_chains))


@pytest.mark.parametrize("sampler", _langevin.SAMPLERS)
def test_zero_temperature_is_deterministic_descent(sampler):
    """T = 0: SGLD is gradient descent, x ← (1 - ηk) x; SGHMC is heavy-ball descent,
    (x, p) ← A (x, p) with A = [[1 - ηk, 1 - c], [-ηk, 1 - c]]. `observe` sees every step."""
    k, eta, c, n_steps = np.array([1.0, 4.0]), 0.05, 0.2, 60
    start = np.array([1.0, -2.0])
    state, (count, index_sum) = run_chain(
        lambda xp, _: jnp.asarray(k, xp.dtype) * xp,
        jnp.asarray(start, jnp.float32),
        jax.random.key(0),
        n_steps,
        step_size=eta,
        temperature=0.0,
        sampler=sampler,
        friction=c,
        observe=lambda obs, xp, i: (obs[0] + 1, obs[1] + i),
        init=(0, 0),
    )
    assert int(count) == n_steps and int(index_sum) == n_steps * (n_steps - 1) // 2
    damping = 1.0 if sampler == "sgld" else c
    want = []
    for kk, x0 in zip(k, start, strict=True):
        a = np.array([[1 - eta * kk, 1 - damping], [-eta * kk, 1 - damping]])
        want.append(np.linalg.matrix_power(a, n_steps) @ np.array([x0, 0.0]))
    want = np.array(want)  # rows: coordinates; columns: position, momentum
    np.testing.assert_allclose(state.position, want[:, 0], rtol=1e-5, atol=1e-7)
    if sampler == "sgld":
        np.testing.assert_allclose(want[:, 0], (1 - eta * k) ** n_steps * start, rtol=1e-12)
        np.testing.assert_array_equal(state.momentum, 0.0)
    else:
        np.testing.assert_allclose(state.momentum, want[:, 1], rtol=1e-5, atol=1e-7)


# Entropy-SGD's inner chain as `EntropySGD.inner_chain` wrote it before it used `run_chain`:
# the reference of the key scheme and of the order of the floating-point operations.
def _inner_chain_reference(
    x, gamma, grad_fn, key, *, inner_lr, temperature, alpha, inner, friction, inner_steps
):
    noise_std = math.sqrt(2.0 * inner_lr * temperature)
    hmc_noise_std = math.sqrt(2.0 * friction * inner_lr * temperature)

    def inner_step(carry, i):
        xp, mu, p = carry
        key_grad, key_noise = jax.random.split(jax.random.fold_in(key, i))
        grad_u = grad_fn(xp, key_grad) + gamma * (xp - x)
        xi = jax.random.normal(key_noise, xp.shape, xp.dtype)
        if inner == "sgld":
            xp = xp - inner_lr * grad_u + noise_std * xi
        else:
            p = (1.0 - friction) * p - inner_lr * grad_u + hmc_noise_std * xi
            xp = xp + p
        mu = (1.0 - alpha) * mu + alpha * xp
        return (xp, mu, p), None

    (_, mu, _), _ = jax.lax.scan(inner_step, (x, x, jnp.zeros_like(x)), jnp.arange(inner_steps))
    return mu


def _noisy_grad(xp, key):
    return jnp.array([1.0, 3.0, 0.5]) * xp + 0.1 * jax.random.normal(key, xp.shape, xp.dtype)


_INNER = {"inner_lr": 0.013, "temperature": 0.05, "alpha": 0.3, "friction": 0.17, "inner_steps": 37}


def _via_run_chain(x, gamma, key, inner):
    p = _INNER
    return run_chain(
        lambda xp, k: _noisy_grad(xp, k) + gamma * (xp - x),
        x,
        key,
        p["inner_steps"],
        step_size=p["inner_lr"],
        temperature=p["temperature"],
        sampler=inner,
        friction=p["friction"],
        observe=lambda mu, xp, i: (1 - p["alpha"]) * mu + p["alpha"] * xp,
        init=x,
    )[1]


@pytest.mark.parametrize("sampler", _langevin.SAMPLERS)
def test_run_chain_reproduces_entropy_sgds_inner_chain_bit_for_bit(sampler):
    x, key = jnp.array([0.7, -1.2, 0.3]), jax.random.key(4)
    for gamma in (2.0, jnp.asarray(2.02)):  # γₖ is an array under scoping
        want = _inner_chain_reference(x, gamma, _noisy_grad, key, inner=sampler, **_INNER)
        np.testing.assert_array_equal(_via_run_chain(x, gamma, key, sampler), want)
        jitted = jax.jit(_via_run_chain, static_argnums=3)
        np.testing.assert_array_equal(jitted(x, gamma, key, sampler), want)


@pytest.mark.parametrize("sampler", _langevin.SAMPLERS)
def test_run_chain_equals_entropy_sgd_inner_chain(sampler):
    from sdelens import EntropySGD

    p = _INNER
    opt = EntropySGD(
        lr=0.1,
        gamma=2.0,
        inner_lr=p["inner_lr"],
        inner_steps=p["inner_steps"],
        temperature=p["temperature"],
        alpha=p["alpha"],
        inner=sampler,
        friction=p["friction"],
    )
    x, key = jnp.array([0.7, -1.2, 0.3]), jax.random.key(4)
    want = opt.inner_chain(x, 2.0, _noisy_grad, key)
    np.testing.assert_array_equal(_via_run_chain(x, 2.0, key, sampler), want)


def _chain(**overrides):
    kwargs = {"step_size": 0.01, "temperature": 0.1, "observe": lambda o, xp, i: o, "init": 0.0}
    n_steps = overrides.pop("n_steps", 5)
    return run_chain(
        lambda xp, _: xp, jnp.ones(2), jax.random.key(0), n_steps, **kwargs | overrides
    )


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: _chain(sampler="hmc"), "sampler='hmc'"),
        (lambda: _chain(step_size=0.0), "step_size"),
        (lambda: _chain(temperature=-0.1), "temperature"),
        (lambda: _chain(friction=0.0), r"friction=0.0 is invalid: allowed range is \(0, 1\]"),
        (lambda: _chain(friction=1.5), "friction=1.5"),
        (lambda: _chain(n_steps=0), "n_steps"),
        (
            lambda: langevin_step(
                ChainState(jnp.ones(2), jnp.zeros(2)),
                jnp.ones(2),
                jnp.ones(2),
                step_size=0.1,
                temperature=0.1,
                sampler="langevin",
            ),
            "sampler='langevin'",
        ),
    ],
)
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()
