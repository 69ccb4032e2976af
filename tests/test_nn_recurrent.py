"""`sdelens.nn._recurrent`: the recurrent language model and classifier against hand-written
NumPy (float64) cells, their gradients against finite differences, causality, the 1-D CNN
against a NumPy convolution, `make_model` dispatch and bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sdelens import nn

KEY = jax.random.key(0)

# -- hand-written NumPy reference (float64) ------------------------------------------------


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _lstm_step(p, x, state, order=(0, 1, 2, 3)):
    """PyTorch/equinox LSTM: the stacked pre-activations are [input, forget, cell, output].
    `order` permutes the four blocks (a deliberately wrong cell, to show the test can fail)."""
    h, c = state
    n = h.shape[0]
    pre = p["w_ih"] @ x + p["w_hh"] @ h + p["bias"]
    blocks = [pre[k * n : (k + 1) * n] for k in order]
    i, f, g, o = _sigmoid(blocks[0]), _sigmoid(blocks[1]), np.tanh(blocks[2]), _sigmoid(blocks[3])
    c = f * c + i * g
    h = o * np.tanh(c)
    return h, (h, c)


def _gru_step(p, x, h, order=(0, 1, 2)):
    """PyTorch/equinox GRU: blocks [reset r, update z, candidate n];
    n = tanh(W_in x + b_n' + r ⊙ (W_hn h + b_hn)), h' = (1 - z) ⊙ n + z ⊙ h, where the input
    bias `bias` covers all three blocks and `bias_n` is the hidden-side candidate bias."""
    n_h = h.shape[0]
    gi = p["w_ih"] @ x + p["bias"]
    gh = p["w_hh"] @ h
    gi = [gi[k * n_h : (k + 1) * n_h] for k in order]
    gh = [gh[k * n_h : (k + 1) * n_h] for k in order]
    r = _sigmoid(gi[0] + gh[0])
    z = _sigmoid(gi[1] + gh[1])
    cand = np.tanh(gi[2] + r * (gh[2] + p["bias_n"]))
    h = (1.0 - z) * cand + z * h
    return h, h


def _np_hidden_states(p, cell, xs, order=None):
    n_h = p["w_hh"].shape[1]
    zero = np.zeros(n_h)
    state = (zero, zero) if cell == "lstm" else zero
    step = _lstm_step if cell == "lstm" else _gru_step
    kwargs = {} if order is None else {"order": order}
    hs = []
    for x in xs:  # a plain loop over time: independent of lax.scan
        h, state = step(p, x, state, **kwargs)
        hs.append(h)
    return np.stack(hs)


def _np_lm_logits(p, cell, tokens, order=None):
    hs = _np_hidden_states(p, cell, p["embedding"][np.asarray(tokens)], order)
    return hs @ p["w_out"].T + p["b_out"]


def _np_cross_entropy(logits, targets):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -np.mean(log_probs[np.arange(len(targets)), targets])


def _params(model) -> dict:
    """The model's (or a gradient's) arrays by name, as float64 NumPy."""
    cell = model.cell
    p = {
        "w_ih": cell.weight_ih,
        "w_hh": cell.weight_hh,
        "bias": cell.bias,
        "w_out": model.readout.weight,
        "b_out": model.readout.bias,
    }
    if isinstance(cell, eqx.nn.GRUCell):
        p["bias_n"] = cell.bias_n
    if isinstance(model, nn.RecurrentLM):
        p["embedding"] = model.embedding.weight
    return {k: np.asarray(v, dtype=np.float64) for k, v in p.items()}


def _shape(model, x):
    return eqx.filter_eval_shape(lambda m, x: m(x), model, x).shape


def _to_float64(model):
    return jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, model)


# -- the language model ----------------------------------------------------------------------

VOCAB, EMBED, HIDDEN = 5, 3, 4
SEQUENCE = np.array([0, 3, 1, 4, 2, 2, 1])  # inputs [:6] use every token; targets [1:]


def _tiny_lm(cell):
    return nn.RecurrentLM(VOCAB, cell=cell, embed=EMBED, hidden=HIDDEN, key=KEY)


def _lm_loss(model, sequence):
    logits = model(sequence[:-1])
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, sequence[1:]))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_lm_matches_numpy_cell(cell):
    model = _tiny_lm(cell)
    gates = 4 if cell == "lstm" else 3
    n_params = VOCAB * EMBED + gates * HIDDEN * (EMBED + HIDDEN + 1) + HIDDEN * VOCAB + VOCAB
    n_params += HIDDEN if cell == "gru" else 0  # the GRU's separate candidate bias
    assert nn.count_params(model) == n_params  # 168 (LSTM), 140 (GRU)
    tokens = SEQUENCE[:-1]
    logits = eqx.filter_jit(lambda m, t: m(t))(model, jnp.asarray(tokens))
    assert logits.shape == (6, VOCAB) and logits.dtype == jnp.float32
    p = _params(model)
    expected = _np_lm_logits(p, cell, tokens)
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=0, atol=1e-5)
    # The comparison can fail: the same parameters in a cell with two gates swapped (input ↔
    # forget for the LSTM, reset ↔ update for the GRU) give logits far outside the tolerance.
    swapped = (1, 0, 2, 3) if cell == "lstm" else (1, 0, 2)
    assert np.max(np.abs(_np_lm_logits(p, cell, tokens, order=swapped) - expected)) > 1e-3
    assert np.std(expected) > 1e-2  # and the logits are not degenerate


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_lm_gradient_matches_finite_differences(cell):
    """JAX's gradient (float64, in an `enable_x64` context only) of the cross-entropy against
    central differences of the independent NumPy loss, for every parameter entry."""
    model = _tiny_lm(cell)
    targets = SEQUENCE[1:]
    p = _params(model)
    with jax.enable_x64(True):
        model64 = _to_float64(model)
        loss, grads = eqx.filter_value_and_grad(_lm_loss)(model64, jnp.asarray(SEQUENCE))
        assert grads.cell.weight_hh.dtype == jnp.float64
        grads = _params(grads)
    np.testing.assert_allclose(
        float(loss), _np_cross_entropy(_np_lm_logits(p, cell, SEQUENCE[:-1]), targets), rtol=1e-12
    )
    eps = 1e-6
    for name, value in p.items():
        fd = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            losses = []
            for sign in (1.0, -1.0):
                q = dict(p)
                q[name] = value.copy()
                q[name][idx] += sign * eps
                losses.append(_np_cross_entropy(_np_lm_logits(q, cell, SEQUENCE[:-1]), targets))
            fd[idx] = (losses[0] - losses[1]) / (2 * eps)
        # float64 central differences are accurate to ~1e-9 here; every block's gradient is
        # far from zero (all tokens occur), so agreement is not that of two zeros.
        assert np.linalg.norm(fd) > 1e-3, name
        np.testing.assert_allclose(grads[name], fd, rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_lm_is_causal(cell):
    model = _tiny_lm(cell)
    forward = eqx.filter_jit(lambda m, t: m(t))
    tokens = np.array([1, 4, 0, 2, 3, 3, 0, 1])
    logits = np.asarray(forward(model, jnp.asarray(tokens)))
    for j in range(1, len(tokens)):
        changed = tokens.copy()
        changed[j] = (changed[j] + 2) % VOCAB
        other = np.asarray(forward(model, jnp.asarray(changed)))
        np.testing.assert_array_equal(other[:j], logits[:j])  # exactly: the past is untouched
        assert np.max(np.abs(other[j] - logits[j])) > 1e-4  # position j sees token j


def test_lm_batched_and_ensemble_shapes():
    model = nn.RecurrentLM(11, cell="gru", embed=4, hidden=8, key=KEY)
    batch = jax.random.randint(KEY, (3, 9), 0, 11)
    logits = eqx.filter_jit(lambda m, b: jax.vmap(m)(b))(model, batch)
    assert logits.shape == (3, 9, 11)
    np.testing.assert_allclose(logits[1], model(batch[1]), rtol=1e-5, atol=1e-6)
    assert _shape(model, jnp.array([7])) == (1, 11)  # a single token is a sequence
    # An ensemble over keys (abstractly: tracing only, no compilation): stacked parameters.
    build = eqx.filter_vmap(lambda k: nn.RecurrentLM(11, hidden=8, key=k))
    ensemble = eqx.filter_eval_shape(build, jax.random.split(KEY, 2))
    single = nn.RecurrentLM(11, hidden=8, key=KEY)
    stacked = [leaf.shape for leaf in jax.tree.leaves(ensemble)]
    assert stacked == [(2, *leaf.shape) for leaf in jax.tree.leaves(single)]


def test_lm_learns_a_periodic_sequence():
    """A sanity training run: the LSTM LM learns to continue 0 1 2 3 0 1 2 3 ..."""
    sequence = jnp.asarray(np.arange(17) % 4)
    model = nn.RecurrentLM(4, embed=4, hidden=8, key=KEY)
    optimizer = optax.adam(0.05)

    @eqx.filter_jit
    def step(model, state):
        loss, grads = eqx.filter_value_and_grad(_lm_loss)(model, sequence)
        updates, state = optimizer.update(grads, state)
        return eqx.apply_updates(model, updates), state, loss

    state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    model, state, first = step(model, state)
    for _ in range(150):
        model, state, loss = step(model, state)
    assert float(first) > 1.0 and float(loss) < 0.05  # from ~log 4 to nearly deterministic


# -- the sequence classifier -----------------------------------------------------------------


@pytest.mark.parametrize(("cell", "in_features"), [("gru", 1), ("gru", 2), ("lstm", 1)])
def test_classifier_matches_numpy_cell(cell, in_features):
    model = nn.RecurrentClassifier(3, cell=cell, hidden=4, in_features=in_features, key=KEY)
    signal = np.asarray(jax.random.normal(jax.random.key(1), (7, in_features)))
    x = signal[:, 0] if in_features == 1 else signal  # (t,) for one feature per step
    logits = eqx.filter_jit(lambda m, x: m(x))(model, jnp.asarray(x, dtype=jnp.float32))
    assert logits.shape == (3,)
    p = _params(model)
    final = _np_hidden_states(p, cell, signal)[-1]
    expected = p["w_out"] @ final + p["b_out"]
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=0, atol=1e-5)
    swapped = (1, 0, 2, 3) if cell == "lstm" else (1, 0, 2)
    wrong = p["w_out"] @ _np_hidden_states(p, cell, signal, order=swapped)[-1] + p["b_out"]
    assert np.max(np.abs(wrong - expected)) > 1e-3
    if in_features == 1:  # (t,) and (t, 1) are the same signal
        np.testing.assert_array_equal(model(jnp.asarray(x)), model(jnp.asarray(signal)))


def test_classifier_on_mnist1d_shaped_batch():
    model = nn.RecurrentClassifier(10, key=KEY)
    assert nn.count_params(model) == 3626  # the docstring's count
    assert nn.count_params(nn.RecurrentClassifier(10, cell="lstm", key=KEY)) == 4682
    x = jax.random.normal(KEY, (5, 40))
    logits = jax.vmap(model)(x)
    assert logits.shape == (5, 10) and float(jnp.std(logits[:, 0])) > 1e-4


# -- the 1-D CNN -----------------------------------------------------------------------------


def _np_cnn1d(model, x):
    h = np.asarray(x, dtype=np.float64).reshape(1, -1)
    for conv in model.convs:
        w = np.asarray(conv.weight, np.float64)  # (out, in, k): cross-correlation
        b = np.asarray(conv.bias, np.float64)[:, 0]
        k = w.shape[2]
        padded = np.pad(h, ((0, 0), ((k - 1) // 2, k // 2)))
        n_out = (h.shape[1] + 1) // 2  # stride 2, "same" padding: ceil(L / 2)
        out = np.stack(
            [np.einsum("oik,ik->o", w, padded[:, 2 * s : 2 * s + k]) for s in range(n_out)], 1
        )
        h = np.tanh(out + b[:, None])
    return np.asarray(model.readout.weight, np.float64) @ h.mean(axis=1) + np.asarray(
        model.readout.bias, np.float64
    )


@pytest.mark.parametrize(("length", "channels", "kernel"), [(40, (16, 16), 5), (9, (3,), 4)])
def test_cnn1d_matches_numpy_and_shapes(length, channels, kernel):
    model = nn.CNN1D(10, length, channels=channels, kernel=kernel, key=KEY)
    x = jax.random.normal(jax.random.key(2), (length,))
    logits = eqx.filter_jit(lambda m, x: m(x))(model, x)
    assert logits.shape == (10,)
    np.testing.assert_array_equal(logits, model(x[None]))  # (L,) and (1, L)
    np.testing.assert_allclose(np.asarray(logits), _np_cnn1d(model, x), rtol=0, atol=1e-5)
    assert jax.vmap(model)(jnp.stack([x, -x, 2 * x])).shape == (3, 10)


def test_cnn1d_defaults_and_shift():
    model = nn.CNN1D(10, 40, key=KEY)
    assert nn.count_params(model) == 1562
    x = jax.random.normal(KEY, (40,))
    logits = model(x)
    # A pattern's position matters (the stride-2 grid and the zero padding), if only a little:
    # a circular shift by one step moves the logits, much more than float32 rounding.
    for shift in (1, 3):
        moved = model(jnp.roll(x, shift))
        assert float(jnp.max(jnp.abs(moved - logits))) > 1e-3
    assert float(jnp.max(jnp.abs(model(-x) - logits))) > 1e-2  # the input matters
    np.testing.assert_allclose(model(jnp.arange(40)), model(jnp.arange(40.0)), rtol=1e-6)


# -- make_model ------------------------------------------------------------------------------


def test_make_model_dispatch():
    assert {"lstm", "gru", "cnn1d"} <= set(nn.MODELS)
    for name in ("lstm", "gru"):
        clf = nn.make_model(name, 10, (40,), key=KEY)
        assert isinstance(clf, nn.RecurrentClassifier) and clf.cell_type == name
        assert clf.in_features == 1 and _shape(clf, jnp.ones(40)) == (10,)
        multi = nn.make_model(name, 4, (12, 3), key=KEY, hidden=8)
        assert multi.in_features == 3 and multi.cell.hidden_size == 8
        assert _shape(multi, jnp.ones((12, 3))) == (4,)
        lm = nn.make_model(name, 64, (20,), key=KEY, tokens=True)
        assert isinstance(lm, nn.RecurrentLM) and lm.cell_type == name
        assert lm.vocab_size == 64 and _shape(lm, jnp.arange(20)) == (20, 64)
    assert nn.count_params(nn.make_model("lstm", 64, (20,), key=KEY, tokens=True)) == 25920
    assert nn.count_params(nn.make_model("gru", 64, (20,), key=KEY, tokens=True)) == 20800
    for shape in ((40,), (1, 40)):
        cnn = nn.make_model("cnn1d", 10, shape, key=KEY)
        assert isinstance(cnn, nn.CNN1D) and cnn.length == 40 and nn.count_params(cnn) == 1562
        assert _shape(cnn, jnp.ones(shape)) == (10,)
    assert len(nn.make_model("cnn1d", 2, (40,), key=KEY, channels=(4, 4, 4)).convs) == 3


def test_make_model_bad_input():
    with pytest.raises(ValueError, match="model='rnn' is invalid.*'lstm', 'gru', 'cnn1d'"):
        nn.make_model("rnn", 10, (40,), key=KEY)
    for name in ("mlp", "cnn1d", "transformer"):
        with pytest.raises(ValueError, match=f"tokens=True is invalid with model='{name}'"):
            nn.make_model(name, 10, (40,), key=KEY, tokens=True)
    with pytest.raises(ValueError, match="tokens='yes' is invalid"):
        nn.make_model("lstm", 10, (40,), key=KEY, tokens="yes")
    for shape in ((8, 8), (2, 40), (1, 1, 40)):
        with pytest.raises(ValueError, match=r"model='cnn1d' needs 1-D signals \(L,\) or \(1, L\)"):
            nn.make_model("cnn1d", 10, shape, key=KEY)
    with pytest.raises(ValueError, match=r"model='lstm' with tokens=True needs token sequences"):
        nn.make_model("lstm", 10, (12, 3), key=KEY, tokens=True)
    with pytest.raises(ValueError, match=r"model='gru' needs sequences \(t,\) or \(t, c\)"):
        nn.make_model("gru", 10, (2, 3, 4), key=KEY)
    with pytest.raises(ValueError, match="cell='gru' is invalid for make_model"):
        nn.make_model("lstm", 10, (40,), key=KEY, cell="gru")
    with pytest.raises(ValueError, match="n_classes=0 is invalid"):
        nn.make_model("gru", 0, (40,), key=KEY, tokens=True)
    with pytest.raises(ValueError, match="hidden=0 is invalid"):
        nn.make_model("gru", 3, (40,), key=KEY, hidden=0)


# -- bad input -------------------------------------------------------------------------------


def test_bad_arguments_name_the_parameter():
    cases = [
        (lambda: nn.RecurrentLM(0, key=KEY), "vocab_size=0 is invalid"),
        (lambda: nn.RecurrentLM(5, hidden=0, key=KEY), "hidden=0 is invalid"),
        (lambda: nn.RecurrentLM(5, embed=0, key=KEY), "embed=0 is invalid"),
        (lambda: nn.RecurrentLM(5, cell="rnn", key=KEY), "cell='rnn' is invalid.*'lstm', 'gru'"),
        (lambda: nn.RecurrentClassifier(0, key=KEY), "n_classes=0 is invalid"),
        (lambda: nn.RecurrentClassifier(3, hidden=0, key=KEY), "hidden=0 is invalid"),
        (lambda: nn.RecurrentClassifier(3, cell="rnn", key=KEY), "cell='rnn' is invalid"),
        (lambda: nn.RecurrentClassifier(3, in_features=0, key=KEY), "in_features=0 is invalid"),
        (lambda: nn.CNN1D(3, 0, key=KEY), "length=0 is invalid"),
        (lambda: nn.CNN1D(3, 40, kernel=0, key=KEY), "kernel=0 is invalid"),
        (lambda: nn.CNN1D(3, 40, channels=(), key=KEY), r"channels=\(\) is invalid"),
        (lambda: nn.CNN1D(3, 40, channels=(4, 0), key=KEY), "channels=0 is invalid"),
        (lambda: nn.CNN1D(3, 40, channels="16", key=KEY), "channels='16' is invalid"),
    ]
    for build, message in cases:
        with pytest.raises(ValueError, match=message):
            build()


def test_bad_inputs_are_rejected_at_trace_time():
    lm = _tiny_lm("lstm")
    for tokens in (jnp.zeros(0, jnp.int32), jnp.zeros((2, 3), jnp.int32)):
        with pytest.raises(ValueError, match=r"tokens has shape \(.*\): one sequence \(t,\)"):
            eqx.filter_jit(lambda m, t: m(t))(lm, tokens)
    with pytest.raises(ValueError, match="tokens has dtype float32: integer token ids in"):
        lm(jnp.zeros(3))
    for bad in ([0, 5, 1], [-1, 2]):  # concrete ids are checked against vocab_size=5
        with pytest.raises(ValueError, match=r"tokens has ids in \[.*\]: ids in \[0, 5\)"):
            lm(jnp.array(bad))
    clf = nn.RecurrentClassifier(3, hidden=4, in_features=2, key=KEY)
    for x in (jnp.zeros(7), jnp.zeros((7, 3)), jnp.zeros((0, 2))):
        with pytest.raises(ValueError, match=r"input has shape .*: one signal \(t, 2\)"):
            clf(x)
    with pytest.raises(ValueError, match=r"one signal \(t,\) or \(t, 1\) with t >= 1"):
        nn.RecurrentClassifier(3, hidden=4, key=KEY)(jnp.zeros(0))
    with pytest.raises(ValueError, match=r"input has shape \(39,\): one signal \(40,\)"):
        nn.CNN1D(3, 40, key=KEY)(jnp.zeros(39))
