"""The RMSprop(W) and Adam(W) SDEs on their typed states: drift at rest, one-step moments of
the full state, the SDE tracking the optimizer and its moments, both published forms, and a
finite start from the optimizer's own state `(x₀, 0, 0)`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import H3, S3, adaptive_optimizers

import sdelens as sl

H, S = H3, S3
X0 = jnp.array([1.5, -1.0, 0.5])
PROB = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S))
OPTS = adaptive_optimizers()


def flat(state) -> np.ndarray:
    """A typed state ravelled field by field (the layout of `StateOperator.as_matrix`)."""
    return np.concatenate([np.asarray(leaf, dtype=float) for leaf in state], axis=-1)


@pytest.mark.parametrize("name", list(OPTS))
@pytest.mark.parametrize("form", ["default", "malladi"])
def test_drift_at_rest(name, form):
    """At the rest state the averages do not move, and `dX = -∇f/(√V + ε) - θ X` with `V` the
    form's target (`∇f² + diag Σ`, or `diag Σ` for Malladi's form); at `t = ∞` Adam's bias
    corrections are 1."""
    opt = OPTS[name]
    sde = sl.sde_for(opt, PROB, form=form)
    x = jnp.array([0.3, -0.4, 0.2])
    y = sde.rest_state(x)
    assert type(y) is type(opt.initial_state(x))
    grad = np.asarray(H * x)
    target = (grad**2 if form == "default" else 0.0) + np.asarray(S) ** 2
    np.testing.assert_allclose(y.v, target, rtol=1e-6)
    b = sde.drift(jnp.asarray(jnp.inf), y, None)
    assert type(b) is type(y)
    want = -grad / (np.sqrt(target) + opt.eps) - opt.weight_decay * np.asarray(x)
    np.testing.assert_allclose(b.x, want, rtol=1e-5)
    np.testing.assert_allclose(b.v, 0.0, atol=1e-6)
    if isinstance(opt, sl.Adam):
        np.testing.assert_allclose(y.m, grad, rtol=1e-6)
        np.testing.assert_allclose(b.m, 0.0, atol=1e-5)


@pytest.mark.parametrize("name", list(OPTS))
def test_one_step_moments_of_the_full_state(name):
    """From a state (x, m, v) at rest, one optimizer step's increment of x and m has mean
    η b(y) and covariance η G Gᵀ; v moves by η b_v (its noise is beyond the SDE's order)."""
    opt, n = OPTS[name], 200_000
    sde = sl.sde_for(opt, PROB)
    x = jnp.array([0.3, -0.4, 0.2])
    y = sde.rest_state(x)  # v at E g², m at ∇f: the SDE's regime
    # Run one discrete step from that optimizer state, by hand, on many noise draws.
    keys = jax.random.split(jax.random.key(0), n)
    g = jax.vmap(lambda k: PROB.stochastic_grad(x, k))(keys)
    d = x.shape[0]
    t = jnp.asarray(1e6 * opt.lr)  # long after the start: Adam's bias corrections are 1
    if isinstance(opt, sl.RMSprop):
        v = y.v * opt.beta + (1 - opt.beta) * g**2
        dx = -opt.lr * (g / (jnp.sqrt(v) + opt.eps) + opt.weight_decay * x)
        dy = jnp.concatenate([dx, v - y.v], axis=1)
    else:
        m = y.m * opt.beta1 + (1 - opt.beta1) * g
        v = y.v * opt.beta2 + (1 - opt.beta2) * g**2
        dx = -opt.lr * (m / (jnp.sqrt(v) + opt.eps) + opt.weight_decay * x)
        dy = jnp.concatenate([dx, m - y.m, v - y.v], axis=1)
    dy = np.asarray(dy, dtype=float)
    drift = flat(sde.drift(t, y, None))
    gmat = np.asarray(sde.diffusion(t, y, None).as_matrix(), dtype=float)
    cov = opt.lr * gmat @ gmat.T
    emp_mean, emp_cov = dy.mean(0), np.cov(dy, rowvar=False)
    se_mean = np.sqrt(np.diag(emp_cov) / n)
    # Mean: SE plus the SDE's O(η²) per-step error (E[g/√v] vs ∇f/√E v is second order).
    bias = opt.lr**2 * (1 + np.abs(drift))
    assert np.all(np.abs(emp_mean - opt.lr * drift) <= 5 * se_mean + bias)
    # Covariance of the (x, m) block; v's own O(η²) noise is not in the SDE. Adam's x noise is
    # only the (1-β₁) share of g, and v_{k+1} moving with the same g damps it by a relative
    # O((1-β₂)/(1-β₁)) (here ~5%): 10% relative slack on top of 5 SE.
    k = d if isinstance(opt, sl.RMSprop) else 2 * d
    var = np.diag(cov)[:k]
    se_cov = np.sqrt((np.outer(var, var) + cov[:k, :k] ** 2) / n)
    slack = 0.1 * np.abs(cov[:k, :k])
    assert np.all(np.abs(emp_cov[:k, :k] - cov[:k, :k]) <= 5 * se_cov + slack)


@pytest.mark.parametrize("name", list(OPTS))
def test_sde_tracks_optimizer_and_state(name):
    opt = OPTS[name]
    both = sl.optimizer_vs_sde(
        opt, PROB, X0, n_steps=1000, n_paths=2000, key=jax.random.key(1), save_every=20
    )
    c = both.comparison
    # 4 SE + the O(η) weak error; RMSprop's start from v₀ = 0 costs more (an O(√η) transient).
    weak = (3 if name.startswith("rmsprop") else 1) * opt.lr * float(H.max())
    assert np.all(np.abs(c.diff) <= 4 * c.se_diff + weak * np.abs(c.mean_loss_a))
    # Optimizer and SDE record the same typed state, field by field.
    assert type(both.ref.state).__name__ == type(both.run.state).__name__
    assert both.ref.state._fields == both.run.state._fields
    for a, b in zip(both.ref.state, both.run.state, strict=True):
        assert a.shape == b.shape == (2000, 51, 3)
    for r in (both.ref, both.run):
        assert r.x is r.state.x
        np.testing.assert_array_equal(r.state.x[:, 0], np.broadcast_to(X0, (2000, 3)))
        for leaf in list(r.state)[1:]:  # the moving averages start at 0 in both
            np.testing.assert_array_equal(leaf[:, 0], 0.0)
    # The flat layout of the first release is the fields side by side.
    flat = np.concatenate(list(both.run.state), axis=-1)
    assert flat.shape == (2000, 51, 3 * len(both.run.state._fields))
    v_opt, v_sde = both.ref.state.v[:, -1].mean(0), both.run.state.v[:, -1].mean(0)
    np.testing.assert_allclose(v_sde, v_opt, rtol=0.03)  # both near E g² = ∇f² + s²
    np.testing.assert_allclose(v_opt, S**2, rtol=0.05)


@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_malladi_form_misses_the_gradient_dominated_transient(name):
    """Same optimizer run, two SDE forms: far from the minimum ∇f² ≫ Σ, which only the
    Compagnoni form keeps in dV, so it tracks the optimizer and the Malladi form does not."""
    opt = OPTS[name]
    key_a, key_b = jax.random.split(jax.random.key(3))
    ref = sl.run_optimizer(opt, PROB, 3 * X0, 1000, 1000, key_a, 20)
    errors = {}
    for form in ("default", "malladi"):
        run = sl.simulate(opt, PROB, 3 * X0, 1000, 1000, key_b, 20, form=form)
        errors[form] = sl.compare(ref, run).max_rel_mean_loss_error
    assert errors["default"] < 0.2 and errors["malladi"] > 0.8, errors
    assert run.config["form"] == "malladi"


def test_no_nan_at_the_start():
    for opt in OPTS.values():
        for form in ("default", "malladi"):
            sde = sl.sde_for(opt, PROB, form=form)
            y0 = sde.initial_state(X0)
            np.testing.assert_array_equal(flat(y0)[3:], 0.0)  # the optimizer's (x₀, 0, 0)
            assert np.all(np.isfinite(flat(sde.drift(jnp.asarray(0.0), y0, None))))
            assert np.all(np.isfinite(sde.diffusion(jnp.asarray(0.0), y0, None).as_matrix()))


def test_infinite_variance_is_refused():
    heavy = sl.Quadratic(h=H, noise=sl.StudentTNoise(df=1.5, scale=S))
    for opt in (OPTS["rmsprop"], OPTS["adam"]):
        with pytest.raises(ValueError, match=f"The {type(opt).__name__} SDE does not exist"):
            sl.sde_for(opt, heavy)
