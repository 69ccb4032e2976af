"""RMSprop(W) and Adam(W): the optax updates by hand, their typed states, the closed-form
stationary laws against the linearised SDE, and bad input."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import H3, S3, adaptive_optimizers

import sdelens as sl

H, S = H3, S3
PROB = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S))
OPTS = adaptive_optimizers()


@pytest.mark.parametrize("cls", [sl.RMSprop, sl.Adam])
@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf")])
def test_learning_rate(cls, lr):
    with pytest.raises(ValueError, match=r"lr=.*finite and > 0"):
        cls(lr=lr)


def test_to_optax_is_the_documented_update():
    """Hand-written RMSpropW and AdamW (ε outside the root, bias correction) over 3 steps; the
    typed state after each step holds the optimizer's own moments."""
    grads = [jnp.array([0.3, -1.2]), jnp.array([-0.5, 0.7]), jnp.array([1.1, 0.2])]
    x = jnp.array([0.4, -0.8])
    lr, b, b1, b2, eps, wd = 0.1, 0.9, 0.8, 0.95, 1e-3, 0.3
    for opt in (
        sl.RMSprop(lr=lr, beta=b, eps=eps, weight_decay=wd),
        sl.Adam(lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd),
    ):
        tx, xs = opt.to_optax(), x
        state = tx.init(x)
        ref, m, v = np.asarray(x, dtype=float), 0.0, 0.0
        for k, g in enumerate(grads, start=1):
            updates, state = tx.update(g, state, xs)
            xs = optax.apply_updates(xs, updates)
            g = np.asarray(g, dtype=float)
            if isinstance(opt, sl.RMSprop):
                v = b * v + (1 - b) * g**2
                ref = ref - lr * (g / (np.sqrt(v) + eps) + wd * ref)
            else:
                m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
                mhat, vhat = m / (1 - b1**k), v / (1 - b2**k)
                ref = ref - lr * (mhat / (np.sqrt(vhat) + eps) + wd * ref)
        np.testing.assert_allclose(xs, ref, rtol=1e-5)
        typed = opt.state(xs, state)
        np.testing.assert_allclose(typed.v, v, rtol=1e-5)
        np.testing.assert_array_equal(typed.x, xs)
        if isinstance(opt, sl.Adam):
            assert type(typed) is sl.AdamState
            np.testing.assert_allclose(typed.m, m, rtol=1e-5)
        else:
            assert type(typed) is sl.RMSpropState


def test_initial_states_start_the_moments_at_zero():
    x0 = jnp.array([1.5, -1.0, 0.5])
    rms, adam = OPTS["rmsprop"].initial_state(x0), OPTS["adam"].initial_state(x0)
    assert rms._fields == ("x", "v") and adam._fields == ("x", "m", "v")
    np.testing.assert_array_equal(rms.x, x0)
    np.testing.assert_array_equal(rms.v, 0.0)
    np.testing.assert_array_equal(adam.m, 0.0)
    np.testing.assert_array_equal(adam.v, 0.0)


@pytest.mark.parametrize("name", list(OPTS))
def test_closed_form_agrees_with_lyapunov_as_lr_shrinks(name):
    """The closed forms are the η → 0 limit (ρ fixed) of the linearised SDE's Lyapunov law."""
    opt = OPTS[name]
    for lr, rtol in ((1e-2, 0.03), (1e-4, 3e-4)):
        small = sl.with_lr(opt, lr)
        closed, lyap = sl.stationary(small, PROB), sl.linearised_stationary(small, PROB)
        np.testing.assert_allclose(lyap.expected_loss, closed.expected_loss, rtol=rtol)
        np.testing.assert_allclose(np.diag(lyap.cov), np.diag(closed.cov), rtol=rtol)
    n_fields = len(opt.initial_state(jnp.zeros(3)))
    assert lyap.state_cov.shape == (3 * n_fields,) * 2
    assert lyap.state_names[:4] == ("x0", "x1", "x2", "m0" if n_fields == 3 else "v0")


def test_adamw_factor_and_rmspropw_bound():
    lr, theta = 1e-3, 1.0
    rms = sl.stationary(sl.RMSprop(lr=lr, beta=0.999, weight_decay=theta, eps=0.0), PROB)
    adam = sl.stationary(sl.Adam(lr=lr, beta1=0.99, beta2=0.999, weight_decay=theta, eps=0.0), PROB)
    rho1 = 0.01 / lr
    np.testing.assert_allclose(adam.expected_loss, rms.expected_loss * rho1 / (rho1 + theta))
    np.testing.assert_allclose(
        rms.expected_loss, lr / 4 * float(jnp.sum(H * S / (H + theta * S))), rtol=1e-6
    )
    loud = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=1e4 * S))
    bound = lr * float(H.sum()) / (4 * theta)
    big = sl.stationary(sl.RMSprop(lr=lr, beta=0.999, weight_decay=theta, eps=0.0), loud)
    assert 0.99 * bound < big.expected_loss < bound


def test_closed_forms_need_diagonal_gaussian_noise_and_a_minimum_at_zero():
    rotated = sl.Quadratic(h=jnp.diag(H), noise=sl.GaussianNoise(scale=S))
    heavy = sl.Quadratic(h=H, noise=sl.StudentTNoise(df=3.0, scale=S))
    shifted = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S), minimum=jnp.ones(3))
    for prob in (rotated, heavy):
        with pytest.raises(NotImplementedError, match="linearised_stationary"):
            OPTS["adam"].stationary_cov(prob)
    with pytest.raises(NotImplementedError, match="minimum at 0"):
        OPTS["adamw"].stationary_cov(shifted)
    # Without weight decay the minimum may sit anywhere: the law is centred on it.
    np.testing.assert_allclose(sl.stationary(OPTS["adam"], shifted).mean, 1.0)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"beta": 1.0}, "beta=1.0"),
        ({"beta": -0.1}, "beta=-0.1"),
        ({"eps": -1.0}, "eps="),
        ({"weight_decay": -0.1}, "weight_decay="),
        ({"lr": 0.0}, "lr="),
    ],
)
def test_rmsprop_bad_input(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        sl.RMSprop(**{"lr": 0.1, **kwargs})


@pytest.mark.parametrize("kwargs,needle", [({"beta1": 1.0}, "beta1"), ({"beta2": 1.5}, "beta2")])
def test_adam_bad_input(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        sl.Adam(**{"lr": 0.1, **kwargs})


def test_valid_configuration_passes():
    opt = sl.Adam(lr=1e-3, beta1=0.0, beta2=0.999, eps=0.0, weight_decay=0.0)
    assert (opt.beta1, opt.eps, opt.name) == (0.0, 0.0, "adam")
