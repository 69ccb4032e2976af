"""`sdelens.nn._text` and `sdelens.nn._mnist1d`: character datasets (the Python documentation
text, a user's file, a synthetic source with a known entropy rate) and MNIST-1D generated
locally."""

import hashlib
import json
import math
import random
import socket

import jax.numpy as jnp
import numpy as np
import pytest

from sdelens.nn import _mnist1d, _text
from sdelens.nn._mnist1d import load_mnist1d
from sdelens.nn._text import (
    SyntheticSource,
    decode,
    load_synthetic,
    load_text,
    python_docs_text,
)

# -- the Python documentation text ----------------------------------------------------------


@pytest.fixture(scope="module")
def docs():
    return load_text(seq_len=32, max_chars=20_000)


def test_python_docs_text_and_its_provenance():
    from pydoc_data.topics import topics

    text, info = python_docs_text()
    joined = "".join(topics[k] for k in sorted(topics))
    assert text == joined and info["characters"] == len(joined) > 400_000
    assert info["sha256"] == hashlib.sha256(joined.encode("utf-8")).hexdigest()
    assert info["origin"].startswith("pydoc_data.topics, Python 3.")


def test_docs_windows_are_the_text_shifted_by_one(docs):
    text, info = python_docs_text()
    used = text[:20_000]
    # 20 000 characters: 18 000 for training (545 windows of 33), 2000 for the test (60)
    assert docs.x_train.shape == docs.y_train.shape == (18_000 // 33, 32)
    assert docs.x_test.shape == docs.y_test.shape == (2000 // 33, 32)
    assert docs.x_train.dtype == docs.y_train.dtype == jnp.int32 and docs.tokens
    assert docs.per_position and docs.name == "text"
    meta = dict(docs.meta)
    assert list(meta) == ["origin", "sha256", "characters", "vocab"]
    assert meta["sha256"] == hashlib.sha256(text.encode("utf-8")).hexdigest() == info["sha256"]
    assert meta["characters"] == "20000" and meta["origin"] == info["origin"]
    vocab = json.loads(meta["vocab"])
    assert vocab == sorted(set(text)) and docs.n_classes == len(vocab) == len(set(text))
    x, y = np.asarray(docs.x_train), np.asarray(docs.y_train)
    for i in (0, 1, 300, x.shape[0] - 1):  # window i is text[33 i : 33 i + 33]
        assert decode(docs, x[i]) == used[33 * i : 33 * i + 32]
        assert decode(docs, y[i]) == used[33 * i + 1 : 33 * i + 33]
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    # the test windows start at the split (character 18 000): none straddles it
    xt, yt = np.asarray(docs.x_test), np.asarray(docs.y_test)
    assert decode(docs, xt[0]) == used[18_000 : 18_000 + 32]
    assert decode(docs, yt[-1]) == used[18_000 + 33 * 59 + 1 : 18_000 + 33 * 60]
    assert 33 * x.shape[0] <= 18_000
    # decode: a string vocabulary, a batch, and the round trip through the vocabulary
    assert decode("".join(vocab), x[:2]) == [used[:32], used[33:65]]
    again = _text._encode(decode(docs, x[5]), vocab, None)
    np.testing.assert_array_equal(again, x[5])


def test_docs_options():
    small = load_text(seq_len=16, max_chars=5000, test_fraction=0.0, train_size=10)
    assert small.x_train.shape == (10, 16) and small.x_test.shape == (0, 16)
    full = load_text(seq_len=64)  # the whole text, the default test fraction 0.1
    n = python_docs_text()[1]["characters"]
    n_test = round(0.1 * n)
    assert full.x_train.shape[0] == (n - n_test) // 65
    assert full.x_test.shape[0] == n_test // 65
    assert full.n_classes == small.n_classes  # the vocabulary of the whole text
    with pytest.raises(ValueError, match=r"seq_len=1 is invalid"):
        load_text(seq_len=1)
    with pytest.raises(ValueError, match=r"train_size=100000 is invalid"):
        load_text(max_chars=5000, train_size=100_000)
    with pytest.raises(ValueError, match=r"max_chars=0 is invalid"):
        load_text(max_chars=0)
    with pytest.raises(ValueError, match=r"max_chars=100 keeps 100 characters"):
        load_text(max_chars=100)
    with pytest.raises(ValueError, match=r"unknown='drop' is invalid"):
        load_text(unknown="drop")
    with pytest.raises(ValueError, match=r"test_fraction=1.0 is invalid"):
        load_text(test_fraction=1.0)


# -- a user's text file ---------------------------------------------------------------------


def test_user_file_vocab_map_and_error(tmp_path):
    path = tmp_path / "poem.txt"
    text = "abcab\tcabé" * 10  # 100 characters, two of them ('\t', 'é') outside the vocab
    path.write_text(text, encoding="utf-8")
    d = load_text(str(path), seq_len=4, test_fraction=0.2)
    assert d.name == "poem" and d.n_classes == 5
    assert json.loads(dict(d.meta)["vocab"]) == sorted(set(text))
    assert dict(d.meta)["origin"] == f"file {path.resolve()}"
    assert dict(d.meta)["sha256"] == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert d.x_train.shape == (80 // 5, 4) and d.x_test.shape == (20 // 5, 4)
    assert decode(d, d.x_train[0]) == "abca" and decode(d, d.y_train[0]) == "bcab"

    mapped = load_text(path, seq_len=4, vocab="cba", unknown="map")
    assert mapped.n_classes == 4  # c, b, a, <unk>
    assert json.loads(dict(mapped.meta)["vocab"]) == ["c", "b", "a", "<unk>"]
    np.testing.assert_array_equal(mapped.x_train[0], [2, 1, 0, 2])  # "abca"
    np.testing.assert_array_equal(mapped.x_train[1], [3, 0, 2, 1])  # "\tcab": "\t" → <unk>
    np.testing.assert_array_equal(mapped.y_train[1], [0, 2, 1, 3])  # "cabé": "é" → <unk>
    assert decode(mapped, mapped.x_train[1]) == "\ufffdcab"
    # the <unk> class exists even when nothing maps to it
    clean = tmp_path / "clean.txt"
    clean.write_text("abc" * 20, encoding="utf-8")
    assert load_text(clean, seq_len=4, vocab="cba").n_classes == 4
    assert load_text(clean, seq_len=4, vocab="cba", unknown="error").n_classes == 3

    with pytest.raises(ValueError, match=r"vocab='abc' is invalid .* 2 of its characters") as e:
        load_text(path, seq_len=4, vocab="abc", unknown="error")
    assert "'\\t', 'é'" in str(e.value) and "unknown='map'" in str(e.value)
    many = tmp_path / "many.txt"
    many.write_text("a1234567" * 10, encoding="utf-8")
    with pytest.raises(ValueError, match=r"7 of its characters .*'1', '2', '3', '4', '5', \.\.\."):
        load_text(many, seq_len=4, vocab="a", unknown="error")
    with pytest.raises(ValueError, match=r"vocab='aba' is invalid: it repeats 'a'"):
        load_text(path, seq_len=4, vocab="aba")
    with pytest.raises(ValueError, match=r"vocab='' is invalid"):
        load_text(path, seq_len=4, vocab="")


def test_user_file_refusals(tmp_path):
    with pytest.raises(ValueError, match=r"source='.*missing.txt' is invalid: no such file"):
        load_text(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match=r"source=.* is invalid: it is a directory"):
        load_text(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"source=.*empty.txt' is invalid: the text is empty"):
        load_text(empty)
    short = tmp_path / "short.txt"
    short.write_text("x" * 129, encoding="utf-8")  # 2 (64 + 1) = 130 are needed
    with pytest.raises(ValueError, match=r"too short for seq_len=64: the text has 129"):
        load_text(short)
    assert load_text(short, seq_len=63).x_train.shape == (1, 63)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café au lait ".encode("latin-1") * 20)
    with pytest.raises(ValueError, match=r"source=.*latin1.txt' is invalid: not UTF-8 .*0xe9"):
        load_text(latin, seq_len=4)
    with pytest.raises(ValueError, match=r"source=3 is invalid"):
        load_text(3)
    with pytest.raises(ValueError, match=r"seq_len=1 is invalid: must be an integer >= 2"):
        load_text(short, seq_len=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "latin1.txt", "short.txt"]


def test_decode_refusals(docs):
    with pytest.raises(ValueError, match=r"tokens has entries outside \[0, 3\): found 3"):
        decode("abc", [0, 3])
    with pytest.raises(ValueError, match=r"tokens has shape \(\) "):
        decode("abc", 1)
    with pytest.raises(ValueError, match=r"dataset_or_vocab=5 is invalid"):
        decode(5, [0])


# -- the synthetic source -------------------------------------------------------------------


def _closed_form(src: SyntheticSource) -> float:
    """Independent lines separated by "\\n": h = E[H(line)] / E[length of a line]."""
    s, L = src.stop_prob, src.min_len
    h_steps = -sum(p * math.log2(p) for p in src.steps)
    h_stop = -(s * math.log2(s) + (1 - s) * math.log2(1 - s)) if s < 1 else 0.0
    extra = (1 - s) / s  # mean number of letters beyond min_len
    line = math.log2(src.n_keys) + math.log2(src.n_letters) + (L - 1 + extra) * h_steps
    return (line + h_stop / s) / (L + extra + 3)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"n_keys": 3, "n_letters": 5, "min_len": 2, "stop_prob": 0.4, "steps": (0.5, 0.5)},
        {"n_keys": 1, "n_letters": 1, "min_len": 4, "stop_prob": 0.25, "steps": (1.0,)},
        {"n_keys": 26, "n_letters": 4, "min_len": 1, "stop_prob": 1.0, "steps": (0.2, 0.8)},
    ],
    ids=["default", "small", "lengths-only", "fixed-length"],
)
def test_entropy_rate_matches_the_renewal_closed_form(params):
    src = SyntheticSource(**params)
    assert src.entropy_rate == pytest.approx(_closed_form(src), rel=1e-12)
    pi = src.stationary
    assert pi.sum() == pytest.approx(1.0) and pi.min() > -1e-12


