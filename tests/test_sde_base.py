"""`sdelens._sde._base`: the diffusion as a `StateOperator` (its `mv` and dense matrix agree,
zero rows where a field has no noise), `embed_noise`, and the Itô → Stratonovich correction on
plain and typed states."""

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import lineax as lx
import numpy as np
import pytest

import sdelens as sl
from sdelens._sde._base import StateOperator, embed_noise, scale_operator

H = jnp.array([1.0, 2.0, 4.0])
S = jnp.array([0.5, 1.0, 2.0])
CORR_ROOT = jnp.linalg.cholesky(jnp.array([[1.0, 0.6, 0.2], [0.6, 1.0, -0.3], [0.2, -0.3, 1.0]]))


def test_stratonovich_correction_closed_forms():
    y = jnp.array([0.7, -1.3])
    # Geometric noise G = diag(y): c = ½ G ∂G = ½ y.
    diag = sl.stratonovich_correction(lambda t, y, a: lx.DiagonalLinearOperator(y), 0.0, y, None)
    np.testing.assert_allclose(diag, 0.5 * y, rtol=1e-6)

    # G = [[y0, y1], [0, y0]] and cᵢ = ½ Σⱼₖ Gₖⱼ ∂ₖGᵢⱼ, by hand:
    # c0 = ½ (G00 ∂0G00 + G11 ∂1G01) = ½ (y0 + y0) = y0;  c1 = ½ G01 ∂0G11 = ½ y1.
    def dense(t, y, a):
        return lx.MatrixLinearOperator(jnp.array([[y[0], y[1]], [0.0, y[0]]]))

    got = sl.stratonovich_correction(dense, 0.0, y, None)
    np.testing.assert_allclose(got, [y[0], 0.5 * y[1]], rtol=1e-6)


def test_stratonovich_correction_on_a_typed_state():
    """`y = (x, v)` with `dx = v ∘ dW`, `dv = x ∘ dW` (one `dW` per coordinate): the noise of
    each field depends on the other, and `c = (½ x, ½ v)`: ravelling keeps the fields apart."""
    y = sl.RMSpropState(jnp.array([0.7, -1.3]), jnp.array([2.0, 0.5]))

    def diffusion(t, y, args):
        return embed_noise(lx.DiagonalLinearOperator(jnp.ones(2)), y, x=y.v, v=y.x)

    c = sl.stratonovich_correction(diffusion, 0.0, y, None)
    assert type(c) is sl.RMSpropState
    np.testing.assert_allclose(c.x, 0.5 * y.x, rtol=1e-6)
    np.testing.assert_allclose(c.v, 0.5 * y.v, rtol=1e-6)


def test_signsgd_correction_in_closed_form():
    """SignSGD, diagonal Gaussian noise: `Gᵢᵢ = √η √(1 - mᵢ²)`, `mᵢ = erf(hᵢxᵢ/(√2 sᵢ))`, so
    `cᵢ = ¼ ∂ᵢ Gᵢᵢ² = -½ η mᵢ mᵢ'` with `mᵢ' = √(2/π) (hᵢ/sᵢ) exp(-(hᵢxᵢ)²/(2sᵢ²))`; the
    Stratonovich drift is `b - c`. SGD with constant `Σ` has no correction."""
    lr = 0.05
    prob = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S))
    sde = sl.sde_for(sl.SignSGD(lr=lr), prob)
    y = sl.ParamState(jnp.array([0.3, -0.4, 0.2]))
    z = np.asarray(H * y.x / S, dtype=float)
    m = np.asarray(jsp.erf(z / np.sqrt(2.0)))
    dm = np.sqrt(2 / np.pi) * np.asarray(H / S) * np.exp(-(z**2) / 2)
    c = sl.stratonovich_correction(sde.diffusion, 0.0, y, None)
    assert type(c) is sl.ParamState
    np.testing.assert_allclose(c.x, -0.5 * lr * m * dm, rtol=1e-4)
    strat = sde.stratonovich_drift(0.0, y, None)
    np.testing.assert_allclose(strat.x, sde.drift(0.0, y, None).x - c.x, rtol=1e-6)
    sgd = sl.sde_for(sl.SGD(lr=lr), prob)
    np.testing.assert_array_equal(sl.stratonovich_correction(sgd.diffusion, 0.0, y, None).x, 0.0)


