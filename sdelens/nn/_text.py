"""Character-level datasets without downloads: the English documentation text that ships with
Python, a user's own UTF-8 text file, and a synthetic character source whose entropy rate is
known exactly (so the best achievable bits per character is a number, not a guess).

Every text becomes a stream of integer tokens, split contiguously into a training part and a
test part and cut into non-overlapping windows of `seq_len + 1` characters: the input is the
first `seq_len` characters of a window, the labels the next character at each position."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import platform
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from .. import _check
from ._data import Dataset

__all__ = [
    "python_docs_text",
    "load_text",
    "decode",
    "SyntheticSource",
    "load_synthetic",
    "UNKNOWN",
]

UNKNOWN = "<unk>"  # the vocabulary entry of the extra index that characters outside it map to
_SHOWN_UNKNOWN = "\ufffd"  # how `decode` renders that index: one character, so lengths match


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=1)
def _python_docs() -> tuple[str, str, str]:
    from pydoc_data.topics import topics  # the standard library's help() texts

    text = "".join(topics[key] for key in sorted(topics))
    return text, f"pydoc_data.topics, Python {platform.python_version()}", _sha256(text)


def python_docs_text() -> tuple[str, dict]:
    """The English documentation text the Python standard library ships for `help()`: the values
    of `pydoc_data.topics.topics` joined in sorted key order (about 465 000 characters, about
    100 distinct ones; it differs slightly between Python versions, hence the provenance).

    **Returns:** `(text, info)`, with `info` the provenance: `origin`
    (`"pydoc_data.topics, Python X.Y.Z"`), `sha256` (of the UTF-8 encoded text) and
    `characters` (its length).
    """
    text, origin, sha256 = _python_docs()
    return text, {"origin": origin, "sha256": sha256, "characters": len(text)}


def _read_text(source) -> tuple[str, str, str]:
    """`(text, name, origin)` of a user's UTF-8 text file, or a ValueError naming `source`."""
    if isinstance(source, bytes) or not isinstance(source, str | os.PathLike):
        raise ValueError(
            f"source={source!r} is invalid: 'python-docs' or the path of a UTF-8 text file "
            "(a str or os.PathLike) is required."
        )
    path = Path(source)
    if path.is_dir():
        raise ValueError(
            f"source={str(path)!r} is invalid: it is a directory; a UTF-8 text file is required."
        )
    if not path.is_file():
        raise ValueError(
            f"source={str(path)!r} is invalid: no such file (or 'python-docs' for the bundled "
            "text)."
        )
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ValueError(
            f"source={str(path)!r} is invalid: it cannot be read ({_check.error_line(error)})."
        ) from error
    try:
        text = raw.decode("utf-8-sig")  # strict; only a leading byte-order mark is dropped
    except UnicodeDecodeError as error:
        raise ValueError(
            f"source={str(path)!r} is invalid: not UTF-8 text (byte {raw[error.start]:#04x} at "
            f"offset {error.start} cannot be decoded); re-encode the file as UTF-8."
        ) from error
    return text, path.stem, f"file {path.resolve()}"