def test_default_entropy_rate():
    src = SyntheticSource()
    assert src.entropy_rate == pytest.approx(1.5537952526705, abs=1e-12)
    assert src.alphabet == "\nABCDEFGHabcdefgh"
    # one hand-computed special case: one key, one letter, min_len 4, stop 1/4 — only the
    # body length is random, H = H₂(1/4)/(1/4) = 3.2451 bits per line of 4 + 3 + 3 = 10 chars
    one = SyntheticSource(n_keys=1, n_letters=1, min_len=4, stop_prob=0.25, steps=(1.0,))
    assert one.entropy_rate == pytest.approx(4 * (2 - 0.75 * math.log2(3)) / 10, rel=1e-12)


def test_entropy_rate_equals_block_entropy_limit():
    """Brute force on a 5-character instance: H(X_1..n) - H(X_1..n-1) of the stationary
    process (every sequence of positive probability enumerated) decreases to the entropy
    rate from above; here the gap halves at every step."""
    src = SyntheticSource(n_keys=2, n_letters=2, min_len=1, stop_prob=0.5, steps=(0.7, 0.3))
    h = src.entropy_rate
    level, previous, rates = {"": 0.0}, 0.0, []
    for _ in range(8):
        longer = {}
        for prefix, logp in level.items():
            for c in src.alphabet:
                step = src.log2_prob(prefix + c, start="stationary")[-1]
                if step > -np.inf:
                    longer[prefix + c] = logp + step
        level = longer
        p = np.exp2(np.array(list(level.values())))
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        block = float(-(p * np.log2(p)).sum())
        rates.append(block - previous)
        previous = block
    rates = np.array(rates)
    assert np.all(np.diff(rates) < 0) and np.all(rates > h)
    assert rates[-1] - h < 0.004
    np.testing.assert_allclose(np.diff(rates - h)[3:] / (rates - h)[3:-1], -0.5, atol=1e-9)
    assert 2 * rates[-1] - rates[-2] == pytest.approx(h, abs=1e-9)


