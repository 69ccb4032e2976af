"""`sdelens._problems._network`: network problems (flattening, per-example losses, metrics,
another noise), every ready-made problem under jit and vmap, and SDE vs optimizer on an MLP."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import SMALL_MLP, small_minibatch_problem

import sdelens as sl

KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def small():
    return small_minibatch_problem()


def test_flatten_round_trip_and_gradient(small):
    assert small.dim == 30 * 4 + 4 + 4 * 2 + 2 == 134 and small.n_examples == 455
    model = small.unflatten(small.x0)
    np.testing.assert_array_equal(small.flatten(model), small.x0)
    x = small.x0 + 0.1
    data = small.data

    def model_loss(m):
        logits = jax.vmap(m)(data.x_train)
        return optax.softmax_cross_entropy_with_integer_labels(logits, data.y_train).mean()

    want = small.flatten(eqx.filter_grad(model_loss)(small.unflatten(x)))
    np.testing.assert_allclose(small.grad(x), want, rtol=1e-5, atol=1e-7)
    other = sl.nn.make_model("mlp", 2, (30,), key=KEY)  # the default 2 x 32 MLP
    with pytest.raises(ValueError, match="model has 2114 parameters but the problem has 134"):
        small.flatten(other)


def test_train_losses_loss_and_metrics(small):
    """`loss` is the mean of the per-example losses; `train_losses(x, idx)` picks examples;
    `metrics` are the loss and accuracy on a split, recomputed here from the logits."""
    x = small.x0 + 0.05
    idx = jnp.array([3, 0, 454, 3])
    data = small.data
    splits = {"train": (data.x_train, data.y_train), "test": (data.x_test, data.y_test)}

    @jax.jit
    def at(x):
        model = small.unflatten(x)
        logits = {k: jax.vmap(model)(inputs) for k, (inputs, _) in splits.items()}
        metrics = {k: small.metrics(x, k) for k in splits}
        return small.train_losses(x), small.loss(x), small.train_losses(x, idx), logits, metrics

    losses, loss_x, picked, logits, metrics = at(x)
    assert losses.shape == (455,) and bool(jnp.all(losses > 0))
    np.testing.assert_allclose(loss_x, losses.mean(), rtol=1e-6)
    np.testing.assert_allclose(picked, losses[idx], rtol=1e-6)
    for split, (_, labels) in splits.items():
        want_loss = optax.softmax_cross_entropy_with_integer_labels(logits[split], labels).mean()
        want_acc = jnp.mean(jnp.argmax(logits[split], -1) == labels)
        loss, accuracy = metrics[split]
        np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
        assert float(accuracy) == pytest.approx(float(want_acc))
    np.testing.assert_allclose(metrics["train"][0], loss_x, rtol=1e-6)
    with pytest.raises(ValueError, match="split='val'"):
        small.metrics(x, "val")


def test_mse_loss_is_half_the_squared_error_to_one_hot():
    prob = sl.network_problem("mlp-breast-cancer", key=KEY, loss="mse", **SMALL_MLP)
    x = prob.x0
    logits = jax.vmap(prob.unflatten(x))(prob.data.x_train)
    onehot = jax.nn.one_hot(prob.data.y_train, 2)
    want = 0.5 * jnp.sum((logits - onehot) ** 2, axis=-1)
    np.testing.assert_allclose(prob.train_losses(x), want, rtol=1e-6)
    np.testing.assert_allclose(prob.loss(x), want.mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="loss='hinge'"):
        sl.network_problem("mlp-breast-cancer", key=KEY, loss="hinge")


def test_with_noise_round_trip(small):
    """`with_noise` keeps the model, data, loss and name, swaps the noise, and validates it."""
    gaussian = small.with_noise(sl.GaussianNoise(0.05))
    assert isinstance(gaussian.noise, sl.GaussianNoise) and float(
        gaussian.noise.scale
    ) == pytest.approx(0.05)
    assert (
        gaussian.name == small.name == "mlp-breast-cancer" and gaussian.loss_name == "cross_entropy"
    )
    np.testing.assert_array_equal(gaussian.x0, small.x0)
    back = gaussian.with_noise(sl.MinibatchNoise(32))
    assert back.noise == small.noise
    key = jax.random.key(5)

    @jax.jit
    def at(x):
        return [
            (gaussian.loss(x), small.loss(x)),
            (gaussian.grad(x), small.grad(x)),
            (back.train_losses(x), small.train_losses(x)),
            (back.stochastic_grad(x, key), small.stochastic_grad(x, key)),
        ]

    (loss_g, loss_s), (grad_g, grad_s), (losses_b, losses_s), (g_back, g_small) = at(small.x0 + 0.1)
    np.testing.assert_array_equal(loss_g, loss_s)
    np.testing.assert_array_equal(grad_g, grad_s)
    np.testing.assert_array_equal(losses_b, losses_s)
    np.testing.assert_allclose(g_back, g_small, rtol=1e-6)
    with pytest.raises(ValueError, match="batch_size=456"):
        small.with_noise(sl.MinibatchNoise(456))
    with pytest.raises(ValueError, match="noise=1.0 is invalid"):
        small.with_noise(1.0)


def test_problem_bad_input(small):
    with pytest.raises(ValueError, match="problem='mlp-mnist'"):
        sl.network_problem("mlp-mnist", key=KEY)
    with pytest.raises(ValueError, match="key=None is invalid"):
        sl.network_problem("mlp-breast-cancer", key=None)
    with pytest.raises(ValueError, match="data=.* is invalid: an sdelens.nn.Dataset"):
        sl.NetworkProblem(small.unflatten(small.x0), {"x": 1}, sl.GaussianNoise(0.1))
    digits = sl.nn.load_dataset("digits")
    with pytest.raises(ValueError, match=r"model output has shape \(2,\) .* \(10,\) logits"):
        sl.NetworkProblem(sl.nn.make_model("mlp", 2, (64,), key=KEY), digits, sl.GaussianNoise(0.1))


@pytest.mark.parametrize("name", list(sl.NETWORK_PROBLEMS))
def test_every_model_runs_under_jit_and_vmap(name):
    prob = sl.network_problem(name, key=KEY)
    run = sl.run_optimizer(sl.Adam(1e-3), prob, prob.x0, n_steps=2, n_runs=2, key=KEY)
    assert run.x.shape == (2, 3, prob.dim) and np.all(np.isfinite(run.loss))
    assert isinstance(run.state, sl.AdamState)
    assert all(field.shape == (2, 3, prob.dim) for field in run.state)
    np.testing.assert_array_equal(run.state.x[:, 0], np.broadcast_to(prob.x0, (2, prob.dim)))
    assert run.loss[0, -1] < run.loss[0, 0]  # two Adam steps already lower the loss


@pytest.mark.parametrize(
    "opt, tolerance",
    [(sl.SGD(0.05), 0.03), (sl.SignSGD(0.002), 0.03), (sl.Adam(0.002), 0.03)],
    ids=["sgd", "signsgd", "adam"],
)
def test_sde_tracks_optimizer_on_mlp_breast_cancer(opt, tolerance):
    """Gaussian noise s = 0.05 on the full-batch gradient (Compagnoni et al.'s setting), 200
    steps, 16 runs: the mean loss curves agree within `tolerance` (relative)."""
    prob = sl.network_problem("mlp-breast-cancer", sl.GaussianNoise(0.05), key=KEY)
    kwargs = {"n_steps": 200, "save_every": 20}
    ref = sl.run_optimizer(opt, prob, prob.x0, n_runs=16, key=jax.random.key(0), **kwargs)
    run = sl.simulate(opt, prob, prob.x0, n_paths=16, key=jax.random.key(1), **kwargs)
    comparison = sl.compare(ref, run)
    assert comparison.max_rel_mean_loss_error < tolerance
    assert ref.loss.mean(0)[-1] < 0.15 * ref.loss.mean(0)[0]  # it did train
