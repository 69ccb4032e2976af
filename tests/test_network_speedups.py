"""The network speed-ups compute what they replace: convolutions as patch products (channels
last), the recurrent cells with row-vector products, the per-example moments, the
exact minibatch covariance as one pullback, and the Euler step of an SDE as one term (same
increments as diffrax's `MultiTerm`, one backward pass per step)."""

import re

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl
from sdelens import nn
from sdelens._brownian import CounterBrownianPath
from sdelens._sde._euler import EulerIncrementTerm, combine_increment, euler_increment
from sdelens.nn._conv import avg_pool, conv
from sdelens.nn._recurrent import _scan

KEY = jax.random.key(0)


def _f64(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, tree)


def _channels_last(f, x):
    return jnp.moveaxis(f(jnp.moveaxis(x, 0, -1)), -1, 0)


# -- convolutions and pooling ---------------------------------------------------------------

CONVS = [  # (layer, input size): odd and even sizes, strides, asymmetric padding, no bias
    (lambda k: eqx.nn.Conv2d(1, 6, 3, padding=1, key=k), 8),  # LeNet, ResNet
    (lambda k: eqx.nn.Conv2d(3, 5, (3, 2), stride=(2, 1), padding=((1, 0), (0, 1)), key=k), 7),
    (lambda k: eqx.nn.Conv2d(2, 4, 3, padding=1, use_bias=False, key=k), 5),
    (lambda k: eqx.nn.Conv1d(16, 16, 5, stride=2, padding=((2, 2),), key=k), 40),  # CNN1D
    (lambda k: eqx.nn.Conv1d(3, 4, 4, stride=2, padding=((1, 2),), key=k), 9),
]


@pytest.mark.parametrize("make, size", CONVS)
def test_conv_is_the_layer_channels_last(make, size):
    with jax.enable_x64(True):
        layer = _f64(make(KEY))
        x = jax.random.normal(KEY, (layer.in_channels,) + (size,) * layer.num_spatial_dims)
        want = eqx.filter_jit(lambda m, z: m(z))(layer, x)
        got = eqx.filter_jit(lambda m, z: _channels_last(lambda u: conv(m, u), z))(layer, x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)


def test_conv_rejects_layers_it_does_not_compute():
    for layer in (
        eqx.nn.Conv2d(2, 2, 3, groups=2, key=KEY),
        eqx.nn.Conv2d(1, 1, 3, dilation=2, key=KEY),
        eqx.nn.Conv2d(1, 1, 3, padding=1, padding_mode="REFLECT", key=KEY),
        eqx.nn.Conv2d(1, 1, 3, padding="SAME", key=KEY),
    ):
        with pytest.raises(ValueError, match="is invalid"):
            conv(layer, jnp.zeros((9, 9, layer.in_channels)))