def test_empirical_bits_per_char_match_the_entropy_rate():
    src = SyntheticSource()
    text = src.sample(400_000, seed=3)
    bits = -src.log2_prob(text)
    assert np.all(np.isfinite(bits))
    blocks = bits.reshape(40, 10_000).mean(axis=1)  # batch means: blocks ≫ a line (20 chars)
    se = blocks.std(ddof=1) / math.sqrt(blocks.size)
    assert abs(bits.mean() - src.entropy_rate) < 4 * se
    assert 0.001 < se < 0.01
    assert src.bits_per_char(text) == pytest.approx(bits.mean())


def test_sample_is_seeded_and_well_formed():
    src = SyntheticSource()
    a, b, c = src.sample(5000, seed=1), src.sample(5000, seed=1), src.sample(5000, seed=2)
    assert a == b and a != c and len(a) == 5000
    assert src.sample(100_000, seed=1)[:5000] == a  # a prefix of a longer sample
    assert src.sample(300) == src.sample(300, seed=0)  # the field's seed
    lines = a.split("\n")[:-1]
    assert set(a) <= set(src.alphabet)
    for line in lines:
        key, body = line[0], line[1:-1]
        assert line[-1] == key and key.isupper() and body.islower()
        assert len(body) >= src.min_len
        moves = {(ord(y) - ord(x)) % 8 for x, y in zip(body, body[1:], strict=False)}
        assert moves <= {1, 2, 3}
    lengths = np.array([len(line) - 2 for line in lines])
    assert lengths.mean() == pytest.approx(17, abs=1.0)  # min_len + (1 - s)/s


