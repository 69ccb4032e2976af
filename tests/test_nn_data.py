"""`sdelens.nn._data`: the bundled datasets, user data from `.npz` files, and the checks of
`Dataset`."""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import bundled_datasets
from sklearn import datasets as sk_datasets

from sdelens import nn


@pytest.fixture(scope="module")
def data():
    return bundled_datasets()


# -- bundled datasets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, image, total, n_train, feature_shape, n_classes",
    [
        ("breast-cancer", False, 569, 455, (30,), 2),
        ("digits", False, 1797, 1438, (64,), 10),
        ("digits", True, 1797, 1438, (1, 8, 8), 10),
    ],
    ids=["breast-cancer", "digits", "digits-image"],
)
def test_bundled_shapes_and_labels(name, image, total, n_train, feature_shape, n_classes):
    d = nn.load_dataset(name, image=image)
    n_test = round(0.2 * total)
    assert d.n_train == n_train and d.x_test.shape[0] == total - n_train
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


# -- user data -----------------------------------------------------------------------------


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(3.0, 2.0, size=(50, 3)), rng.integers(0, 3, 50)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    d = nn.load_npz(tmp_path / "mine.npz", seed=4)
    assert (d.n_train, d.x_test.shape[0], d.n_classes, d.name) == (40, 10, 3, "mine")
    assert d.feature_shape == (3,)
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