@pytest.mark.parametrize("size", [4, 5, 9])
def test_avg_pool_is_the_layer_channels_last(size):
    x = jax.random.normal(KEY, (3, size, size))
    want = eqx.nn.AvgPool2d(2, stride=2)(x)
    got = jax.jit(lambda z: _channels_last(lambda u: avg_pool(u, 2), z))(x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


# -- the models against their previous formulation (eqx layers, channels first) ------------


def _old_lenet(m, x):
    x = jnp.reshape(x, (m.in_channels, m.image_size, m.image_size))
    x = m.pool(jax.nn.relu(m.conv1(x)))
    x = m.pool(jax.nn.relu(m.conv2(x)))
    return m.fc2(jax.nn.relu(m.fc1(jnp.ravel(x))))


def _old_resnet(m, x):
    x = jax.nn.relu(m.stem(jnp.reshape(x, (m.in_channels, m.image_size, m.image_size))))
    for block in m.blocks:
        x = jax.nn.relu(x + block.conv2(jax.nn.relu(block.conv1(x))))
    return m.head(jnp.mean(x, axis=(1, 2)))


def _old_cnn1d(m, x):
    x = jnp.reshape(x, (1, m.length))
    for layer in m.convs:
        x = jnp.tanh(layer(x))
    return m.readout(jnp.mean(x, axis=1))


@pytest.mark.parametrize(
    "name, shape, old, kwargs",
    [
        ("lenet", (1, 8, 8), _old_lenet, {}),
        ("lenet", (3, 9, 9), _old_lenet, {}),
        ("resnet", (2, 6, 6), _old_resnet, {}),
        ("cnn1d", (40,), _old_cnn1d, {}),
        ("cnn1d", (1, 13), _old_cnn1d, {"channels": (4, 5, 3), "kernel": 4}),
    ],
)
def test_convolutional_models_compute_the_same_function(name, shape, old, kwargs):
    with jax.enable_x64(True):
        model = _f64(nn.make_model(name, 7, shape, key=KEY, **kwargs))
        x = jax.random.normal(jax.random.key(1), (5, *shape))
        new_logits = eqx.filter_jit(lambda m, z: jax.vmap(m)(z))(model, x)
        old_logits = eqx.filter_jit(lambda m, z: jax.vmap(lambda u: old(m, u))(z))(model, x)
        np.testing.assert_allclose(new_logits, old_logits, rtol=0, atol=1e-12)


def _old_scan(cell, xs):
    zero = jnp.zeros(cell.hidden_size, xs.dtype)
    lstm = isinstance(cell, eqx.nn.LSTMCell)

    def step(state, x):
        state = cell(x, state)
        return state, (state[0] if lstm else state)

    return jax.lax.scan(step, (zero, zero) if lstm else zero, xs)[1]


@pytest.mark.parametrize("cell_type", [eqx.nn.LSTMCell, eqx.nn.GRUCell])
@pytest.mark.parametrize("use_bias", [True, False])
def test_recurrent_scan_is_the_cell(cell_type, use_bias):
    with jax.enable_x64(True):
        cell = cell_type(3, 5, use_bias=use_bias, key=KEY, dtype=jnp.float64)
        xs = jax.random.normal(jax.random.key(1), (7, 3))
        new_hs = eqx.filter_jit(_scan)(cell, xs)
        old_hs = eqx.filter_jit(_old_scan)(cell, xs)
        np.testing.assert_allclose(new_hs, old_hs, rtol=0, atol=1e-14)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_language_model_is_its_layers(cell):
    with jax.enable_x64(True):
        model = _f64(nn.make_model(cell, 11, (9,), key=KEY, tokens=True, embed=4, hidden=6))
        tokens = jax.random.randint(jax.random.key(1), (3, 9), 0, 11)

        def old(m, seq):
            return jax.vmap(m.readout)(_old_scan(m.cell, jax.vmap(m.embedding)(seq)))

        new_logits = eqx.filter_jit(lambda m, z: jax.vmap(m)(z))(model, tokens)
        old_logits = eqx.filter_jit(lambda m, z: jax.vmap(lambda u: old(m, u))(z))(model, tokens)
        np.testing.assert_allclose(new_logits, old_logits, rtol=0, atol=1e-13)


# -- minibatch noise (float32) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def small_network():
    """mlp-breast-cancer (width 8) on 100 training examples; chunks of 32 leave 4."""
    prob = sl.network_problem("mlp-breast-cancer", key=KEY, train_size=100, width=8)
    return prob.with_noise(sl.MinibatchNoise(10, chunk_size=32))


@eqx.filter_jit
def _per_example_grads(prob, x):
    rows = jnp.arange(prob.n_examples)[:, None]
    return jax.vmap(lambda r: jax.grad(lambda p: prob.train_losses(p, r)[0])(x))(rows)


def _close(a, b, rtol=2e-5):
    """float32 agreement relative to the reference's largest entry."""
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * float(jnp.max(jnp.abs(b))))


def test_per_example_moments_are_the_mean_and_variance_of_the_gradients(small_network):
    prob, x = small_network, small_network.x0
    noise = prob.noise
    g = _per_example_grads(prob, x)
    mean, variance = eqx.filter_jit(noise.per_example_moments)(prob, x)
    _close(mean, eqx.filter_jit(prob.grad)(x))
    _close(variance, jnp.var(g, axis=0))
    _, diag = eqx.filter_jit(noise.grad_and_variance)(prob, x)
    _close(diag, noise.population_factor(prob.n_examples) * jnp.var(g, axis=0))
    np.testing.assert_array_equal(eqx.filter_jit(noise.variance_at)(prob, x), diag)