def test_log2_prob_exact_values():
    src = SyntheticSource()
    # "Aab": key 1/8, first letter 1/8, then +1 with 0.6; the closing key after min_len
    logs = src.log2_prob("Aab")
    np.testing.assert_allclose(logs, [-3, -3, math.log2(0.6)])
    line = "A" + "abcdefghab" + "A\n"
    logs = src.log2_prob(line + "B")
    assert logs[11] == pytest.approx(math.log2(0.125)) and logs[12] == 0.0
    assert logs[13] == -3.0
    # impossible characters: the wrong key, a key too early, a character not in the alphabet
    for bad in ("A" + "abcdefghab" + "B", "Aab" + "A", "Aaz"):
        logs = src.log2_prob(bad)
        assert logs[-1] == -np.inf and np.all(np.isfinite(logs[:-1]))
    assert np.all(src.log2_prob("AaeA\nBab")[2:] == -np.inf)
    assert src.bits_per_char("Aaz") == np.inf
    # from anywhere in a line: "\n" pins the state; the next key is then 3 bits
    logs = src.log2_prob("bcdA\nB", start="stationary")
    assert logs[-1] == pytest.approx(-3.0) and logs[3] < logs[-1]
    with pytest.raises(ValueError, match=r"start='middle' is invalid"):
        src.log2_prob("A", start="middle")


def test_synthetic_source_refusals():
    for kwargs, match in [
        ({"n_keys": 0}, r"n_keys=0 is invalid"),
        ({"n_letters": 27}, r"n_letters=27 is invalid: allowed range is \[1, 26\]"),
        ({"min_len": 0}, r"min_len=0 is invalid"),
        ({"stop_prob": 0.0}, r"stop_prob=0.0 is invalid"),
        ({"stop_prob": 1.5}, r"stop_prob=1.5 is invalid"),
        ({"steps": (0.5, 0.4)}, r"steps=\(0.5, 0.4\) is invalid: positive probabilities"),
        ({"steps": (0.5, 0.5), "n_letters": 1}, r"between 1 and n_letters=1"),
        ({"seed": -1}, r"seed=-1 is invalid"),
    ]:
        with pytest.raises(ValueError, match=match):
            SyntheticSource(**kwargs)
    with pytest.raises(ValueError, match=r"n_chars=0 is invalid"):
        SyntheticSource().sample(0)


