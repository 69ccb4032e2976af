"""`sdelens._optimizers._entropy`: Entropy-SGD's outer step, its inner chain against closed
forms, its variants (momentum, Nesterov, scoping, SGHMC), its type knowledge and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl


@pytest.fixture(scope="module", autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


BASE = {"lr": 0.5, "gamma": 1.0, "inner_lr": 0.02, "inner_steps": 5, "temperature": 0.1}


def test_entropy_sgd_outer_step_is_lr_gamma_x_minus_gibbs_mean():
    """Large L, small α: μ ≈ ⟨x'⟩ = γ x/(h + γ), so x₁ = x₀ - η γ (x₀ - ⟨x'⟩)."""
    h, gamma, lr = jnp.array([1.0, 3.0]), 2.0, 0.1
    prob = sl.Quadratic(h=h, noise=sl.GaussianNoise(0.1))
    opt = sl.EntropySGD(
        lr=lr, gamma=gamma, inner_lr=0.01, inner_steps=3000, temperature=0.05, alpha=0.002
    )
    x0 = jnp.array([1.0, -2.0])
    run = sl.run_optimizer(opt, prob, x0, n_steps=1, n_runs=400, key=jax.random.key(0))
    step = run.x[:, 1] - x0
    want = -lr * gamma * (x0 - gamma * x0 / (h + gamma))
    se = step.std(0) / np.sqrt(400)
    bias = 0.01 * (h + gamma) * np.abs(want)  # SGLD step-size bias of ⟨x'⟩
    assert np.all(np.abs(step.mean(0) - want) < 4 * se + bias), (step.mean(0), want)
    assert run.grad_evals == 3000
    assert isinstance(run.state, sl.ParamState) and run.state._fields == ("x",)


def _exact(h):
    return lambda xp, key: h * xp  # the exact gradient of ½ Σ h x'² (the key is ignored)


def test_inner_chain_without_noise_is_gradient_descent_on_the_proximal_problem():
    """T = 0, exact gradients: x'ₖ₊₁ = x'ₖ - η'(h x'ₖ + γ(x'ₖ - x)) converges geometrically to
    the proximal point γx/(h + γ); α = 1 gives μ = x'_L, α < 1 the running average."""
    with jax.disable_jit():  # 7 steps in d = 2: cheaper run op by op than compiled
        _check_inner_chain()


def _check_inner_chain():
    h, x, gamma, inner_lr, steps = jnp.array([1.0, 4.0]), jnp.array([2.0, -1.0]), 0.5, 0.1, 7
    star = gamma * x / (h + gamma)
    want = star + (1 - inner_lr * (h + gamma)) ** steps * (x - star)
    opt = sl.EntropySGD(0.1, gamma, inner_lr, steps, 0.0, alpha=1.0)
    mu = opt.inner_chain(x, gamma, _exact(h), jax.random.key(0))
    np.testing.assert_allclose(mu, want, rtol=1e-12)
    # α = 0.3: μ ← 0.7 μ + 0.3 x', from μ = x
    averaged = sl.EntropySGD(0.1, gamma, inner_lr, steps, 0.0, alpha=0.3)
    xp, ref = np.asarray(x), np.asarray(x)
    for _ in range(steps):
        xp = xp - inner_lr * (np.asarray(h) * xp + gamma * (xp - np.asarray(x)))
        ref = 0.7 * ref + 0.3 * xp
    mu = averaged.inner_chain(x, gamma, _exact(h), jax.random.key(0))
    np.testing.assert_allclose(mu, ref, rtol=1e-12)


def test_optax_update_outer_direction_momentum_and_scoping():
    """The outer step is `-η γₖ (x - μ)` (or `-η (x - μ)`), with heavy-ball or Nesterov momentum
    on the direction, and `γₖ = γ (1 + scoping)ᵏ`."""
    with jax.disable_jit():  # a dozen one-off steps in d = 2: no compilation
        _check_outer_steps()


def _check_outer_steps():
    h, x = jnp.array([1.0, 4.0]), jnp.array([2.0, -1.0])
    kwargs = {"lr": 0.2, "gamma": 0.5, "inner_lr": 0.1, "inner_steps": 7, "temperature": 0.0}

    def mu(opt, gamma, params):
        return opt.inner_chain(params, gamma, _exact(h), jax.random.key(0))

    def step(opt, state, params):
        tx = opt.to_optax()
        return tx.update(
            jnp.zeros_like(params), state, params, grad_fn=_exact(h), key=jax.random.key(0)
        )

    plain = sl.EntropySGD(**kwargs)
    updates, state = step(plain, plain.to_optax().init(x), x)
    d1 = 0.5 * (x - mu(plain, 0.5, x))
    np.testing.assert_allclose(updates, -0.2 * d1, rtol=1e-12)
    assert int(state.count) == 1
    ungamma = sl.EntropySGD(**kwargs, gamma_in_outer_step=False)
    updates, _ = step(ungamma, ungamma.to_optax().init(x), x)
    np.testing.assert_allclose(updates, -0.2 * (x - mu(ungamma, 0.5, x)), rtol=1e-12)
    for nesterov in (False, True):
        opt = sl.EntropySGD(**kwargs, momentum=0.9, nesterov=nesterov)
        u1, state = step(opt, opt.to_optax().init(x), x)
        x1 = x + u1
        u2, _ = step(opt, state, x1)
        d2 = 0.5 * (x1 - mu(opt, 0.5, x1))
        b1, b2 = d1, 0.9 * d1 + d2
        want = (d1 + 0.9 * b1, d2 + 0.9 * b2) if nesterov else (b1, b2)
        np.testing.assert_allclose(u1, -0.2 * want[0], rtol=1e-12)
        np.testing.assert_allclose(u2, -0.2 * want[1], rtol=1e-12)
    scoped = sl.EntropySGD(**kwargs, scoping=0.1)
    assert float(scoped.gamma_at(3)) == pytest.approx(0.5 * 1.1**3, rel=1e-12)
    _, state = step(scoped, scoped.to_optax().init(x), x)
    x1 = x - 0.2 * d1
    u2, _ = step(scoped, state, x1)
    np.testing.assert_allclose(u2, -0.2 * 0.55 * (x1 - mu(scoped, 0.55, x1)), rtol=1e-12)
    with pytest.raises(ValueError, match="needs params, grad_fn"):
        plain.to_optax().update(jnp.zeros(2), plain.to_optax().init(x), x)


def test_entropy_sgd_sghmc_and_variants_run():
    prob = sl.Quadratic(h=jnp.array([1.0, 2.0]), noise=sl.GaussianNoise(0.1))
    x0 = jnp.array([1.0, 1.0])
    for opt in (
        sl.EntropySGD(0.5, 1.0, 0.05, 20, 0.01, inner="sghmc", friction=0.2),
        sl.EntropySGD(0.5, 1.0, 0.05, 20, 0.01, momentum=0.9, nesterov=True, alpha=0.25),
        sl.EntropySGD(0.5, 1.0, 0.05, 20, 0.0, scoping=0.01, gamma_in_outer_step=False),
    ):
        run = sl.run_optimizer(opt, prob, x0, n_steps=40, n_runs=50, key=jax.random.key(0))
        assert run.loss.mean(0)[-1] < 0.05 * run.loss.mean(0)[0], opt
        assert run.grad_evals == 40 * 20


def test_type_knowledge():
    opt = sl.EntropySGD(**BASE)
    assert opt.name == "entropysgd" and opt.weight_decay == 0.0 and opt.grads_per_step == 5
    assert opt.decay_names == () and opt.scaling_rules == ()
    x = jnp.array([1.0, 2.0])
    assert isinstance(opt.initial_state(x), sl.ParamState) and opt.initial_state(x).x is x
    assert isinstance(opt.state(x, None), sl.ParamState) and opt.state(x, None).x is x
    assert opt.replace(gamma=0.3, inner_steps=7) == sl.EntropySGD(
        **{**BASE, "gamma": 0.3, "inner_steps": 7}
    )
    assert opt.with_lr(0.1) == sl.EntropySGD(**{**BASE, "lr": 0.1})  # no decays to keep
    assert opt.hyperparameters()["inner"] == "sgld" and opt.hyperparameters()["alpha"] == 0.75
    with pytest.raises(ValueError, match="no batch-size scaling rule"):
        opt.default_scaling_rule()
    with pytest.raises(NotImplementedError, match="no closed-form stationary law"):
        opt.stationary_cov(sl.Quadratic.standard(2))
    with pytest.raises(ValueError, match="gamma=0.0"):
        opt.replace(gamma=0.0)
    with pytest.raises(ValueError, match="beta is not a hyperparameter of EntropySGD"):
        opt.replace(beta=0.9)
    assert sl.optimizer_by_name("entropysgd", **BASE) == opt


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"gamma": 0.0}, "gamma"),
        ({"temperature": -1.0}, "temperature"),
        ({"inner_lr": 0.0}, "inner_lr"),
        ({"lr": -0.1}, "lr"),
        ({"inner_steps": 0}, "inner_steps"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"inner": "hmc"}, "inner"),
        ({"momentum": 1.0}, "momentum"),
        ({"friction": 0.0}, "friction"),
        ({"scoping": -0.1}, "scoping"),
    ],
)
def test_entropy_sgd_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        sl.EntropySGD(**{**BASE, **kwargs})
