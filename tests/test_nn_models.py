"""`sdelens.nn`: bundled and user datasets, the small models, ensembles over keys, a sanity
training run."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn import datasets as sk_datasets

from sdelens import nn

KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def data():
    return {
        "breast-cancer": nn.load_dataset("breast-cancer"),
        "digits": nn.load_dataset("digits"),
        "digits-image": nn.load_dataset("digits", image=True),
    }


# -- datasets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, image, total, feature_shape, n_classes",
    [
        ("breast-cancer", False, 569, (30,), 2),
        ("digits", False, 1797, (64,), 10),
        ("digits", True, 1797, (1, 8, 8), 10),
    ],
    ids=["breast-cancer", "digits", "digits-image"],
)
def test_bundled_shapes_and_labels(name, image, total, feature_shape, n_classes):
    d = nn.load_dataset(name, image=image)
    n_test = round(0.2 * total)
    assert d.x_train.shape == (total - n_test, *feature_shape)
    assert d.x_test.shape == (n_test, *feature_shape) and d.y_test.shape == (n_test,)
    assert d.n_train + d.x_test.shape[0] == total and d.feature_shape == feature_shape
    assert d.x_train.dtype == jnp.float32 and d.y_train.dtype == jnp.int32
    assert d.n_classes == n_classes and d.name == name
    labels = np.concatenate([d.y_train, d.y_test])
    assert labels.min() == 0 and labels.max() == n_classes - 1
    half = nn.load_dataset(name, image=image, test_fraction=0.5)
    assert half.x_test.shape[0] == round(0.5 * total)


def test_split_is_a_seeded_partition_of_the_data(data):
    bc = data["breast-cancer"]
    raw = sk_datasets.load_breast_cancer()
    features = np.concatenate([bc.x_train, bc.x_test])
    # Every example once: the rows are distinct, and each feature is an increasing affine map
    # of the raw one.
    assert np.unique(features, axis=0).shape[0] == 569
    for j in (0, 7, 29):
        assert np.corrcoef(np.sort(features[:, j]), np.sort(raw.data[:, j]))[0, 1] > 1 - 1e-9
    labels = np.concatenate([bc.y_train, bc.y_test])
    np.testing.assert_array_equal(np.bincount(labels), np.bincount(raw.target))
    again, other = nn.load_dataset("breast-cancer"), nn.load_dataset("breast-cancer", seed=1)
    np.testing.assert_array_equal(bc.x_train, again.x_train)
    np.testing.assert_array_equal(bc.y_test, again.y_test)
    assert not np.array_equal(bc.y_test, other.y_test)
    assert nn.load_dataset("breast-cancer", train_size=100).n_train == 100


def test_train_statistics_standardise(data):
    bc, image = np.asarray(data["breast-cancer"].x_train), np.asarray(data["digits-image"].x_train)
    np.testing.assert_allclose(bc.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(bc.std(axis=0), 1.0, atol=1e-4)
    assert abs(image.mean()) < 1e-5 and abs(image.std() - 1.0) < 1e-4  # one global scale
    flat = np.asarray(data["digits"].x_train)
    varying = flat.std(axis=0) > 0  # constant border pixels are only centred
    np.testing.assert_allclose(flat.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(axis=0)[varying], 1.0, atol=1e-4)
    assert varying.sum() < 64 and np.all(flat[:, ~varying] == 0)
    # The test split is scaled with the training statistics, so it is not exactly standard.
    assert np.abs(np.asarray(data["breast-cancer"].x_test).mean(axis=0)).max() > 1e-3


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(3.0, 2.0, size=(50, 3)), rng.integers(0, 3, 50)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    d = nn.load_npz(tmp_path / "mine.npz", seed=4)
    assert (d.n_train, d.x_test.shape[0], d.n_classes, d.name) == (40, 10, 3, "mine")
    order = np.random.RandomState(4).permutation(50)  # the documented split
    train, test = order[10:], order[:10]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    np.testing.assert_allclose(d.x_train, (x[train] - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d.x_test, (x[test] - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(d.y_test, y[test])
    # Images: one global scale; float labels that are whole numbers; a class absent from y.
    images = rng.normal(size=(20, 2, 4, 4))
    np.savez(tmp_path / "images.npz", x=images, y=np.arange(20.0) % 4)
    d = nn.load_npz(tmp_path / "images.npz", n_classes=6, test_fraction=0.25)
    assert d.feature_shape == (2, 4, 4) and d.n_classes == 6 and d.x_test.shape[0] == 5
    assert abs(float(d.x_train.mean())) < 1e-5 and abs(float(d.x_train.std()) - 1) < 1e-4


def _bad_npz_cases():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 2)), rng.integers(0, 3, 30)
    x_nan, x_inf = x.copy(), x.copy()
    x_nan[3, 1], x_inf[0, 0] = np.nan, np.inf
    return {
        "missing-x": ({"y": y}, {}, "no array 'x'"),
        "missing-y": ({"x": x}, {}, "no array 'y'"),
        "lengths": ({"x": x, "y": y[:-1]}, {}, r"x has shape \(30, 2\) and y has shape \(29,\)"),
        "y-2d": ({"x": x, "y": y[:, None]}, {}, r"y has shape \(30, 1\)"),
        "nan": ({"x": x_nan, "y": y}, {}, "x has NaN"),
        "inf": ({"x": x_inf, "y": y}, {}, "x has NaN or infinite"),
        "fractional": ({"x": x, "y": y + 0.5}, {}, "y has non-integer labels"),
        "negative": ({"x": x, "y": y - 1}, {}, r"y has negative labels \(found -1\)"),
        "text-labels": ({"x": x, "y": y.astype(str)}, {}, "y has dtype"),
        "n_classes": ({"x": x, "y": y}, {"n_classes": 2}, "n_classes=2 is invalid"),
        "test_fraction": ({"x": x, "y": y}, {"test_fraction": 1.0}, "test_fraction=1.0"),
        "seed": ({"x": x, "y": y}, {"seed": -1}, "seed=-1"),
    }


@pytest.mark.parametrize("case", list(_bad_npz_cases()))
def test_npz_bad_input_names_the_culprit(tmp_path, case):
    arrays, kwargs, message = _bad_npz_cases()[case]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        nn.load_npz(tmp_path / "bad.npz", **kwargs)


def test_bad_files_and_datasets(tmp_path):
    with pytest.raises(ValueError, match="path='.*nothing.npz' is invalid: no such file"):
        nn.load_npz(tmp_path / "nothing.npz")
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(ValueError, match="an .npz archive is required"):
        nn.load_npz(tmp_path / "array.npy")
    with pytest.raises(ValueError, match="dataset='mnist' is invalid.*'breast-cancer', 'digits'"):
        nn.load_dataset("mnist")
    with pytest.raises(ValueError, match="image=True is invalid for 'breast-cancer'"):
        nn.load_dataset("breast-cancer", image=True)
    with pytest.raises(ValueError, match="train_size=500"):
        nn.load_dataset("breast-cancer", train_size=500)


def test_dataset_checks_its_fields():
    x, y = jnp.zeros((4, 3)), jnp.array([0, 1, 2, 3])
    nn.Dataset(x, y, x, y, n_classes=10)
    with pytest.raises(ValueError, match=r"y_train has labels outside \[0, 10\): found 12"):
        nn.Dataset(x, jnp.array([0, 12, 1, 12]), x, y, n_classes=10)
    with pytest.raises(ValueError, match=r"y_test has labels outside \[0, 3\): found -1, 3"):
        nn.Dataset(x, jnp.array([0, 1, 2, 2]), x, jnp.array([0, -1, 3, 1]), n_classes=3)
    with pytest.raises(ValueError, match="x_test has 4 examples but y_test has 3"):
        nn.Dataset(x, y, x, y[:3], n_classes=10)
    with pytest.raises(ValueError, match="x_train has NaN"):
        nn.Dataset(x.at[0, 0].set(jnp.nan), y, x, y, n_classes=10)
    with pytest.raises(ValueError, match="y_train has dtype float32"):
        nn.Dataset(x, y.astype(jnp.float32), x, y, n_classes=10)
    with pytest.raises(ValueError, match=r"x_train has feature shape \(3,\) but x_test has"):
        nn.Dataset(x, y, jnp.zeros((4, 2)), y, n_classes=10)
    with pytest.raises(ValueError, match="x_train is empty"):
        nn.Dataset(x[:0], y[:0], x, y, n_classes=10)


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
