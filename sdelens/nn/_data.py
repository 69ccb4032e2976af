"""Classification datasets: two bundled with scikit-learn (no downloads) and user data from an
`.npz` file, split by a seeded permutation and standardised with the training statistics."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import final

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .. import _check

__all__ = [
    "Dataset",
    "load_dataset",
    "load_npz",
    "DATASETS",
    "NPZ_KEYS",
    "NPZ_SPLIT_KEYS",
    "QUICK_SYNTHETIC",
    "QUICK_TEXT",
]

DATASETS = ("breast-cancer", "digits", "text", "synthetic", "mnist1d")
# The quick sizes of the character datasets as `load_dataset` names them (ready-made problems
# such as "lstm-text"): windows of 32 characters from the first 4 000 of the text.
QUICK_TEXT = {"seq_len": 32, "max_chars": 4_000}
QUICK_SYNTHETIC = {"seq_len": 32, "n_chars": 4_000}
NPZ_KEYS = ("x", "y")  # one set of examples, split by `load_npz`
NPZ_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")  # the user's own split


def _found(values: np.ndarray, limit: int = 5) -> str:
    """A few distinct offending values, for error messages."""
    distinct = np.unique(values)
    shown = ", ".join(str(v) for v in distinct[:limit].tolist())
    return shown + (", ..." if distinct.size > limit else "")


def _check_split(split: str, x, y, n_classes: int) -> None:
    """Shapes and dtypes (known even under tracing), then values when they are concrete.

    `y` is `(n,)` (one label per example) or `(n, t)` with `x` of shape `(n, t, ...)` (one
    label per position of a sequence, e.g. the next character); `x` is floating-point
    features or integer tokens."""
    if y.ndim not in (1, 2):
        raise ValueError(
            f"y_{split} has shape {y.shape}: (n,) class labels or (n, t) labels per position "
            "are required."
        )
    if x.ndim < 1 or x.shape[0] != y.shape[0]:
        n_x = x.shape[0] if x.ndim else "no"
        raise ValueError(
            f"x_{split} has {n_x} examples but y_{split} has {y.shape[0]}: they must match."
        )
    if y.ndim == 2 and x.shape[:2] != y.shape:
        raise ValueError(
            f"y_{split} has shape {y.shape} but x_{split} has {x.shape}: labels per position "
            "need x of shape (n, t, ...) with the same t."
        )
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"y_{split} has dtype {y.dtype}: integer class labels are required.")
    tokens = jnp.issubdtype(x.dtype, jnp.integer)
    if not (tokens or jnp.issubdtype(x.dtype, jnp.floating)):
        raise ValueError(
            f"x_{split} has dtype {x.dtype}: floating-point features or integer tokens are "
            "required."
        )
    if not (_check.is_concrete(x) and _check.is_concrete(y)):
        return
    x, y = np.asarray(x), np.asarray(y)
    if not tokens and not np.all(np.isfinite(x)):
        raise ValueError(f"x_{split} has NaN or infinite entries: finite features are required.")
    outside = y[(y < 0) | (y >= n_classes)]
    if outside.size:
        raise ValueError(f"y_{split} has labels outside [0, {n_classes}): found {_found(outside)}.")
    if tokens:
        outside = x[(x < 0) | (x >= n_classes)]
        if outside.size:
            raise ValueError(
                f"x_{split} has tokens outside [0, {n_classes}): found {_found(outside)}."
            )


@final
class Dataset(eqx.Module):
    """A classification dataset split into train and test sets.

    **Fields:**

    - `x_train`, `x_test`: `(n, *feature_shape)` floating-point features (float32 from the
      loaders, standardised with the training statistics), or `(n, t)` integer tokens in
      `[0, n_classes)` (text: one example is a window of `t` characters).
    - `y_train`, `y_test`: `(n,)` integer labels in `[0, n_classes)`, or `(n, t)` labels per
      position (text: the next character after each position).
    - `n_classes`: number of classes, the vocabulary size for text (static).
    - `name`: a label for plots and problem names (static).
    - `meta`: provenance, `(key, value)` string pairs (static): e.g. the origin of a text and
      its SHA-256, recorded in every result (`dict(data.meta)`).

    Values are checked when concrete (finite features, labels in range); shapes and dtypes are
    always checked. The test split may be empty, the training split may not.
    """

    x_train: Float[Array, "n ..."]
    y_train: Int[Array, " n"]
    x_test: Float[Array, "m ..."]
    y_test: Int[Array, " m"]
    n_classes: int = eqx.field(static=True)
    name: str = eqx.field(static=True, default="data")
    meta: tuple[tuple[str, str], ...] = eqx.field(static=True, default=())

    def __check_init__(self):
        _check.positive_int("n_classes", self.n_classes)
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            _check_split(split, x, y, self.n_classes)
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"x_train has feature shape {self.x_train.shape[1:]} but x_test has "
                f"{self.x_test.shape[1:]}: they must match."
            )
        if self.x_train.shape[0] == 0:
            raise ValueError("x_train is empty: at least one training example is required.")

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. `(30,)` or `(1, 8, 8)`."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    @property
    def tokens(self) -> bool:
        """Whether the inputs are integer tokens (text) rather than features."""
        return bool(jnp.issubdtype(self.x_train.dtype, jnp.integer))

    @property
    def per_position(self) -> bool:
        """Whether there is one label per position of a sequence (`y` of shape `(n, t)`)."""
        return self.y_train.ndim == 2


def _split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(train, test)` indices: the first `round(test_fraction · n)` entries of a seeded
    permutation are the test set."""
    _check.in_interval("test_fraction", test_fraction, 0.0, 1.0)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed={seed!r} is invalid: must be an integer >= 0.")
    order = np.random.RandomState(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    return order[n_test:], order[:n_test]


def _standardise(x: np.ndarray, train: np.ndarray, per_feature: bool) -> np.ndarray:
    """`(x - mean) / std` with the training statistics, so no test information leaks into the
    features; constant features (std 0) are only centred."""
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    if per_feature:
        mean, std = flat[train].mean(axis=0), flat[train].std(axis=0)
    else:  # one scale for every pixel keeps the images' spatial contrast
        mean, std = flat[train].mean(), flat[train].std()
    flat = (flat - mean) / np.where(std > 0, std, 1.0)
    return flat.reshape(x.shape)


def _make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    name: str,
    test_fraction: float,
    seed: int,
    *,
    per_feature: bool,
    train_size: int | None = None,
    split: tuple[np.ndarray, np.ndarray] | None = None,
) -> Dataset:
    """Split (seeded, or the given `(train, test)` indices), keep `train_size`, standardise
    with the training statistics, convert."""
    if split is None:
        train, test = _split_indices(x.shape[0], test_fraction, seed)
    else:
        train, test = split
    if train_size is not None:
        _check.positive_int("train_size", train_size)
        if train_size > train.size:
            raise ValueError(
                f"train_size={train_size} is invalid: the training split has {train.size} examples."
            )
        train = train[:train_size]
    if train.size == 0:
        raise ValueError(
            f"test_fraction={test_fraction} is invalid: it leaves no training example "
            f"(n={x.shape[0]})."
        )
    x = _standardise(x, train, per_feature)
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
    """A dataset shipped with the installed packages (nothing is downloaded).

    - `"breast-cancer"`: 569 examples, 30 features, 2 classes (scikit-learn).
    - `"digits"`: 1797 8×8 grey-level images, 10 classes (scikit-learn). `image=True` gives
      `(1, 8, 8)` channels-first images standardised by one global mean and std; otherwise 64
      features standardised one by one.
    - `"mnist1d"`: MNIST-1D, 4000 + 1000 signals of 40 samples, 10 classes, generated locally
      (`load_mnist1d`; its own split, `test_fraction` and `seed` do not apply).
    - `"text"`, `"synthetic"`: characters of the Python documentation text and of a source
      with a known entropy rate at quick sizes, windows of 32 characters from the first
      4 000 (`load_text`, `load_synthetic`, which take every size; contiguous splits,
      `test_fraction` applies, `seed` is the synthetic source's).

    **Arguments:**

    - `name`: one of `DATASETS`.
    - `test_fraction`: the first `round(test_fraction · n)` examples of
      `numpy.random.RandomState(seed).permutation(n)` form the test set, the rest the
      training set (a plain, unstratified split).
    - `seed`: seed of that permutation; the same seed always gives the same split.
    - `image`: digits as images (for the convolutional and Transformer models).
    - `train_size`: keep only the first `train_size` training examples (a smaller full batch
      for quicker experiments); the test set is unchanged.

    Features are standardised with the mean and standard deviation of the training split
    only, and returned as float32; labels as int32.
    """
    _check.choice("dataset", name, DATASETS)
    if image and name not in ("digits", "breast-cancer"):
        raise ValueError(f"image=True is invalid for {name!r}: it has no images.")
    if name == "mnist1d":
        from ._mnist1d import load_mnist1d

        return load_mnist1d(train_size=train_size)
    if name == "text":
        from ._text import load_text

        return load_text(test_fraction=test_fraction, train_size=train_size, **QUICK_TEXT)
    if name == "synthetic":
        from ._text import load_synthetic

        return load_synthetic(
            test_fraction=test_fraction, seed=seed, train_size=train_size, **QUICK_SYNTHETIC
        )
    from sklearn import datasets  # imported here: only the loaders need scikit-learn

    if name == "breast-cancer":
        if image:
            raise ValueError("image=True is invalid for 'breast-cancer': it has no images.")
        bunch, n_classes, shape = datasets.load_breast_cancer(), 2, (30,)
    else:
        bunch, n_classes = datasets.load_digits(), 10
        shape = (1, 8, 8) if image else (64,)
    x = bunch.data.reshape(-1, *shape)
    return _make_dataset(
        x,
        bunch.target,
        n_classes,
        name,
        test_fraction,
        seed,
        per_feature=not image,
        train_size=train_size,
    )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of one layout, `NPZ_KEYS` or `NPZ_SPLIT_KEYS`, or a ValueError naming what is
    wrong with the file."""
    if not path.is_file():
        raise ValueError(f"path={str(path)!r} is invalid: no such file.")
    # our own handle: np.load leaves the file it opened open when the archive is damaged
    with open(path, "rb") as handle:
        return _read_archive(path, handle)


def _read_archive(path: Path, handle) -> dict[str, np.ndarray]:
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile)
    try:
        archive = np.load(handle, allow_pickle=False)
    except unreadable as error:
        raise ValueError(
            f"path={str(path)!r} is invalid: not a readable .npz file ({_check.error_line(error)})."
        ) from error
    if not hasattr(archive, "files"):  # a single .npy array, not an archive
        raise ValueError(f"path={str(path)!r} is invalid: an .npz archive is required.")
    layouts = (
        "arrays 'x' ((n, ...) features) and 'y' ((n,) integer labels), or x_train, y_train, "
        "x_test, y_test"
    )
    with archive:
        files = archive.files
        if set(NPZ_KEYS) & set(files) and set(NPZ_SPLIT_KEYS) & set(files):
            raise ValueError(
                f"{path.name} holds both 'x'/'y' and x_train/.../y_test: give one of the two "
                f"layouts, {layouts}."
            )
        keys = NPZ_SPLIT_KEYS if set(NPZ_SPLIT_KEYS) & set(files) else NPZ_KEYS
        for key in keys:
            if key not in files:
                raise ValueError(
                    f"{path.name} has no array {key!r}: load_npz needs {layouts}; found {files}."
                )
        try:
            return {key: archive[key] for key in keys}
        except unreadable as error:
            raise ValueError(
                f"path={str(path)!r} is invalid: its arrays cannot be read "
                f"({_check.error_line(error)})."
            ) from error


def _integer_labels(y: np.ndarray, name: str = "y") -> np.ndarray:
    """Labels as int64, accepting integer-valued floats (a common result of saving via
    pandas); anything else is an error naming the array `name`."""
    if y.dtype == bool or np.issubdtype(y.dtype, np.integer):
        y = y.astype(np.int64)
    elif np.issubdtype(y.dtype, np.floating):
        fractional = y[~np.isfinite(y) | (np.mod(y, 1) != 0)]
        if fractional.size:
            raise ValueError(
                f"{name} has non-integer labels (found {_found(fractional)}): class labels must be "
                "integers 0 … n_classes-1."
            )
        y = y.astype(np.int64)
    else:
        raise ValueError(f"{name} has dtype {y.dtype}: integer class labels are required.")
    if y.size and y.min() < 0:
        raise ValueError(
            f"{name} has negative labels (found {_found(y[y < 0])}): class labels must be integers "
            "0 … n_classes-1."
        )
    return y


def _examples(arrays: dict, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    """One set of examples checked: real finite features, one integer label per example."""
    x, y = arrays[x_name], arrays[y_name]
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{x_name} has dtype {x.dtype}: real numeric features are required.")
    if x.ndim < 1 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{x_name} has shape {x.shape} and {y_name} has shape {y.shape}: {y_name} must be "
            f"(n,) with n = {x_name}.shape[0]."
        )
    if x.shape[0] == 0:
        raise ValueError(f"{x_name} has no examples: at least one example is required.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{x_name} has NaN or infinite entries: finite features are required.")
    return x, _integer_labels(y, y_name)


def load_npz(
    path,
    *,
    test_fraction: float | None = None,
    seed: int | None = None,
    n_classes: int | None = None,
    train_size: int | None = None,
) -> Dataset:
    """User data from an `.npz` file, standardised with the training statistics like
    `load_dataset`. Two layouts:

    - `x` (`(n, ...)` real features) and `y` (`(n,)` integer labels `0 … n_classes-1`): split
      as `load_dataset` does, `test_fraction` (default 0.2) and `seed` (default 0).
    - `x_train`, `y_train`, `x_test`, `y_test`: your own split, used as it is (then
      `test_fraction` and `seed` are errors); both splits non-empty, with the same feature shape.

    Features with more than one axis per example (e.g. `(n, S, S)` or `(n, C, S, S)` images,
    channels first) are standardised by one global mean and std, others feature by feature.
    Labels may be stored as integers or integer-valued floats; at least two classes must
    appear (in the training split for the second layout). `n_classes` defaults to
    `max(label) + 1`; pass it when a class may be missing from the file. `train_size` keeps
    only that many training examples. The dataset is named after the file's stem.
    """
    path = Path(path)
    arrays = _read_npz(path)
    if "x" in arrays:
        x, y = _examples(arrays, "x", "y")
        labels, split = ("y", y), None
        test_fraction = 0.2 if test_fraction is None else test_fraction
        seed = 0 if seed is None else seed
    else:
        for option, value in (("test_fraction", test_fraction), ("seed", seed)):
            if value is not None:
                raise ValueError(
                    f"{option}={value!r} is invalid: {path.name} holds its own split "
                    "(x_train, y_train, x_test, y_test)."
                )
        x_train, y_train = _examples(arrays, "x_train", "y_train")
        x_test, y_test = _examples(arrays, "x_test", "y_test")
        if x_train.shape[1:] != x_test.shape[1:]:
            raise ValueError(
                f"x_train has feature shape {x_train.shape[1:]} but x_test has "
                f"{x_test.shape[1:]}: they must match."
            )
        x, y = np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])
        labels = ("y_train", y_train)
        split = (np.arange(x_train.shape[0]), np.arange(x_train.shape[0], x.shape[0]))
    distinct = np.unique(labels[1])
    if distinct.size < 2:
        raise ValueError(
            f"{labels[0]} has only one class (label {distinct[0]}): at least 2 classes are "
            "required."
        )
    found = int(y.max()) + 1
    if n_classes is None:
        n_classes = found
    elif _check.positive_int("n_classes", n_classes) < found:
        raise ValueError(f"n_classes={n_classes} is invalid: the labels go up to {found - 1}.")
    return _make_dataset(
        x,
        y,
        n_classes,
        path.stem,
        test_fraction,
        seed,
        per_feature=x.ndim <= 2,
        train_size=train_size,
        split=split,
    )
