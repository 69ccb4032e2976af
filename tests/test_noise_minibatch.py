"""`sdelens._noise._minibatch`: real minibatch noise of a network, its covariance in the SDE
(exact and diagonal), the SignSGD moments, its checks and its rescaling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import small_minibatch_problem
from scipy.special import erf

import sdelens as sl

KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def small():
    return small_minibatch_problem()


def test_minibatch_covariance_matches_real_minibatches(small):
    """Cov of real minibatch gradients (Monte Carlo) = the SDE's Σ(x) = R Rᵀ at a fixed point."""
    x = small.x0
    noise = small.noise
    n_samples = 6000
    keys = jax.random.split(jax.random.key(3), n_samples)
    diagonal = small.with_noise(sl.MinibatchNoise(32, covariance="diagonal"))
    full = small.with_noise(sl.MinibatchNoise(455))

    @jax.jit  # one compilation for every quantity at x
    def at(x):
        return (
            jax.vmap(lambda k: small.stochastic_grad(x, k))(keys),
            small.grad(x),
            noise.cov_sqrt_at(small, x).as_matrix(),
            noise.variance_at(small, x),
            diagonal.noise.variance_at(diagonal, x),
            diagonal.noise.cov_sqrt_at(diagonal, x).diagonal,
            full.noise.variance_at(full, x),
        )

    grads, grad, root, variance, var_diag, diag_root, var_full = at(x)
    grads = np.asarray(grads, dtype=np.float64)
    coords = np.argsort(grads.var(0))[-12:]  # the noisiest coordinates: largest signal
    dev = grads[:, coords] - np.asarray(grad)[coords]
    products = dev[:, :, None] * dev[:, None, :]
    empirical = products.mean(0)
    se = products.std(0) / np.sqrt(n_samples)
    root = np.asarray(root, dtype=np.float64)
    assert root.shape == (134, 455)  # driven by one Brownian motion per training example
    theory = (root @ root.T)[np.ix_(coords, coords)]
    z = np.abs(empirical - theory) / se
    assert z.max() < 4.5, z.max()
    var_diag = np.asarray(var_diag)
    np.testing.assert_allclose(np.diag(root @ root.T), var_diag, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(variance), var_diag, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(diag_root) ** 2, var_diag, rtol=1e-5)
    np.testing.assert_allclose(var_full, 0.0, atol=1e-12)


def test_covariance_is_the_finite_population_formula(small):
    """`Σ(x) = (n - B)/(B (n - 1)) · (1/n) G_cᵀ G_c` from the per-example gradients: the VJP
    operator, `per_example_variance` and `variance_at` against the explicit matrix."""
    x = small.x0 + 0.05
    noise, n = small.noise, 455
    chunked = sl.MinibatchNoise(32, chunk_size=7)

    @jax.jit
    def at(x):
        one = lambda i: jax.grad(lambda p: small.train_losses(p, i[None])[0])(x)  # noqa: E731
        return (
            jax.vmap(one)(jnp.arange(n)),  # every training example's gradient, one by one
            small.grad(x),
            noise.per_example_variance(small, x),
            noise.variance_at(small, x),
            noise.cov_sqrt_at(small, x).as_matrix(),
            chunked.per_example_variance(small, x),
        )

    g, grad, per_example, variance, root, per_example_7 = (
        np.asarray(a, dtype=np.float64) for a in at(x)
    )
    np.testing.assert_allclose(g.mean(0), grad, rtol=1e-4, atol=1e-7)
    centred = g - g.mean(0)
    sigma_1 = centred.T @ centred / n
    factor = (n - 32) / (32 * (n - 1))
    assert noise.population_factor(n) == pytest.approx(factor, rel=1e-12)
    np.testing.assert_allclose(per_example, np.diag(sigma_1), rtol=1e-4, atol=1e-10)
    np.testing.assert_allclose(variance, factor * per_example, rtol=1e-6)
    scale = np.abs(sigma_1).max()
    np.testing.assert_allclose(root @ root.T, factor * sigma_1, atol=1e-4 * factor * scale)
    # chunks of 7 examples (455 = 65 x 7) agree with the default 128 (the last chunk padded)
    np.testing.assert_allclose(per_example_7, per_example, rtol=1e-5)


def test_minibatch_sde_tracks_sgd(small):
    """Real minibatch noise, exact covariance: SGD vs its SDE (VJP diffusion) within 2%."""
    opt = sl.SGD(0.05)
    kwargs = {"n_steps": 100, "save_every": 20}
    ref = sl.run_optimizer(opt, small, small.x0, n_runs=32, key=jax.random.key(0), **kwargs)
    run = sl.simulate(opt, small, small.x0, n_paths=32, key=jax.random.key(1), **kwargs)
    assert sl.compare(ref, run).max_rel_mean_loss_error < 0.02
    loss, accuracy = small.metrics(run.x[0, -1])
    assert accuracy > 0.9 and loss < 0.3


