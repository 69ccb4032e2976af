"""Datasets bundled with scikit-learn (no downloads) and user data from an `.npz` file."""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .. import _check

__all__ = ["Dataset", "load_dataset", "load_npz", "DATASETS"]

DATASETS = ("breast-cancer", "digits")


def _check_split(name: str, x: np.ndarray, y: np.ndarray, n_classes: int) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x_{name} has {x.shape[0]} examples but y_{name} has {y.shape[0]}: they must match."
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"x_{name} has NaN or infinite entries: finite features are required.")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"y_{name} has labels outside [0, {n_classes}): found {y.min()}..{y.max()}."
        )


class Dataset(eqx.Module):
    """A classification dataset split into train and test sets.

    `x_*`: `(n, *feature_shape)` float features (standardised with the training statistics by
    the loaders); `y_*`: `(n,)` integer labels in `[0, n_classes)`.
    """

    x_train: Float[Array, "n ..."]
    y_train: Int[Array, " n"]
    x_test: Float[Array, "m ..."]
    y_test: Int[Array, " m"]
    n_classes: int = eqx.field(static=True)
    name: str = eqx.field(static=True, default="data")

    def __check_init__(self):
        _check.positive_int("n_classes", self.n_classes)
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"x_train has feature shape {self.x_train.shape[1:]} but x_test has "
                f"{self.x_test.shape[1:]}: they must match."
            )
        if self.x_train.shape[0] == 0:
            raise ValueError("x_train is empty: at least one training example is required.")
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if _check.is_concrete(x) and _check.is_concrete(y):
                _check_split(split, np.asarray(x), np.asarray(y), self.n_classes)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]


def _split_standardise(
    x, y, n_classes, name, test_fraction, seed, image_shape=None, train_size=None
) -> Dataset:
    _check.in_interval("test_fraction", test_fraction, 0.0, 1.0)
    n = x.shape[0]
    order = np.random.RandomState(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    test, train = order[:n_test], order[n_test:]
    if train_size is not None:
        _check.positive_int("train_size", train_size)
        if train_size > train.size:
            raise ValueError(
                f"train_size={train_size} is invalid: the training split has {train.size} examples."
            )
        train = train[:train_size]
    if train.size == 0:
        raise ValueError(f"test_fraction={test_fraction} leaves no training example (n={n}).")
    x = x.reshape(n, -1).astype(np.float64)
    if image_shape is None:
        mean, std = x[train].mean(0), x[train].std(0)
    else:  # one scale for all pixels keeps the images' spatial structure
        mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / np.where(std > 0, std, 1.0)
    if image_shape is not None:
        x = x.reshape(n, *image_shape)
    y = y.astype(np.int32)
    return Dataset(
        x_train=jnp.asarray(x[train], jnp.float32),
        y_train=jnp.asarray(y[train]),
        x_test=jnp.asarray(x[test], jnp.float32),
        y_test=jnp.asarray(y[test]),
        n_classes=n_classes,
        name=name,
    )


def load_dataset(
    name: str,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    image: bool = False,
    train_size: int | None = None,
) -> Dataset:
    """A dataset bundled with scikit-learn, split by a seeded permutation and standardised with
    the training mean and standard deviation.

    - `"breast-cancer"`: 569 examples, 30 features, 2 classes.
    - `"digits"`: 1797 8×8 images, 10 classes; `image=True` gives `(1, 8, 8)` channels-first
      images standardised by one global mean and std, else 64 per-feature standardised values.

    `train_size` keeps only the first `train_size` training examples (a smaller full batch:
    quicker experiments on a CPU); the test set is unchanged.
    """
    from sklearn import datasets  # imported here: only the loaders need scikit-learn

    _check.choice("dataset", name, DATASETS)
    if name == "breast-cancer":
        if image:
            raise ValueError("image=True is invalid for 'breast-cancer': it has no images.")
        bunch = datasets.load_breast_cancer()
        return _split_standardise(
            bunch.data, bunch.target, 2, name, test_fraction, seed, train_size=train_size
        )
    bunch = datasets.load_digits()
    shape = (1, 8, 8) if image else None
    return _split_standardise(
        bunch.data, bunch.target, 10, name, test_fraction, seed, shape, train_size
    )


def load_npz(
    path, *, test_fraction: float = 0.2, seed: int = 0, n_classes: int | None = None
) -> Dataset:
    """User data from an `.npz` file with arrays `x` (`(n, ...)` features) and `y` (`(n,)`
    integer labels `0 … n_classes-1`), split and standardised as `load_dataset`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path={str(path)!r} is invalid: no such file.")
    with np.load(path) as f:
        missing = [k for k in ("x", "y") if k not in f]
        if missing:
            raise ValueError(f"{path.name} has no array {missing[0]!r}: arrays 'x' and 'y'.")
        x, y = np.asarray(f["x"], dtype=float), np.asarray(f["y"])
    if y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x has shape {x.shape} and y has shape {y.shape}: y must be (n,) with n = x.shape[0]."
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("x has NaN or infinite entries: finite features are required.")
    if not (np.issubdtype(y.dtype, np.integer) or np.all(np.mod(y, 1) == 0)) or y.min() < 0:
        raise ValueError("y must hold integer class labels >= 0.")
    found = int(y.max()) + 1
    if n_classes is None:
        n_classes = found
    elif _check.positive_int("n_classes", n_classes) < found:
        raise ValueError(f"n_classes={n_classes} is invalid: y has labels up to {found - 1}.")
    image_shape = x.shape[1:] if x.ndim > 2 else None
    return _split_standardise(x, y, n_classes, path.stem, test_fraction, seed, image_shape)
