"""What the studies share: their randomness and their progress messages."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import jax
from jaxtyping import PRNGKeyArray

from .. import _progress
from .._simulate import check_key

__all__ = ["resolve_key", "Progress", "say"]

Progress = Callable[[str], None] | None


def resolve_key(key: PRNGKeyArray | None, seed: int | None) -> PRNGKeyArray:
    """`key` (required), or a key from the deprecated `seed=` of the first release."""
    if seed is not None:
        warnings.warn(
            "seed= is deprecated (it will be removed in the next release): pass "
            "key=jax.random.key(seed).",
            DeprecationWarning,
            stacklevel=3,
        )
        if key is not None:
            raise ValueError("seed= and key= were both given: pass key= only.")
        return jax.random.key(seed)
    return check_key(key)


def say(progress: Progress, message: str) -> None:
    """Hand `message` to the study's `progress=` callback or, without one, to the active
    progress reporter (`sdelens.progress`; silent when there is none). Never to both: a caller
    that passes a callback has chosen where its messages go."""
    if progress is not None:
        progress(message)
    else:
        _progress.note(message)
