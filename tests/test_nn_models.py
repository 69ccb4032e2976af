"""`sdelens.nn._models`: the small models under jit and vmap, ensembles over keys, their sizes
and bad input, a sanity training run (the datasets are tested in test_nn_data.py)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import bundled_datasets

from sdelens import nn

KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def data():
    return bundled_datasets()


# -- models --------------------------------------------------------------------------------

# (model, dataset, make_model kwargs, parameter count documented in the docstrings)
MODEL_CASES = [
    ("mlp", "breast-cancer", {}, 2114),
    ("mlp", "digits", {}, 3466),
    ("lenet", "digits-image", {}, 3350),
    ("cnn", "digits", {"image_size": 8}, 3350),
    ("resnet", "digits-image", {}, 2506),
    ("transformer", "digits-image", {}, 2634),
]


def _case_id(case):
    model, dataset, kwargs, n_params = case
    extra = "".join(f"-{k}={v}" for k, v in kwargs.items())
    return f"{model}-{dataset}{extra}-{n_params}params"


def _cross_entropy(model, x, y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(jax.vmap(model)(x), y))


@eqx.filter_jit
def _logits_and_grads(model, x, y):
    # The model is an argument, not a closure: its parameters are traced, not baked in, so
    # models of one architecture share a compilation.
    return jax.vmap(model)(x), eqx.filter_grad(_cross_entropy)(model, x, y)


def _member(ensemble, i):
    return jax.tree.map(lambda leaf: leaf[i] if eqx.is_array(leaf) else leaf, ensemble)


@pytest.mark.parametrize("case", MODEL_CASES, ids=_case_id)
def test_model_forward_gradient_and_ensemble(data, case):
    name, dataset, kwargs, n_params = case
    d = data[dataset]
    build = lambda k: nn.make_model(name, d.n_classes, d.feature_shape, key=k, **kwargs)  # noqa: E731
    keys = jax.random.split(KEY, 3)
    model = build(keys[0])
    assert nn.count_params(model) == n_params < 20_000
    x, y = d.x_train[:32], d.y_train[:32]

    logits, grads = _logits_and_grads(model, x, y)
    assert logits.shape == (32, d.n_classes) and bool(jnp.all(jnp.isfinite(logits)))
    assert float(jnp.std(logits)) > 1e-3  # the logits depend on the input
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert sum(leaf.size for leaf in leaves) == n_params
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
    assert float(optax.tree.norm(leaves)) > 1e-4

    # An ensemble of runs: stacked parameters and shared static structure, so a plain
    # jax.vmap over the parameters runs every member at once.
    ensemble = eqx.filter_vmap(build)(keys)
    assert nn.count_params(ensemble) == 3 * n_params
    assert eqx.tree_equal(_member(ensemble, 0), model, rtol=1e-6, atol=1e-7)
    params, static = eqx.partition(ensemble, eqx.is_array)
    forward = lambda p: jax.vmap(eqx.combine(p, static))(x)  # noqa: E731
    stacked = jax.jit(jax.vmap(forward))(params)
    assert stacked.shape == (3, 32, d.n_classes)
    np.testing.assert_allclose(stacked[0], logits, rtol=1e-4, atol=1e-5)
    member_logits, _ = _logits_and_grads(_member(ensemble, 2), x, y)
    np.testing.assert_allclose(stacked[2], member_logits, rtol=1e-4, atol=1e-5)
    assert not np.allclose(stacked[0], stacked[1])


def test_image_models_take_flat_or_image_inputs(data):
    x_image = data["digits-image"].x_train[:8]
    forward = eqx.filter_jit(lambda model, x: jax.vmap(model)(x))
    for name, kwargs, n_params in (("resnet", {}, 2506), ("transformer", {"patch": 2}, 2698)):
        model = nn.make_model(name, 10, (64,), key=KEY, image_size=8, **kwargs)
        assert nn.count_params(model) == n_params
        np.testing.assert_allclose(
            forward(model, x_image), forward(model, x_image.reshape(8, 64)), rtol=1e-5, atol=1e-6
        )


def test_model_sizes_scale_with_arguments():
    assert nn.count_params(nn.MLP(30, 2, width=4, depth=1, key=KEY)) == 30 * 4 + 4 + 4 * 2 + 2
    assert nn.count_params(nn.ResNet(key=KEY, n_blocks=3)) == 2506 + 1168
    layers = nn.count_params(nn.Transformer(key=KEY, n_layers=2))
    assert layers == 2634 + 2160  # one block: 2 layer norms, 4 attention maps, the MLP
    rgb = nn.make_model("resnet", 10, (3, 16, 16), key=KEY)
    assert jax.eval_shape(jax.vmap(rgb), jnp.ones((2, 3, 16, 16))).shape == (2, 10)


def test_square_examples_are_one_channel_images():
    """`(S, S)` examples (e.g. `load_npz` of `(n, S, S)` images) are one channel: the same
    parameters as `(1, S, S)`, and the same logits on the same pixels."""
    x = jax.random.normal(KEY, (2, 8, 8))
    square, channel = (nn.make_model("lenet", 3, shape, key=KEY) for shape in ((8, 8), (1, 8, 8)))
    assert nn.count_params(square) == nn.count_params(channel) == 3119
    np.testing.assert_allclose(
        jax.vmap(square)(x), jax.vmap(channel)(x[:, None]), rtol=1e-6, atol=1e-6
    )
    for name in ("resnet", "transformer"):  # abstractly: the same shapes, (3,) logits
        square, channel = (
            eqx.filter_eval_shape(nn.make_model, name, 3, shape, key=KEY)
            for shape in ((8, 8), (1, 8, 8))
        )
        shapes = [[getattr(a, "shape", a) for a in jax.tree.leaves(m)] for m in (square, channel)]
        assert shapes[0] == shapes[1]
        logits = eqx.filter_eval_shape(lambda m, x: jax.vmap(m)(x), square, x)
        assert logits.shape == (2, 3)
    with pytest.raises(ValueError, match=r"image_size=4 is invalid: the data has images of shape"):
        nn.make_model("lenet", 3, (8, 8), key=KEY, image_size=4)
    with pytest.raises(ValueError, match=r"needs square images \(S, S\) or \(channels, S, S\)"):
        nn.make_model("lenet", 3, (8, 6), key=KEY)


def test_make_model_bad_input():
    with pytest.raises(ValueError, match="model='vit' is invalid.*'mlp', 'lenet', 'cnn'"):
        nn.make_model("vit", 10, (64,), key=KEY)
    for name in ("lenet", "resnet"):
        with pytest.raises(ValueError, match=f"model='{name}' needs square images"):
            nn.make_model(name, 10, (64,), key=KEY)
    with pytest.raises(ValueError, match="model='transformer' needs square images"):
        nn.make_model("transformer", 2, (30,), key=KEY)
    with pytest.raises(ValueError, match="image_size=16 is invalid"):
        nn.make_model("lenet", 10, (1, 8, 8), key=KEY, image_size=16)
    with pytest.raises(ValueError, match="image_size=5 is invalid"):
        nn.make_model("resnet", 10, (64,), key=KEY, image_size=5)
    with pytest.raises(ValueError, match="patch=3 is invalid"):
        nn.make_model("transformer", 10, (1, 8, 8), key=KEY, patch=3)
    with pytest.raises(ValueError, match="n_heads=3 is invalid"):
        nn.make_model("transformer", 10, (1, 8, 8), key=KEY, n_heads=3)
    with pytest.raises(ValueError, match="image_size=2 is invalid"):
        nn.LeNet(key=KEY, image_size=2)
    with pytest.raises(ValueError, match="n_classes=0"):
        nn.make_model("mlp", 0, (30,), key=KEY)
    with pytest.raises(ValueError, match="width=0"):
        nn.make_model("mlp", 2, (30,), key=KEY, width=0)
    with pytest.raises(ValueError, match=r"input has shape \(1, 4, 4\)"):
        nn.LeNet(key=KEY)(jnp.zeros((1, 4, 4)))


# -- training ------------------------------------------------------------------------------


def test_mlp_learns_breast_cancer(data):
    d = data["breast-cancer"]
    model = nn.make_model("mlp", d.n_classes, d.feature_shape, key=KEY)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    optimizer = optax.adam(1e-2)

    def loss(p):
        return _cross_entropy(eqx.combine(p, static), d.x_train, d.y_train)

    @jax.jit
    def train(params):
        def step(carry, _):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        return jax.lax.scan(step, (params, optimizer.init(params)), length=200)

    (params, _), losses = train(params)
    trained = eqx.combine(params, static)
    accuracy = jnp.mean(jnp.argmax(jax.vmap(trained)(d.x_test), axis=-1) == d.y_test)
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.4f}, test accuracy {accuracy:.4f}")
    assert losses[0] > 0.4 and losses[-1] < 0.05
    assert accuracy > 0.93
