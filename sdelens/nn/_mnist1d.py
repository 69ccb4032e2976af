"""MNIST-1D (Greydanus & Steinbach), generated locally by the `mnist1d` package: never
downloaded, never written to disk."""

from __future__ import annotations

import functools
import hashlib
import random
from importlib.metadata import version

import jax.numpy as jnp
import numpy as np

from .. import _check
from ._data import Dataset

__all__ = ["load_mnist1d"]


def _generate(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """`(x, y, x_test, y_test, version)` from `mnist1d.data.make_dataset` with the standard
    arguments and `args.seed = seed`, uncached. `make_dataset` seeds NumPy's and Python's
    global random generators: both states are saved and restored, so the caller's are
    untouched. (`get_dataset`, which downloads and writes a pickle, is never called.)"""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = int(seed)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    arrays = tuple(np.asarray(data[key]) for key in ("x", "y", "x_test", "y_test"))
    for array in arrays:
        array.setflags(write=False)  # shared through the cache
    return (*arrays, version("mnist1d"))


_cached = functools.lru_cache(maxsize=4)(_generate)


def load_mnist1d(*, train_size: int | None = None, seed: int = 42) -> Dataset:
    """MNIST-1D: 5000 one-dimensional signals of 40 samples, 10 classes (the digits' templates,
    padded, sheared, scaled, translated and noised), the standard split of 4000 training and
    1000 test examples.

    Generated locally with `mnist1d.data.make_dataset(get_dataset_args())` and `args.seed =
    seed` (42 is the published dataset's seed); nothing is downloaded and the global random
    states of NumPy and Python are left as they were. Generation takes about 2 seconds; the
    arrays are cached in the process, per seed.

    **Arguments:**

    - `train_size`: keep only the first `train_size` training examples; the test set is
      unchanged.
    - `seed`: the generator's seed (an integer >= 0).

    **Returns:** a `Dataset` named `"mnist1d"` with `(n, 40)` float32 features, as the
    generator standardises them (one mean and standard deviation over all 5000 signals, the
    package's convention; they are not standardised again), and int32 labels; `meta` holds
    `origin` (`"mnist1d <version>, make_dataset seed <seed>"`) and `sha256` (of the generated
    float64 training then test features, C order).
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed={seed!r} is invalid: must be an integer >= 0.")
    x, y, x_test, y_test, package = _cached(int(seed))
    digest = hashlib.sha256()
    for part in (x, x_test):  # before train_size: the hash names the generated data
        digest.update(np.ascontiguousarray(part, dtype=np.float64).tobytes())
    if train_size is not None:
        _check.positive_int("train_size", train_size)
        if train_size > x.shape[0]:
            raise ValueError(
                f"train_size={train_size} is invalid: the training split has {x.shape[0]} examples."
            )
        x, y = x[:train_size], y[:train_size]
    return Dataset(
        x_train=jnp.asarray(x, jnp.float32),
        y_train=jnp.asarray(y, jnp.int32),
        x_test=jnp.asarray(x_test, jnp.float32),
        y_test=jnp.asarray(y_test, jnp.int32),
        n_classes=10,
        name="mnist1d",
        meta=(
            ("origin", f"mnist1d {package}, make_dataset seed {int(seed)}"),
            ("sha256", digest.hexdigest()),
        ),
    )


load_mnist1d.cache_clear = _cached.cache_clear  # forget the generated arrays (tests, memory)