def test_load_synthetic():
    d = load_synthetic(n_chars=20_000, seq_len=32, seed=5)
    src = SyntheticSource()
    text = src.sample(20_000, seed=5)
    assert d.name == "synthetic" and d.n_classes == 17
    assert d.x_train.shape == (18_000 // 33, 32) and d.x_test.shape == (2000 // 33, 32)
    meta = dict(d.meta)
    assert float(meta["entropy_rate_bits"]) == src.entropy_rate
    assert meta["origin"] == src.describe() and "stop_prob=0.125" in meta["origin"]
    assert meta["seed"] == "5" and meta["characters"] == "20000"
    assert meta["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert json.loads(meta["vocab"]) == list(src.alphabet)
    assert decode(d, d.x_train[3]) == text[99:131] and decode(d, d.y_train[3]) == text[100:132]
    assert decode(d, d.x_test[0]) == text[18_000:18_032]
    small = load_synthetic(n_chars=1000, seq_len=8, train_size=5, test_fraction=0.5)
    assert small.x_train.shape == (5, 8) and small.x_test.shape == (500 // 9, 8)
    with pytest.raises(ValueError, match=r"n_chars=10 is invalid for seq_len=8"):
        load_synthetic(n_chars=10, seq_len=8)
    with pytest.raises(ValueError, match=r"seq_len=1 is invalid"):
        load_synthetic(seq_len=1)
    with pytest.raises(ValueError, match=r"source='x' is invalid"):
        load_synthetic(source="x")


# -- MNIST-1D -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist1d():
    return load_mnist1d()


def test_mnist1d_shapes_and_classes(mnist1d):
    d = mnist1d
    assert d.x_train.shape == (4000, 40) and d.x_test.shape == (1000, 40)
    assert d.x_train.dtype == jnp.float32 and d.y_train.dtype == jnp.int32
    assert d.n_classes == 10 and d.name == "mnist1d" and not d.tokens
    counts = np.bincount(np.asarray(d.y_train), minlength=10)
    test_counts = np.bincount(np.asarray(d.y_test), minlength=10)
    np.testing.assert_array_equal(counts + test_counts, 500)  # 500 per digit, shuffled
    np.testing.assert_array_equal(counts, [398, 396, 411, 394, 394, 402, 401, 404, 402, 398])
    x = np.concatenate([d.x_train, d.x_test])  # standardised by the generator, over all 5000
    assert abs(x.mean()) < 1e-3 and x.std() == pytest.approx(1.0, abs=0.01)
    meta = dict(d.meta)
    assert meta["origin"].startswith("mnist1d 0.0.") and meta["origin"].endswith("seed 42")
    assert load_mnist1d(train_size=100).n_train == 100
    with pytest.raises(ValueError, match=r"train_size=4001 is invalid"):
        load_mnist1d(train_size=4001)
    with pytest.raises(ValueError, match=r"seed=-1 is invalid"):
        load_mnist1d(seed=-1)


def test_mnist1d_offline_deterministic_and_leaves_the_global_rngs_alone(mnist1d, monkeypatch):
    import requests

    def refuse(*args, **kwargs):
        raise AssertionError("no network access is allowed")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(requests, "get", refuse)
    np.random.seed(123)
    random.seed(7)
    numpy_before, python_before = np.random.get_state(), random.getstate()
    load_mnist1d.cache_clear()
    again = load_mnist1d()  # generated anew, offline
    raw = _mnist1d._cached(42)  # the arrays just generated
    after = np.random.get_state()
    assert numpy_before[0] == after[0] and np.array_equal(numpy_before[1], after[1])
    assert numpy_before[2:] == after[2:] and random.getstate() == python_before
    np.testing.assert_array_equal(again.x_train, mnist1d.x_train)
    np.testing.assert_array_equal(again.y_test, mnist1d.y_test)
    np.testing.assert_array_equal(raw[0].astype(np.float32), mnist1d.x_train)
    assert again.meta == mnist1d.meta
    digest = hashlib.sha256(raw[0].tobytes() + raw[2].tobytes()).hexdigest()
    assert dict(again.meta)["sha256"] == digest
    other = _mnist1d._generate(1)
    assert not np.array_equal(other[0], raw[0])