def _codes(text: str) -> np.ndarray:
    """The Unicode code points of `text` as an integer array (no Python loop over characters)."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)


def _encode(text: str, vocab: list[str], unknown_index: int | None) -> np.ndarray:
    """Token indices of the characters of `text` in `vocab`; characters outside it become
    `unknown_index` (the caller has refused them already when it is None)."""
    points = _codes(text)
    distinct, inverse = np.unique(points, return_inverse=True)
    index = {ord(char): i for i, char in enumerate(vocab) if len(char) == 1}
    fill = -1 if unknown_index is None else unknown_index
    lookup = np.array([index.get(int(p), fill) for p in distinct], dtype=np.int64)
    return lookup[inverse.reshape(-1)]


def _outside(text: str, allowed: set[str]) -> list[str]:
    """The distinct characters of `text` outside `allowed`, in order of first appearance."""
    distinct, first = np.unique(_codes(text), return_index=True)
    chars = [chr(int(p)) for p in distinct[np.argsort(first)]]
    return [c for c in chars if c not in allowed]


def _windows(
    tokens: np.ndarray, seq_len: int, test_fraction: float, train_size: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`(x_train, y_train, x_test, y_test)`: the first `n - round(test_fraction · n)` tokens
    form the training part, the rest the test part; each part is cut into non-overlapping
    windows of `seq_len + 1` tokens (a leftover shorter than that is dropped), so no window
    straddles the split. `x` is the first `seq_len` tokens of a window, `y` the last `seq_len`
    (the next token at each position)."""
    _check.in_interval("test_fraction", test_fraction, 0.0, 1.0)
    n, width = tokens.size, seq_len + 1
    split = n - int(round(test_fraction * n))
    parts = []
    for part in (tokens[:split], tokens[split:]):
        windows = part[: part.size // width * width].reshape(-1, width)
        parts += [windows[:, :-1], windows[:, 1:]]
    x_train, y_train, x_test, y_test = parts
    if x_train.shape[0] == 0:
        raise ValueError(
            f"test_fraction={test_fraction} is invalid: it leaves {split} training characters, "
            f"fewer than one window of seq_len + 1 = {width}."
        )
    if train_size is not None:
        _check.positive_int("train_size", train_size)
        if train_size > x_train.shape[0]:
            raise ValueError(
                f"train_size={train_size} is invalid: the training split has "
                f"{x_train.shape[0]} windows of {width} characters."
            )
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    return x_train, y_train, x_test, y_test


def _check_seq_len(seq_len) -> int:
    if isinstance(seq_len, bool) or not isinstance(seq_len, int | np.integer) or seq_len < 2:
        raise ValueError(f"seq_len={seq_len!r} is invalid: must be an integer >= 2.")
    return int(seq_len)


def _text_dataset(
    tokens: np.ndarray,
    n_classes: int,
    name: str,
    meta: tuple[tuple[str, str], ...],
    seq_len: int,
    test_fraction: float,
    train_size: int | None,
) -> Dataset:
    x_train, y_train, x_test, y_test = _windows(tokens, seq_len, test_fraction, train_size)
    return Dataset(
        x_train=jnp.asarray(x_train, jnp.int32),
        y_train=jnp.asarray(y_train, jnp.int32),
        x_test=jnp.asarray(x_test, jnp.int32),
        y_test=jnp.asarray(y_test, jnp.int32),
        n_classes=n_classes,
        name=name,
        meta=meta,
    )


def load_text(
    source="python-docs",
    *,
    seq_len: int = 64,
    test_fraction: float = 0.1,
    train_size: int | None = None,
    vocab: str | None = None,
    unknown: str = "map",
    max_chars: int | None = None,
) -> Dataset:
    """A character-level dataset: windows of a text, the next character as the label.

    **Arguments:**

    - `source`: `"python-docs"` (the English text of `python_docs_text`, nothing downloaded) or
      the path of your own UTF-8 text file (a `str` or `os.PathLike`; it is only read). A file
      literally named `python-docs` is reached as `"./python-docs"` or a `Path`.
    - `seq_len`: characters per example (>= 2).
    - `test_fraction`: the last `round(test_fraction · n)` characters form the test part, the
      first ones the training part (a contiguous split: neighbouring windows are strongly
      correlated, so a shuffled split would leak). Each part is cut into non-overlapping
      windows of `seq_len + 1` characters, `x` the first `seq_len` of each, `y` the last
      `seq_len`; no window straddles the split, and a leftover shorter than a window is
      dropped.
    - `train_size`: keep only the first `train_size` training windows; the test set is
      unchanged.
    - `vocab`: the allowed characters, in index order (a string without repeats). By default
      the vocabulary is the sorted set of characters of the whole text (before `max_chars`, so
      the number of classes does not depend on it).
    - `unknown`: what happens to characters outside a given `vocab`. `"map"`: they all become
      one extra index `len(vocab)`, the `<unk>` class, which is always there (even when the
      text has no such character, so files read with the same `vocab` share their indices);
      `"error"`: they are refused, with a ValueError listing them.
    - `max_chars`: keep only the first `max_chars` characters (quick runs).

    **Returns:** a `Dataset` of `(n, seq_len)` int32 tokens with `(n, seq_len)` int32 labels,
    `n_classes` the vocabulary size (including `<unk>`), `name` `"text"` for the Python
    documentation or the file's stem, and `meta` the pairs `origin`, `sha256` (of the whole
    UTF-8 text), `characters` (how many of its first characters were used: all of them unless
    `max_chars`) and `vocab` (a JSON list of the characters by index, `"<unk>"` last when
    mapped). `decode` turns tokens back into text.
    """
    seq_len = _check_seq_len(seq_len)
    _check.choice("unknown", unknown, ("map", "error"))
    if max_chars is not None:
        max_chars = _check.positive_int("max_chars", max_chars)
    if isinstance(source, str) and source == "python-docs":
        text, origin, sha256 = _python_docs()
        name = "text"
    else:
        text, name, origin = _read_text(source)
        sha256 = _sha256(text)
    if not text:
        raise ValueError(f"source={str(source)!r} is invalid: the text is empty.")
    whole = text
    if max_chars is not None:
        text = text[:max_chars]
    needed = 2 * (seq_len + 1)
    if len(text) < needed:
        what = f"max_chars={max_chars} keeps" if len(text) < len(whole) else "the text has"
        raise ValueError(
            f"source={str(source)!r} is too short for seq_len={seq_len}: {what} {len(text)} "
            f"characters, at least 2 · (seq_len + 1) = {needed} are required."
        )
    if vocab is None:
        chars, unknown_index = sorted(set(whole)), None
    else:
        if not isinstance(vocab, str) or not vocab:
            raise ValueError(
                f"vocab={vocab!r} is invalid: a non-empty string of the allowed characters is "
                "required."
            )
        repeated = sorted({c for c in vocab if vocab.count(c) > 1})
        if repeated:
            shown = ", ".join(repr(c) for c in repeated[:5])
            raise ValueError(
                f"vocab={vocab!r} is invalid: it repeats {shown}; each character may appear once."
            )
        chars = list(vocab)
        outside = _outside(text, set(chars))
        if unknown == "error" and outside:
            shown = ", ".join(repr(c) for c in outside[:5]) + (", ..." if len(outside) > 5 else "")
            raise ValueError(
                f"vocab={vocab!r} is invalid for this text: {len(outside)} of its characters are "
                f"outside it ({shown}); add them, or pass unknown='map' to map them to <unk>."
            )
        unknown_index = len(chars) if unknown == "map" else None
        if unknown == "map":
            chars.append(UNKNOWN)
    tokens = _encode(text, chars, unknown_index)
    meta = (
        ("origin", origin),
        ("sha256", sha256),
        ("characters", str(len(text))),
        ("vocab", json.dumps(chars)),
    )
    return _text_dataset(tokens, len(chars), name, meta, seq_len, test_fraction, train_size)


def _vocab_of(dataset_or_vocab) -> list[str]:
    if isinstance(dataset_or_vocab, Dataset):
        meta = dict(dataset_or_vocab.meta)
        if "vocab" not in meta:
            raise ValueError(
                f"dataset {dataset_or_vocab.name!r} has no 'vocab' in its meta: only character "
                "datasets (load_text, load_synthetic) can be decoded."
            )
        return json.loads(meta["vocab"])
    if isinstance(dataset_or_vocab, str):
        return list(dataset_or_vocab)
    if isinstance(dataset_or_vocab, list | tuple) and all(
        isinstance(c, str) for c in dataset_or_vocab
    ):
        return list(dataset_or_vocab)
    raise ValueError(
        f"dataset_or_vocab={dataset_or_vocab!r} is invalid: a character Dataset, a string of "
        "characters or a list of them is required."
    )


def decode(dataset_or_vocab, tokens) -> str | list[str]:
    """Text from tokens: `tokens` of shape `(t,)` give a string, `(n, t)` a list of `n`
    strings. `dataset_or_vocab` is a character `Dataset` (its `meta` holds the vocabulary) or
    the vocabulary itself (a string, or a list of characters by index). The `<unk>` index is
    rendered as `"\\ufffd"` (one character, so the text keeps the tokens' length)."""
    chars = [_SHOWN_UNKNOWN if c == UNKNOWN else c for c in _vocab_of(dataset_or_vocab)]
    tokens = np.asarray(tokens)
    if tokens.ndim not in (1, 2) or not (
        tokens.size == 0 or np.issubdtype(tokens.dtype, np.integer)
    ):
        raise ValueError(
            f"tokens has shape {tokens.shape} and dtype {tokens.dtype}: (t,) or (n, t) integer "
            "tokens are required."
        )
    outside = tokens[(tokens < 0) | (tokens >= len(chars))]
    if outside.size:
        shown = ", ".join(str(v) for v in np.unique(outside)[:5].tolist())
        raise ValueError(f"tokens has entries outside [0, {len(chars)}): found {shown}.")
    table = np.array(chars, dtype=object)
    if tokens.ndim == 1:
        return "".join(table[tokens.astype(np.int64)].tolist())
    return ["".join(row) for row in table[tokens.astype(np.int64)].tolist()]


# -- a synthetic source with a known entropy rate --------------------------------------------


def _binary_entropy(p: float) -> float:
    return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


@dataclasses.dataclass(frozen=True)
class SyntheticSource:
    """A character source with long-range structure and an exactly known entropy rate.

    **The source.** The text is a sequence of independent lines. A line is

        key  body  key  "\\n"

    - `key`: one of the `n_keys` capital letters `A, B, …`, uniformly at random.
    - `body`: lower-case letters from the first `n_letters` of `a, b, …`. The first is uniform;
      each next one is the previous moved cyclically forward by `k` letters with probability
      `steps[k-1]` (a small Markov chain: with the default `(0.6, 0.3, 0.1)`, `c` is followed
      by `d`, `e` or `f`). After the first `min_len` letters, before each further letter the
      body ends with probability `stop_prob`, so its length is `min_len + G`, `G` geometric with
      mean `(1 - stop_prob) / stop_prob` (the default 10 + 7 on average, 10 to about 40).
    - the key is then repeated and the line ends: predicting it requires remembering the key
      over the whole body (`min_len + 1` characters back at least).

    **A unifilar hidden-Markov source.** The hidden state is where we are in the line: at its
    start; after the key `c`; in the body with key `c`, `j` letters emitted (`j` counted up to
    `min_len`) and previous letter `b`; after the repeated key. The next state is a function of
    the current state and the emitted character (the keys and the letters are distinct
    characters), so the text determines the state sequence, and the entropy rate is exactly

        h = Σ_s π(s) H(P(· | s))    bits per character,

    with `P(· | s)` the law of the next character in state `s` and `π` the stationary law of
    the state chain (`π P = π`, solved in float64 by `entropy_rate`). Since lines are
    independent and `"\\n"` marks their ends, `h` is also `E[H(line)] / E[length of a line]`:
    with `H_T` the entropy of `steps` and `s = stop_prob`,

        h = (log₂ n_keys + log₂ n_letters + (min_len - 1 + (1 - s)/s) H_T + H₂(s)/s)
            / (min_len + (1 - s)/s + 3),

    `H₂` the binary entropy: the default source has `h ≈ 1.5538` bits/character (the
    17-character alphabet would take 4.09 bits uniformly).

    **Fields:** `n_keys` (1-26), `n_letters` (1-26), `min_len` (>= 1), `stop_prob` (in
    `(0, 1]`), `steps` (positive probabilities summing to 1, at most `n_letters` of them) and
    `seed` (the default seed of `sample`).
    """

    n_keys: int = 8
    n_letters: int = 8
    min_len: int = 10
    stop_prob: float = 0.125
    steps: tuple[float, ...] = (0.6, 0.3, 0.1)
    seed: int = 0

    def __post_init__(self):
        for name, high in (("n_keys", 26), ("n_letters", 26)):
            value = _check.positive_int(name, getattr(self, name))
            if value > high:
                raise ValueError(f"{name}={value} is invalid: allowed range is [1, {high}].")
        _check.positive_int("min_len", self.min_len)
        _check.in_interval("stop_prob", self.stop_prob, 0.0, 1.0, closed_high=True)
        if self.stop_prob == 0:
            raise ValueError("stop_prob=0.0 is invalid: allowed range is (0, 1].")
        if isinstance(self.steps, str | bytes) or not np.iterable(self.steps):
            raise ValueError(
                f"steps={self.steps!r} is invalid: a tuple of probabilities is required."
            )
        steps = tuple(float(p) for p in _check._numbers("steps", list(self.steps), scalar=False))
        if not steps or len(steps) > self.n_letters:
            raise ValueError(
                f"steps={self.steps!r} is invalid: between 1 and n_letters={self.n_letters} "
                "probabilities are required."
            )
        if not all(np.isfinite(p) and p > 0 for p in steps) or abs(sum(steps) - 1) > 1e-9:
            raise ValueError(
                f"steps={self.steps!r} is invalid: positive probabilities summing to 1 are "
                "required."
            )
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int | np.integer)
            or self.seed < 0
        ):
            raise ValueError(f"seed={self.seed!r} is invalid: must be an integer >= 0.")
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "stop_prob", float(self.stop_prob))

    # -- the alphabet and the state machine ------------------------------------------------

    @property
    def alphabet(self) -> str:
        """The characters the source can emit, sorted: `"\\n"`, the keys, the letters (the
        vocabulary of `load_synthetic`, in index order)."""
        keys = "".join(chr(ord("A") + i) for i in range(self.n_keys))
        letters = "".join(chr(ord("a") + i) for i in range(self.n_letters))
        return "\n" + keys + letters

    @functools.cached_property
    def _machine(self) -> tuple[np.ndarray, np.ndarray]:
        """`(prob, nxt)`, both `(n_states, n_alphabet)`: the probability of each character in
        each state and the state it leads to (-1 where the probability is 0). State 0 is the
        start of a line, 1 after the repeated key, then for each key `c` the state after it
        and the body states `(j, b)`, `j = 1 … min_len`, `b` the previous letter."""
        K, m, L, s = self.n_keys, self.n_letters, self.min_len, self.stop_prob
        per_key = 1 + L * m
        n_states, V = 2 + K * per_key, 1 + K + m
        prob = np.zeros((n_states, V))
        nxt = np.full((n_states, V), -1, dtype=np.int64)
        newline, key, letter = 0, (lambda c: 1 + c), (lambda b: 1 + K + b)
        after_key = lambda c: 2 + c * per_key  # noqa: E731
        body = lambda c, j, b: 2 + c * per_key + 1 + (j - 1) * m + b  # noqa: E731
        prob[1, newline], nxt[1, newline] = 1.0, 0
        for c in range(K):
            prob[0, key(c)], nxt[0, key(c)] = 1.0 / K, after_key(c)
            for b in range(m):
                prob[after_key(c), letter(b)] = 1.0 / m
                nxt[after_key(c), letter(b)] = body(c, 1, b)
            for j in range(1, L + 1):
                go_on = 1.0 if j < L else 1.0 - s
                for b in range(m):
                    state = body(c, j, b)
                    for k, p in enumerate(self.steps, start=1):
                        b2 = (b + k) % m
                        prob[state, letter(b2)] += go_on * p
                        nxt[state, letter(b2)] = body(c, min(j + 1, L), b2)
                    if j == L:
                        prob[state, key(c)], nxt[state, key(c)] = s, 1
        return prob, nxt

    @functools.cached_property
    def _table(self) -> list[dict[int, tuple[float, int]]]:
        """For each state, `{character index: (log₂ probability, next state)}` over the
        characters it can emit (plain Python, for the loop of `log2_prob`)."""
        prob, nxt = self._machine
        table = [{} for _ in range(prob.shape[0])]
        for state, v in zip(*np.nonzero(nxt >= 0), strict=True):
            table[state][int(v)] = (math.log2(prob[state, v]), int(nxt[state, v]))
        return table

    @functools.cached_property
    def stationary(self) -> np.ndarray:
        """The stationary law `π` of the hidden state chain (float64): the solution of
        `π (P - I) = 0`, `Σ π = 1` (unique: the chain is irreducible)."""
        prob, nxt = self._machine
        n = prob.shape[0]
        P = np.zeros((n, n))
        rows, cols = np.nonzero(nxt >= 0)
        np.add.at(P, (rows, nxt[rows, cols]), prob[rows, cols])
        A = np.vstack([(P - np.eye(n)).T, np.ones((1, n))])
        rhs = np.zeros(n + 1)
        rhs[-1] = 1.0
        pi, *_ = np.linalg.lstsq(A, rhs, rcond=None)
        return pi

    @functools.cached_property
    def entropy_rate(self) -> float:
        """The exact entropy rate in bits per character, `Σ_s π(s) H(P(· | s))`."""
        prob, _ = self._machine
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(prob > 0, -prob * np.log2(np.where(prob > 0, prob, 1.0)), 0.0)
        return float(self.stationary @ terms.sum(axis=1))

    # -- sampling and exact probabilities --------------------------------------------------

    def sample(self, n_chars: int, seed: int | None = None) -> str:
        """`n_chars` characters of the source from the start of a line (NumPy
        `default_rng(seed)`, `seed` defaulting to the field). Lines are drawn in blocks, so a
        shorter sample with the same seed is a prefix of a longer one."""
        n_chars = _check.positive_int("n_chars", n_chars)
        seed = self.seed if seed is None else seed
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed={seed!r} is invalid: must be an integer >= 0.")
        rng = np.random.default_rng(seed)
        K, m = self.n_keys, self.n_letters
        steps = np.asarray(self.steps)
        newline, keys0, letters0 = ord("\n"), ord("A"), ord("a")
        chunks, total, block = [], 0, 4096
        while total < n_chars:
            keys = rng.integers(K, size=block)
            extra = rng.geometric(self.stop_prob, size=block) - 1  # letters beyond min_len
            lengths = self.min_len + extra
            n_body = int(lengths.sum())
            moves = rng.choice(np.arange(1, steps.size + 1), size=n_body, p=steps)
            firsts = np.cumsum(lengths) - lengths  # index of each line's first letter
            moves[firsts] = rng.integers(m, size=block)  # the first letter is uniform
            walk = np.cumsum(moves)
            letters = (walk - np.repeat(walk[firsts] - moves[firsts], lengths)) % m
            line_len = lengths + 3
            starts = np.cumsum(line_len) - line_len
            out = np.empty(int(line_len.sum()), dtype=np.uint8)
            out[starts] = keys0 + keys
            within = np.arange(n_body) - np.repeat(firsts, lengths)
            out[np.repeat(starts, lengths) + 1 + within] = letters0 + letters
            out[starts + 1 + lengths] = keys0 + keys
            out[starts + 2 + lengths] = newline
            chunks.append(out)
            total += out.size
        return np.concatenate(chunks)[:n_chars].tobytes().decode("ascii")

    def log2_prob(self, text: str, *, start: str = "line") -> np.ndarray:
        """The exact conditional log-probabilities `log₂ P(x_i | x_1 … x_{i-1})` of each
        character of `text` under the source (float64, one per character): `-mean` of them is
        the ideal bits per character of `text`, what a perfect model would achieve.

        - `start="line"`: `text` begins at the start of a line (as `sample` does).
        - `start="stationary"`: `text` begins anywhere (e.g. a training window), the initial
          state drawn from `π`; the state is tracked as a law over states until the text
          determines it (the ideal loss of a model that sees only the window).

        A character the source cannot emit there gets `-inf`, and so does everything after
        it (the text has probability 0).
        """
        _check.choice("start", start, ("line", "stationary"))
        if not isinstance(text, str):
            raise ValueError(f"text={text!r} is invalid: a string is required.")
        prob, nxt = self._machine
        position = {c: i for i, c in enumerate(self.alphabet)}
        tokens = [position.get(c, -1) for c in text]
        out = np.full(len(tokens), -np.inf)
        i = 0
        if start == "stationary":
            belief = self.stationary.copy()
            belief[belief < 0] = 0.0
            belief /= belief.sum()
            while i < len(tokens):
                v = tokens[i]
                if v < 0:
                    return out
                mass = belief * prob[:, v]
                p = mass.sum()
                if p <= 0:
                    return out
                out[i] = math.log2(p)
                i += 1
                alive = np.nonzero(mass)[0]
                new = np.zeros_like(belief)
                np.add.at(new, nxt[alive, v], mass[alive] / p)
                belief = new
                support = np.nonzero(belief)[0]
                if support.size == 1:
                    state = int(support[0])
                    break
            else:
                return out
        else:
            state = 0
        table = self._table
        logs = out.tolist()
        for j in range(i, len(tokens)):
            step = table[state].get(tokens[j])
            if step is None:
                break
            logs[j], state = step
        return np.asarray(logs)

    def bits_per_char(self, text: str, *, start: str = "line") -> float:
        """`-mean(log2_prob(text))`: the ideal bits per character of `text` (`inf` if the
        source cannot emit it)."""
        logs = self.log2_prob(text, start=start)
        return float(-logs.mean()) if logs.size else float("nan")

    def describe(self) -> str:
        """The parameters as one line, e.g. for provenance."""
        fields = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name != "seed"
        )
        return f"SyntheticSource({fields})"


