"""`sdelens._scaling`: the batch-size scaling rules as hyperparameter transforms (docs/math.md
§6), the noise of a `κ` times larger batch, and bad rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

H = jnp.array([1.0, 2.0, 4.0])
S = jnp.array([0.5, 1.0, 2.0])
PROB = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S))
ADAM = sl.Adam(lr=1e-2, beta1=0.9, beta2=0.99)
ADAMW = sl.Adam(lr=1e-2, beta1=0.9, beta2=0.99, weight_decay=1.0)


def test_scale_rules_hyperparameters():
    s = sl.scale(ADAMW, 4.0)  # default for AdamW: compagnoni
    assert (s.lr, s.weight_decay, s.eps) == pytest.approx((0.02, 2.0, 5e-9))
    assert (s.beta1, s.beta2) == pytest.approx((0.6, 0.96))
    assert sl.scale(ADAM, 4.0).weight_decay == 0.0
    with pytest.raises(ValueError, match="kappa"):
        sl.scale(ADAM, 0.0)
    with pytest.raises(ValueError, match="rule='cubic'"):
        sl.scale(ADAM, 2.0, rule="cubic")
    with pytest.raises(ValueError, match="beta1"):
        sl.scale(ADAM, 20.0)  # 1 - 20 (1 - 0.9) < 0
    with pytest.raises(ValueError, match="malladi"):
        sl.scale(sl.SGD(lr=0.1), 2.0, rule="malladi")


def test_each_rule():
    assert sl.RULES == ("linear", "sqrt", "malladi", "compagnoni")
    assert sl.scale(sl.SGD(lr=0.1), 4.0).lr == pytest.approx(0.4)  # default: linear
    assert sl.scale(sl.SignSGD(lr=0.1), 4.0).lr == pytest.approx(0.2)  # default: sqrt
    # linear and sqrt rescale η only, for any optimizer (so a wrong rule can be shown failing).
    lin = sl.scale(ADAMW, 9.0, rule="linear")
    assert (lin.lr, lin.beta1, lin.beta2, lin.eps, lin.weight_decay) == pytest.approx(
        (0.09, 0.9, 0.99, 1e-8, 1.0)
    )
    assert sl.scale(sl.SGD(lr=0.1), 9.0, rule="sqrt").lr == pytest.approx(0.3)
    # malladi: √κ η, κ (1 - β), ε/√κ, weight decay kept; compagnoni also √κ θ.
    mal = sl.scale(ADAMW, 4.0, rule="malladi")
    assert (mal.lr, mal.beta1, mal.beta2, mal.eps, mal.weight_decay) == pytest.approx(
        (0.02, 0.6, 0.96, 5e-9, 1.0)
    )
    rms = sl.scale(sl.RMSprop(lr=1e-2, beta=0.99, weight_decay=0.5), 4.0)
    assert (rms.lr, rms.beta, rms.weight_decay) == pytest.approx((0.02, 0.96, 1.0))
    assert sl.scale(sl.RMSprop(lr=1e-2, beta=0.99), 4.0, rule="compagnoni").weight_decay == 0.0
    # The scaled optimizer is the same kind; Adam's ρ₁/(ρ₁ + θ) factor is kept by compagnoni.
    comp = sl.scale(ADAMW, 4.0)
    rho = [(1 - o.beta1) / o.lr for o in (ADAMW, comp)]
    factor = [r / (r + o.weight_decay) for r, o in zip(rho, (ADAMW, comp), strict=True)]
    assert type(comp) is sl.Adam and factor[1] == pytest.approx(factor[0])


def test_scale_noise_shrinks_the_noise():
    half = sl.scale_noise(PROB, 0.5)
    assert isinstance(half, sl.Quadratic)
    np.testing.assert_allclose(half.noise.scale, 0.5 * S)
    np.testing.assert_array_equal(half.h, H)
    root = jnp.array([[1.0, 0.0], [0.5, 1.0]])
    matrix = sl.Quadratic(h=jnp.ones(2), noise=sl.GaussianNoise(scale=root))
    np.testing.assert_allclose(
        sl.scale_noise(matrix, 0.5).noise.covariance(2), 0.25 * root @ root.T
    )
    heavy = sl.Quadratic(h=H, noise=sl.StudentTNoise(df=1.5, scale=S))
    scaled = sl.scale_noise(heavy, 0.25).noise
    assert float(scaled.df) == 1.5
    np.testing.assert_allclose(scaled.scale, 0.25 * S)
    custom = sl.Problem(loss=lambda x: jnp.sum(x**2), noise=sl.GaussianNoise(scale=2.0), dim=2)
    smaller = sl.scale_noise(custom, 0.5)
    assert float(smaller.noise.scale) == 1.0 and smaller.dim == 2
    with pytest.raises(ValueError, match="factor="):
        sl.scale_noise(PROB, 0.0)
    sampled = sl.Quadratic(h=H, noise=sl.SampledNoise(sampler=jax.random.normal))
    with pytest.raises(ValueError, match="cannot be rescaled"):
        sl.scale_noise(sampled, 0.5)