def test_exact_covariance_is_one_pullback_of_centred_weights(small_network):
    prob, x = small_network, small_network.x0
    noise, n = prob.noise, prob.n_examples
    g = _per_example_grads(prob, x)
    centred = g - jnp.mean(g, axis=0)
    c = np.sqrt(noise.population_factor(n) / n)
    w = jax.random.normal(jax.random.key(2), (n,))
    root_w = eqx.filter_jit(lambda p, x, w: p.noise.cov_sqrt_at(p, x).mv(w))(prob, x, w)
    _close(root_w, c * centred.T @ w)
    # an SGD step's drift and noise together: a ∇f + b Σ^{1/2} w
    both = eqx.filter_jit(noise.grad_and_noise)(prob, x, -0.3, 0.7, w)
    _close(both, -0.3 * jnp.mean(g, axis=0) + 0.7 * c * centred.T @ w)


# -- the Euler step as one term ---------------------------------------------------------------


def _solve(sde, x0, key, fused: bool, n_steps=6):
    ts = sde.lr * jnp.arange(n_steps + 1.0)
    path = CounterBrownianPath(sde.brownian_shape(x0), key, x0.dtype)
    terms = EulerIncrementTerm(sde, path) if fused else sde.terms(path)
    return diffrax.diffeqsolve(
        terms,
        diffrax.Euler(),
        ts[0],
        ts[-1],
        None,
        sde.initial_state(x0),
        stepsize_controller=diffrax.StepTo(ts=ts),
        saveat=diffrax.SaveAt(t1=True),
        adjoint=diffrax.ForwardMode(),
        max_steps=n_steps,
    ).ys


OPTIMIZERS = {
    "sgd": sl.SGD(0.05),
    "signsgd": sl.SignSGD(0.01),
    "adam": sl.Adam(1e-3, beta2=0.99),
    "rmsprop": sl.RMSprop(1e-3),
    "lion": sl.Lion(1e-3),  # no _increment of its own: drift and diffusion apart
}
NOISES = {
    "gaussian": sl.GaussianNoise(0.01),
    "minibatch": sl.MinibatchNoise(10, chunk_size=32),
    "minibatch-diagonal": sl.MinibatchNoise(10, covariance="diagonal", chunk_size=32),
}


@pytest.mark.parametrize(
    "opt, noise",
    [(o, "gaussian") for o in OPTIMIZERS]
    + [("sgd", "minibatch"), ("signsgd", "minibatch"), ("adam", "minibatch-diagonal")],
)
def test_euler_increment_term_is_the_multiterm_step(small_network, opt, noise):
    """Within float32 rounding (bit for bit for most: the same operations, which XLA may fuse
    differently; exact minibatch SGD's increment is one pullback instead of two)."""
    prob = small_network.with_noise(NOISES[noise])
    sde = sl.sde_for(OPTIMIZERS[opt], prob)
    solve = eqx.filter_jit(_solve)
    fused = solve(sde, prob.x0, jax.random.key(3), True)
    split = solve(sde, prob.x0, jax.random.key(3), False)
    assert float(jnp.max(jnp.abs(split.x - prob.x0))) > 1e-4  # the paths moved
    for a, b in zip(jax.tree.leaves(fused), jax.tree.leaves(split), strict=True):
        _close(a, b, rtol=1e-6)


def _dots(f, *args) -> int:
    text = eqx.filter_jit(f).lower(*args).compile().compiled.as_text()
    return len(re.findall(r" dot\(", text))


@pytest.mark.parametrize("opt", ["adam", "signsgd"])
def test_fused_step_in_a_loop_costs_one_gradient(small_network, opt):
    """Inside a loop XLA repeats the backward pass that drift and diffusion each take (the
    split step has more matrix products than a gradient step); the fused step has exactly
    the gradient step's."""
    prob = small_network.with_noise(sl.GaussianNoise(0.01))
    sde = sl.sde_for(OPTIMIZERS[opt], prob)
    y0, dw = sde.initial_state(prob.x0), jnp.ones(prob.dim)

    def loop(step):
        def run(sde, y):
            def body(y, t):
                return jax.tree.map(jnp.add, y, step(sde, t, y)), None

            return jax.lax.scan(body, y, jnp.arange(3.0))[0]

        return run

    def fused(sde, t, y):
        return euler_increment(sde, t, y, None, 0.01, dw)

    def split(sde, t, y):
        return combine_increment(sde.drift(t, y, None), sde.diffusion(t, y, None), 0.01, dw)

    def gradient(sde, t, x):
        return -0.01 * sde.problem.grad(x)

    n_gradient = _dots(loop(gradient), sde, prob.x0)
    assert _dots(loop(fused), sde, y0) == n_gradient < _dots(loop(split), sde, y0)
