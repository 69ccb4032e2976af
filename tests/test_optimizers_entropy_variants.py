"""Entropy-SGD's cheaper inner loops (docs/math.md §7.9): the warm-started chain against its
recursion, the control variate's chain against the exact chain shifted by the anchor noise,
its gradient count, what the SDE forms refuse, and bad input. The moments of both against the
finite-chain closed forms: tests/test_studies_inner_loops.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl
from sdelens._langevin import run_chain


@pytest.fixture(scope="module", autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


BASE = {"lr": 0.2, "gamma": 0.5, "inner_lr": 0.1, "inner_steps": 4, "temperature": 0.0}
H, X0 = np.array([1.0, 4.0]), np.array([2.0, -1.0])


def _exact(xp, key):
    return jnp.asarray(H) * xp  # the exact gradient of ½ Σ h x'² (the key is ignored)


def _steps(opt, n, grad_fn=_exact):
    """`n` outer steps of the optax update from X0: the parameters after each."""
    tx = opt.to_optax()
    x, state, out = jnp.asarray(X0), tx.init(jnp.asarray(X0)), []
    for k in range(n):
        updates, state = tx.update(jnp.zeros(2), state, x, grad_fn=grad_fn, key=jax.random.key(k))
        x = x + updates
        out.append(np.asarray(x))
    return out


def _outer(x, mu, lr, gamma):
    return x - lr * gamma * (x - mu)


@pytest.mark.parametrize("sampler", ["sgld", "sghmc"])
def test_warm_start_continues_the_chain(sampler):
    """T = 0, exact gradients: outer step k's chain starts where step k-1's ended (position
    and, for SGHMC, momentum), with μ starting there too; the first step is the restart's."""
    opt = sl.EntropySGD(**BASE, inner=sampler, friction=0.3, warm_start=True)
    with jax.disable_jit():  # a few one-off steps in d = 2: no compilation
        got = _steps(opt, 3)
        restart = _steps(opt.replace(warm_start=False), 1)
    np.testing.assert_array_equal(got[0], restart[0])
    x, xp, p, lr, gamma, il = X0, X0.copy(), np.zeros(2), 0.2, 0.5, 0.1
    for k in range(3):
        mu = xp.copy()
        for _ in range(4):
            force = H * xp + gamma * (xp - x)
            if sampler == "sgld":
                xp = xp - il * force
            else:
                p = 0.7 * p - il * force
                xp = xp + p
            mu = 0.25 * mu + 0.75 * xp
        x = _outer(x, mu, lr, gamma)
        np.testing.assert_allclose(got[k], x, rtol=1e-12)


def test_run_chain_starts_from_a_given_momentum():
    """SGHMC from momentum p₀: `p ← (1 - c) p - η' ∇U`, `x' ← x' + p` from `p = p₀`."""
    p0, x = jnp.array([0.3, -0.2]), jnp.array([1.0, 1.0])
    with jax.disable_jit():
        state, _ = run_chain(
            lambda xp, k: xp,
            x,
            jax.random.key(0),
            2,
            step_size=0.1,
            temperature=0.0,
            sampler="sghmc",
            friction=0.5,
            observe=lambda o, xp, i: o,
            init=0.0,
            momentum=p0,
        )
    xp, p = np.asarray(x), np.asarray(p0)
    for _ in range(2):
        p = 0.5 * p - 0.1 * xp
        xp = xp + p
    np.testing.assert_allclose(state.position, xp, rtol=1e-12)
    np.testing.assert_allclose(state.momentum, p, rtol=1e-12)