def test_signsgd_minibatch_sampled_sign_moments_capture_the_late_rise(small):
    """Near the minimum the minibatch gradient is skewed: the optimizer's loss rises between
    steps 80 and 200. The Gaussian approximation of E[sign g] predicts a fall; sampling real
    minibatches for the moments (sign_samples=64) predicts the rise."""
    kwargs = {"n_steps": 200, "n_paths": 8, "save_every": 40, "key": jax.random.key(0)}
    trend = {}
    for k in (0, 64):
        prob = sl.network_problem(
            "mlp-breast-cancer", sl.MinibatchNoise(32, sign_samples=k), key=KEY
        )
        both = sl.optimizer_vs_sde(sl.SignSGD(2e-3), prob, prob.x0, **kwargs)
        ref, run = both.ref.loss.mean(0), both.run.loss.mean(0)
        trend[k] = run[-1] - run[2]
    assert ref[-1] - ref[2] > 0.01  # the optimizer: 0.068 -> 0.085
    assert trend[0] < -0.01 and trend[64] > 0.01
    with pytest.raises(ValueError, match="sign_samples=-1"):
        sl.MinibatchNoise(32, sign_samples=-1)


def test_sampled_sign_moments_are_averages_over_fixed_minibatches(small):
    """`sign_samples=K`: the mean and covariance square root of the signs of K minibatch
    gradients drawn from `key(seed)`, the same at every call (a deterministic drift)."""
    x = small.x0 + 0.05
    noise = sl.MinibatchNoise(32, sign_samples=16, seed=3)
    gauss = small.noise
    keys = jax.random.split(jax.random.key(3), 16)

    @jax.jit
    def at(x):
        return (
            jax.vmap(lambda k: jnp.sign(small.stochastic_grad(x, k)))(keys),
            noise.sign_mean_at(small, x),
            noise.sign_mean_at(small, x),
            noise.sign_cov_sqrt_at(small, x).as_matrix(),
            gauss.variance_at(small, x),
            small.grad(x),
            gauss.sign_mean_at(small, x),
        )

    signs, mean, mean_again, root, variance, grad, gauss_mean = at(x)
    signs = np.asarray(signs)
    np.testing.assert_allclose(mean, signs.mean(0), atol=1e-6)
    np.testing.assert_array_equal(mean, mean_again)
    root = np.asarray(root)
    np.testing.assert_allclose(root @ root.T, np.cov(signs, rowvar=False, ddof=0), atol=1e-5)
    # sign_samples=0: the Gaussian approximation erf(∂f / (√2 σ)) with σ² = diag Σ(x)
    std = np.sqrt(np.asarray(variance, dtype=np.float64))
    grad = np.asarray(grad, dtype=np.float64)
    want = erf(grad / (np.sqrt(2) * np.maximum(std, 1e-30)))
    np.testing.assert_allclose(gauss_mean, want, rtol=1e-4, atol=1e-5)


def test_bad_input_and_check_problem():
    for batch in (0, -3):
        with pytest.raises(ValueError, match=f"batch_size={batch}"):
            sl.MinibatchNoise(batch)
    with pytest.raises(ValueError, match="batch_size=456 is invalid: the training set has 455"):
        sl.network_problem("mlp-breast-cancer", sl.MinibatchNoise(456), key=KEY)
    with pytest.raises(ValueError, match="batch_size=101 is invalid: .* 1 <= batch_size <= 100"):
        sl.network_problem("mlp-breast-cancer", sl.MinibatchNoise(101), key=KEY, train_size=100)
    prob = sl.network_problem("mlp-breast-cancer", sl.MinibatchNoise(100), key=KEY, train_size=100)
    assert prob.n_examples == 100
    assert prob.noise.population_factor(prob.n_examples) == 0.0  # B = n: no noise at all
    with pytest.raises(ValueError, match="covariance='full'"):
        sl.MinibatchNoise(8, covariance="full")
    with pytest.raises(ValueError, match="chunk_size=0"):
        sl.MinibatchNoise(8, chunk_size=0)
    # a closed-form loss has no training examples to sample
    with pytest.raises(ValueError, match="MinibatchNoise samples training examples"):
        sl.Quadratic(h=jnp.ones(2), noise=sl.MinibatchNoise(8))
    with pytest.raises(ValueError, match="MinibatchNoise samples training examples"):
        sl.Quadratic.standard().with_noise(sl.MinibatchNoise(8))


def test_scaled_rescales_the_batch_size(small):
    """The noise scales as 1/√B: `scaled(f)` is batch B/f², the other settings kept; its
    covariance follows the finite-population factor exactly."""
    noise = sl.MinibatchNoise(32, covariance="diagonal", chunk_size=64, sign_samples=8, seed=2)
    assert noise.scaled(0.5) == sl.MinibatchNoise(128, "diagonal", 64, 8, 2)
    assert noise.scaled(2.0) == sl.MinibatchNoise(8, "diagonal", 64, 8, 2)
    assert noise.scaled(1.0) == noise
    for factor in (3.0, 8.0):
        with pytest.raises(ValueError, match=f"factor={factor:g} is invalid"):
            noise.scaled(factor)
    x, n = small.x0, 455
    big = small.with_noise(small.noise.scaled(0.5))
    assert big.noise.batch_size == 128 and big.noise.examples_per_grad(big) == 128
    both = jax.jit(lambda x: (big.noise.variance_at(big, x), small.noise.variance_at(small, x)))
    var_big, var_small = (np.asarray(v) for v in both(x))
    ratio = var_big / var_small
    want = ((n - 128) / 128) / ((n - 32) / 32)  # 0.193, not the 0.25 of sampling with replacement
    ok = var_small > 0
    np.testing.assert_allclose(ratio[ok], want, rtol=1e-5)
    assert noise.dim is None and noise.has_finite_variance
    assert noise.label == "MinibatchNoise(batch_size=32, covariance='diagonal')"