def load_synthetic(
    *,
    n_chars: int = 200_000,
    seq_len: int = 64,
    test_fraction: float = 0.1,
    seed: int = 0,
    train_size: int | None = None,
    source: SyntheticSource | None = None,
) -> Dataset:
    """A character dataset from a `SyntheticSource` (the default one unless `source`), whose
    entropy rate, the best achievable test loss in bits per character, is known exactly.

    `n_chars` characters are sampled with `seed` and windowed like `load_text` (contiguous
    split by `test_fraction`, non-overlapping windows of `seq_len + 1`, `train_size` windows
    kept). The vocabulary is the source's alphabet (`"\\n"`, keys, letters), whether or not
    every character occurs. `name` is `"synthetic"`; `meta` holds `origin` (the source's
    parameters), `entropy_rate_bits` (bits per character, full precision), `seed`, `sha256` (of
    the sampled text), `characters` and `vocab` (JSON list). A model's loss in nats per
    character is comparable with `entropy_rate · ln 2`; windows start anywhere in a line, so
    their first positions are somewhat harder (`SyntheticSource.log2_prob(...,
    start="stationary")` gives the exact ideal per window).
    """
    seq_len = _check_seq_len(seq_len)
    if source is None:
        source = SyntheticSource()
    elif not isinstance(source, SyntheticSource):
        raise ValueError(f"source={source!r} is invalid: a SyntheticSource is required.")
    n_chars = _check.positive_int("n_chars", n_chars)
    if n_chars < 2 * (seq_len + 1):
        raise ValueError(
            f"n_chars={n_chars} is invalid for seq_len={seq_len}: at least 2 · (seq_len + 1) = "
            f"{2 * (seq_len + 1)} characters are required."
        )
    text = source.sample(n_chars, seed)
    chars = list(source.alphabet)
    tokens = _encode(text, chars, None)
    meta = (
        ("origin", source.describe()),
        ("entropy_rate_bits", repr(source.entropy_rate)),
        ("seed", str(seed)),
        ("sha256", _sha256(text)),
        ("characters", str(len(text))),
        ("vocab", json.dumps(chars)),
    )
    return _text_dataset(tokens, len(chars), "synthetic", meta, seq_len, test_fraction, train_size)