@pytest.mark.parametrize("noise", [sl.GaussianNoise(scale=S), sl.GaussianNoise(CORR_ROOT * S)])
def test_state_operator_mv_and_matrix_agree(noise):
    """Adam's diffusion: `x` and `m` share one `dW`, `v` has none (zero rows)."""
    lr = 0.01
    prob = sl.Quadratic(h=H, noise=noise)
    opt = sl.Adam(lr=lr, beta1=0.9, beta2=0.99)
    sde = sl.sde_for(opt, prob)
    y = sde.rest_state(jnp.array([0.3, -0.4, 0.2]))
    op = sde.diffusion(jnp.asarray(1.0), y, None)
    assert isinstance(op, StateOperator) and op.state_type is sl.AdamState
    assert op.in_structure().shape == (3,) and sde.brownian_shape(y.x) == (3,)
    assert type(op.out_structure()) is sl.AdamState
    dense = np.asarray(op.as_matrix())
    assert dense.shape == (9, 3)
    np.testing.assert_array_equal(dense[6:], 0.0)  # no noise on v
    dw = jnp.array([0.5, -1.0, 2.0])
    kick = op.mv(dw)
    assert type(kick) is sl.AdamState
    np.testing.assert_allclose(np.concatenate(list(kick)), dense @ np.asarray(dw), rtol=1e-5)
    np.testing.assert_array_equal(kick.v, 0.0)
    # m's block is √η ρ₁ Σ^{1/2} (ρ₁ = (1-β₁)/η): one stochastic gradient's share.
    root = np.asarray(noise.cov_sqrt(3).as_matrix())
    np.testing.assert_allclose(dense[3:6], np.sqrt(lr) * (0.1 / lr) * root, rtol=1e-5)
    with pytest.raises(NotImplementedError, match="transpose"):
        op.transpose()


def test_embed_noise_keeps_the_operator_kind():
    like = sl.AdamState(jnp.zeros(2), jnp.zeros(2), jnp.zeros(2))
    diag = lx.DiagonalLinearOperator(jnp.array([1.0, 2.0]))
    op = embed_noise(diag, like, x=3.0, m=jnp.array([1.0, -1.0]))
    assert isinstance(op.blocks[0], lx.DiagonalLinearOperator) and op.blocks[2] is None
    np.testing.assert_allclose(op.blocks[0].diagonal, [3.0, 6.0])
    np.testing.assert_allclose(op.blocks[1].diagonal, [1.0, -2.0])
    mat = lx.MatrixLinearOperator(jnp.array([[1.0, 2.0], [3.0, 4.0]]))
    scaled = scale_operator(mat, jnp.array([2.0, -1.0]))
    assert isinstance(scaled, lx.MatrixLinearOperator)
    np.testing.assert_allclose(scaled.matrix, [[2.0, 4.0], [-3.0, -4.0]])
    free = lx.FunctionLinearOperator(lambda w: 2 * w, jax.ShapeDtypeStruct((2,), jnp.float32))
    kept = scale_operator(free, 0.5)
    assert isinstance(kept, lx.FunctionLinearOperator)
    np.testing.assert_allclose(kept.mv(jnp.array([1.0, -3.0])), [1.0, -3.0])
    with pytest.raises(ValueError, match=r"\['y'\] are not fields of AdamState"):
        embed_noise(diag, like, y=1.0)


def test_parameters_are_the_first_field():
    prob = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S))
    for opt in (sl.SGD(0.01), sl.RMSprop(0.01), sl.Adam(0.01)):
        sde = sl.sde_for(opt, prob)
        y = sde.initial_state(jnp.array([1.0, 2.0, 3.0]))
        assert y._fields[0] == "x" and sde.parameters(y) is y.x
        assert sde.lr == 0.01
