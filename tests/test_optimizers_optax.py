"""`sl.Optax`: any optax optimizer as an sdelens optimizer: its state read from the optax
state, the run equal to optax's own, the coordinate-wise check, and bad factories."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import optimizer_normals

import sdelens as sl

PROB = sl.Quadratic(
    h=jnp.array([1.0, 2.0, 4.0]), noise=sl.GaussianNoise(scale=jnp.array([0.5, 1.0, 2.0]))
)
X0 = jnp.array([1.0, -1.0, 0.5])


def adabelief(lr):
    return optax.adabelief(lr, b1=0.9, b2=0.99)


def test_the_run_is_optax_own():
    """`run_optimizer` with `sl.Optax` equals a hand-written optax loop on the same draws, and
    the saved state holds the optax state's per-parameter leaves by name."""
    opt = sl.Optax(adabelief, lr=0.05, name="optax:adabelief")
    run = sl.run_optimizer(opt, PROB, X0, n_steps=20, n_runs=2, key=jax.random.key(3))
    assert run.state._fields == ("x", "mu", "nu")
    assert run.config["optimizer"] == {
        "name": "optax:adabelief",
        "lr": 0.05,
        "coordinatewise": True,
    }
    tx = adabelief(0.05)
    x, state = X0, tx.init(X0)
    for xi in optimizer_normals(opt, jax.random.key(3), 2, 1, 20, X0.shape[0]):
        g = PROB.stochastic_grad_from_normals(x, xi)
        updates, state = tx.update(g, state, x)
        x = optax.apply_updates(x, updates)
    np.testing.assert_allclose(run.x[1, -1], x, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(run.state.nu[1, -1], opt.state(x, state).nu, rtol=1e-6)


def test_coordinatewise_is_detected_declared_and_verified():
    assert sl.Optax(adabelief, lr=0.1).coordinatewise is True
    clipped = lambda lr: optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(lr))  # noqa: E731
    assert sl.Optax(clipped, lr=0.1).coordinatewise is False
    assert sl.Optax(adabelief, lr=0.1, coordinatewise=False).coordinatewise is False
    with pytest.raises(ValueError, match="coordinatewise=True is invalid for optax: .*gradient"):
        sl.Optax(clipped, lr=0.1, coordinatewise=True)
    # Not coordinate-wise: the moments are taken by Monte Carlo.
    sde = sl.sde_for(sl.Optax(clipped, lr=0.1), PROB)
    assert (sde.form, sde.rule) == ("moments", "monte_carlo")


def test_with_lr_replace_and_save():
    opt = sl.Optax(adabelief, lr=0.05)
    half = opt.with_lr(0.025)
    assert isinstance(half, sl.Optax) and half.lr == 0.025 and half.factory is adabelief
    assert opt.replace(name="mine").name == "mine"
    with pytest.raises(ValueError, match="beta1 is not a hyperparameter of Optax"):
        opt.replace(beta1=0.5)
    with pytest.raises(ValueError, match="no batch-size scaling rule"):
        opt.default_scaling_rule()
    with pytest.raises(NotImplementedError, match="linearised_stationary"):
        sl.stationary(opt, PROB)


def test_linearised_stationary_of_an_optax_adam_equals_the_builtin_adams():
    """`optax.adam` through `sl.Optax` and `sl.Adam` have the same moment-matched SDE, so
    their linearised stationary laws agree (to the quadrature's rounding)."""
    mine = sl.Optax(lambda lr: optax.adam(lr, b1=0.9, b2=0.99), lr=0.01)
    builtin = sl.Adam(lr=0.01, beta1=0.9, beta2=0.99)
    a = sl.linearised_stationary(mine, PROB)
    b = sl.linearised_stationary(builtin, PROB, form="moments")
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-4, atol=1e-9)
    assert a.expected_loss == pytest.approx(b.expected_loss, rel=1e-4)


@pytest.mark.parametrize(
    "factory,match",
    [
        ("adam", "factory='adam' is invalid: a callable"),
        (lambda: optax.adam(0.1), "does not accept the learning rate"),
        (lambda lr: lr * 2, "returned float: an optax.GradientTransformation is required"),
        (lambda lr: optax.adafactor(lr), "factored or per-layer statistics are not supported"),
    ],
)
def test_bad_factories(factory, match):
    with pytest.raises(ValueError, match=match):
        sl.Optax(factory, lr=0.1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="lr=-1"):
        sl.Optax(adabelief, lr=-1.0)
    with pytest.raises(ValueError, match="coordinatewise='yes' is invalid"):
        sl.Optax(adabelief, lr=0.1, coordinatewise="yes")
    with pytest.raises(ValueError, match="name='' is invalid"):
        sl.Optax(adabelief, lr=0.1, name="")


def test_moments_sde_of_an_optax_optimizer_tracks_it_on_a_non_quadratic_loss():
    """`optax.adabelief` on `Σ log cosh xᵢ + 0.1 x₁x₂`: the moment-matched SDE (4 substeps)
    against the optimizer's mean loss, within 4 SE plus `η` relative (weak order 1)."""

    def loss(x):
        return jnp.sum(jnp.log(jnp.cosh(x))) + 0.1 * x[0] * x[1]

    prob = sl.Problem(loss, sl.GaussianNoise(scale=jnp.array([0.5, 0.5, 0.5])))
    opt = sl.Optax(lambda lr: optax.adabelief(lr, b1=0.9, b2=0.99), lr=0.02)
    kwargs = dict(n_steps=200, key=jax.random.key(2), save_every=10)
    x0 = jnp.array([2.0, -1.5, 1.0])
    ref = sl.run_optimizer(opt, prob, x0, n_runs=2000, **kwargs)
    run = sl.simulate(opt, prob, x0, n_paths=2000, substeps=4, form="moments", **kwargs)
    assert not ref.diverged and not run.diverged
    c = sl.compare(ref, run)
    tol = 4 * c.se_diff + 0.02 * np.abs(c.mean_loss_a)
    assert np.all(np.abs(c.diff) <= tol), (c.diff, tol)