def test_control_variate_chain_is_the_exact_chain_shifted_by_the_anchor_noise():
    """Additive noise `g(x', k) = h x' + z(k)`: with the same draw `g(x', k) - g(x, k) = h (x' -
    x)`, so the chain sees `∇f(x') + (z̄ - 0)` with `z̄` the mean anchor noise, drawn from
    `split(fold_in(key, L), m)`."""

    def noisy(xp, key):
        return jnp.asarray(H) * xp + jax.random.normal(key, (2,))

    opt = sl.EntropySGD(**BASE, control_variate=True, anchor_batches=3)
    assert opt.grads_per_step == 2 * 4 + 3
    key = jax.random.key(5)
    with jax.disable_jit():
        mu = opt.inner_chain(jnp.asarray(X0), 0.5, noisy, key)
        keys = jax.random.split(jax.random.fold_in(key, 4), 3)
        zbar = np.mean([np.asarray(jax.random.normal(k, (2,))) for k in keys], axis=0)
    xp, ref = X0.copy(), X0.copy()
    for _ in range(4):
        xp = xp - 0.1 * (H * xp + zbar + 0.5 * (xp - X0))
        ref = 0.25 * ref + 0.75 * xp
    np.testing.assert_allclose(mu, ref, rtol=1e-12)


def test_what_the_sde_forms_refuse():
    """The finite-chain model restarts the chain: warm start is refused there, not in the
    two-timescale model (whose fast variable is never restarted). Neither models the control
    variate's common anchor noise; the moment-matched SDE takes it."""
    prob = sl.Quadratic(h=jnp.asarray(H), noise=sl.GaussianNoise(0.1))
    warm = sl.EntropySGD(**BASE, warm_start=True)
    assert isinstance(sl.sde_for(warm, prob), sl.EntropySGDSDE)
    with pytest.raises(ValueError, match="warm_start=True is not modelled by form='finite_chain'"):
        sl.sde_for(warm, prob, form="finite_chain")
    cv = sl.EntropySGD(**BASE, control_variate=True)
    for form in ("default", "finite_chain"):
        with pytest.raises(
            ValueError, match=f"control_variate=True is not modelled by form='{form}'"
        ):
            sl.sde_for(cv, prob, form=form)
    with jax.disable_jit():  # the moments SDE probes a few updates: cheaper op by op
        assert isinstance(sl.sde_for(cv, prob, form="moments"), sl.MomentsSDE)


def test_type_knowledge_and_bad_input():
    opt = sl.EntropySGD(**BASE, warm_start=True, control_variate=True, anchor_batches=2)
    hyper = opt.hyperparameters()
    assert hyper["warm_start"] is True and hyper["control_variate"] is True
    assert hyper["anchor_batches"] == 2 and opt.grads_per_step == 10
    assert opt.replace(anchor_batches=3).grads_per_step == 11
    assert sl.EntropySGD(**BASE).grads_per_step == 4
    state = opt.to_optax().init(jnp.asarray(X0))
    np.testing.assert_array_equal(state.chain.position, X0)  # the first chain starts at x
    assert sl.EntropySGD(**BASE).to_optax().init(jnp.asarray(X0)).chain is None
    for kwargs, name in (
        ({"anchor_batches": 0}, "anchor_batches=0"),
        ({"warm_start": "yes"}, "warm_start='yes'"),
        ({"control_variate": 1}, "control_variate=1"),
    ):
        with pytest.raises(ValueError, match=name):
            sl.EntropySGD(**BASE, **kwargs)


def test_the_two_timescale_models_validity_ignores_relaxation_for_a_warm_start():
    """At the command line's defaults the restarted chain has τ = 25 inner steps against
    L = 20 (invalid); a warm-started chain is never restarted, so only ε = η/(Lη') counts."""
    quad = sl.Quadratic.standard(3)
    opt = sl.EntropySGD(lr=0.01, gamma=1.0, inner_lr=0.02, inner_steps=20, temperature=0.01)
    restart = sl.sde_for(opt, quad).validity()
    warm = sl.sde_for(opt.replace(warm_start=True), quad).validity()
    assert restart["relaxation_steps"] == pytest.approx(25.0) and not restart["valid"]
    assert warm["valid"] and not warm["relaxation_applies"] and restart["relaxation_applies"]
    assert warm["eps"] == pytest.approx(0.025)