def test_npz_with_its_own_split(tmp_path):
    """x_train, y_train, x_test, y_test: the file's split as it is, standardised with the
    training statistics (the same code path as the bundled datasets)."""
    rng = np.random.default_rng(2)
    x_train, x_test = rng.normal(3.0, 2.0, size=(30, 3)), rng.normal(3.0, 2.0, size=(8, 3))
    y_train, y_test = rng.integers(0, 3, 30), np.array([0, 1, 2, 3, 0, 1, 2, 3])
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    np.savez(tmp_path / "own.npz", **arrays)
    d = nn.load_npz(tmp_path / "own.npz")
    assert (d.n_train, d.x_test.shape[0], d.n_classes, d.name) == (30, 8, 4, "own")
    assert d.x_train.dtype == jnp.float32 and d.y_train.dtype == jnp.int32
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    np.testing.assert_allclose(d.x_train, (x_train - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d.x_test, (x_test - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(d.y_train, y_train)
    np.testing.assert_array_equal(d.y_test, y_test)
    # train_size keeps the first rows, and the statistics are theirs
    small = nn.load_npz(tmp_path / "own.npz", train_size=20)
    mean, std = x_train[:20].mean(axis=0), x_train[:20].std(axis=0)
    np.testing.assert_allclose(small.x_train, (x_train[:20] - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(small.x_test, (x_test - mean) / std, rtol=1e-5, atol=1e-5)
    # (n, S, S) images, float labels: one global scale
    images = rng.normal(5.0, 3.0, size=(12, 4, 4))
    np.savez(
        tmp_path / "img.npz",
        x_train=images[:10],
        y_train=np.arange(10.0) % 2,
        x_test=images[10:],
        y_test=np.array([1.0, 0.0]),
    )
    d = nn.load_npz(tmp_path / "img.npz")
    assert d.feature_shape == (4, 4) and d.n_classes == 2
    want = (images - images[:10].mean()) / images[:10].std()
    np.testing.assert_allclose(d.x_train, want[:10], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d.x_test, want[10:], rtol=1e-5, atol=1e-5)


def _bad_split_cases():
    rng = np.random.default_rng(3)
    good = {
        "x_train": rng.normal(size=(20, 2)),
        "y_train": np.arange(20) % 2,
        "x_test": rng.normal(size=(5, 2)),
        "y_test": np.arange(5) % 2,
    }
    nan = good["x_test"].copy()
    nan[1, 0] = np.nan

    def but(**changes):
        return {k: v for k, v in {**good, **changes}.items() if v is not None}

    return {
        "missing": (but(y_test=None), {}, r"has no array 'y_test': load_npz needs arrays 'x'"),
        "both": ({**good, "x": good["x_train"]}, {}, "holds both 'x'/'y' and x_train"),
        "lengths": (
            but(y_train=good["y_train"][:-1]),
            {},
            r"x_train has shape \(20, 2\) and y_train has shape \(19,\)",
        ),
        "features": (
            but(x_test=rng.normal(size=(5, 3))),
            {},
            r"x_train has feature shape \(2,\) but x_test has \(3,\): they must match",
        ),
        "nan": (but(x_test=nan), {}, "x_test has NaN or infinite entries"),
        "text": (but(x_train=good["x_train"].astype(str)), {}, "x_train has dtype <U"),
        "negative": (
            but(y_test=good["y_test"] - 1),
            {},
            r"y_test has negative labels \(found -1\)",
        ),
        "fraction": (but(y_train=good["y_train"] + 0.5), {}, "y_train has non-integer labels"),
        "one-class": (
            but(y_train=np.zeros(20, int)),
            {},
            r"y_train has only one class \(label 0\)",
        ),
        "no-train": (
            but(x_train=np.zeros((0, 2)), y_train=np.zeros(0, int)),
            {},
            "x_train has no examples",
        ),
        "no-test": (
            but(x_test=np.zeros((0, 2)), y_test=np.zeros(0, int)),
            {},
            "x_test has no examples",
        ),
        "test_fraction": (good, {"test_fraction": 0.3}, "test_fraction=0.3 is invalid: bad.npz"),
        "seed": (good, {"seed": 1}, "seed=1 is invalid: bad.npz holds its own split"),
        "n_classes": (
            but(y_test=np.array([0, 1, 2, 0, 1])),
            {"n_classes": 2},
            "n_classes=2 is invalid: the labels go up to 2",
        ),
        "train_size": (good, {"train_size": 21}, "train_size=21 is invalid"),
    }


@pytest.mark.parametrize("case", list(_bad_split_cases()))
def test_npz_split_bad_input_names_the_culprit(tmp_path, case):
    arrays, kwargs, message = _bad_split_cases()[case]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        nn.load_npz(tmp_path / "bad.npz", **kwargs)


def test_unreadable_npz_files(tmp_path):
    np.savez(tmp_path / "good.npz", x=np.zeros((4, 2)), y=np.arange(4) % 2)
    good = (tmp_path / "good.npz").read_bytes()
    damaged = {
        "truncated": good[: len(good) // 2],  # zipfile.BadZipFile
        "empty": b"",  # EOFError
        "text": b"x,y\n1,0\n",
    }
    for name, content in damaged.items():
        (tmp_path / f"{name}.npz").write_bytes(content)
        with pytest.raises(
            ValueError, match=f"path='.*{name}.npz' is invalid: not a readable .npz"
        ):
            nn.load_npz(tmp_path / f"{name}.npz")
    np.savez(tmp_path / "objects.npz", x=np.array([{}, {}], dtype=object), y=np.arange(2))
    with pytest.raises(ValueError, match="objects.npz' is invalid: its arrays cannot be read"):
        nn.load_npz(tmp_path / "objects.npz")
    np.savez(tmp_path / "one.npz", x=np.zeros((4, 2)), y=np.zeros(4))
    with pytest.raises(ValueError, match=r"y has only one class \(label 0\)"):
        nn.load_npz(tmp_path / "one.npz")


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


# -- Dataset -------------------------------------------------------------------------------


def test_dataset_checks_its_fields():
    x, y = jnp.zeros((4, 3)), jnp.array([0, 1, 2, 3])
    nn.Dataset(x, y, x, y, n_classes=10)
    with pytest.raises(ValueError, match=r"y_train has labels outside \[0, 10\): found 12"):
        nn.Dataset(x, jnp.array([0, 12, 1, 12]), x, y, n_classes=10)
    with pytest.raises(ValueError, match=r"y_train has labels outside \[0, 2\): found 2"):
        nn.Dataset(x, jnp.array([0, 1, 2, 0]), x, jnp.zeros(4, int), n_classes=2)
    with pytest.raises(ValueError, match=r"y_test has labels outside \[0, 3\): found -1, 3"):
        nn.Dataset(x, jnp.array([0, 1, 2, 2]), x, jnp.array([0, -1, 3, 1]), n_classes=3)
    with pytest.raises(ValueError, match="x_train has 4 examples but y_train has 3"):
        nn.Dataset(x, jnp.array([0, 1, 1]), x, jnp.zeros(4, int), n_classes=2)
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
