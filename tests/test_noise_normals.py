"""Noise as a function of standard normals (`stochastic_grad_from_normals`): the maps keep each
noise model's law, are monotone in the normals, and the optimizer's draws through them have the
law they should (moments, a Kolmogorov–Smirnov statistic, independence across steps)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import sdelens as sl
from sdelens._noise._student_t import student_t_quantile


@pytest.mark.parametrize("df", [0.5, 1.0, 1.5, 3.0, 30.0, 300.0])
def test_student_t_quantile_is_scipys(df):
    """`F_ν⁻¹(Φ(ξ))` against scipy's `t.isf(norm.sf)`, |ξ| ≤ 6: relative error below 3e-5 in
    float32 and 1e-9 in float64, exact symmetry, 0 at 0."""
    xi = np.linspace(-6.0, 6.0, 4001)
    want = np.sign(xi) * scipy.stats.t.isf(scipy.stats.norm.sf(np.abs(xi)), df)
    got32 = np.asarray(student_t_quantile(jnp.asarray(xi, jnp.float32), df), float)
    inside = np.abs(xi) > 1e-6
    np.testing.assert_allclose(got32[inside], want[inside], rtol=3e-5)
    np.testing.assert_array_equal(got32, -got32[::-1])
    assert got32[2000] == 0.0
    with jax.enable_x64(True):
        got64 = np.asarray(student_t_quantile(jnp.asarray(xi, jnp.float64), df))
    np.testing.assert_allclose(got64[inside], want[inside], rtol=1e-9)


def test_student_t_noise_from_normals_has_the_t_law():
    """`Z = s F⁻¹(Φ(ξ))` for 10⁶ normals: the t law of df 3 by a KS test, the scale applied."""
    noise = sl.StudentTNoise(df=3.0, scale=jnp.array([0.5, 2.0]))
    xi = jax.random.normal(jax.random.key(0), (500_000, 2))
    z = np.asarray(jax.vmap(noise.from_normals)(xi), float)
    for i, s in enumerate((0.5, 2.0)):
        ks = scipy.stats.kstest(z[:, i] / s, scipy.stats.t(3.0).cdf)
        assert ks.pvalue > 1e-3, ks
    grid = jnp.linspace(-5.0, 5.0, 101)[:, None] * jnp.ones(2)
    assert np.all(np.diff(np.asarray(jax.vmap(noise.from_normals)(grid)), axis=0) > 0)


def test_minibatch_from_normals_samples_uniformly_without_replacement():
    """The `B` examples with the largest of `n` normals: every example in a batch with
    probability `B/n`, every pair with `B(B-1)/(n(n-1))` (within 4.5 standard errors), no
    example twice, and the gradient is that of the mean loss over the batch."""
    prob = sl.network_problem(
        "mlp-breast-cancer", sl.MinibatchNoise(3), key=jax.random.key(0), train_size=10
    )
    n, b, draws = 10, 3, 20_000
    xi = jax.random.normal(jax.random.key(1), (draws, n))
    _, idx = jax.lax.top_k(xi, b)
    member = np.zeros((draws, n), bool)
    np.put_along_axis(member, np.asarray(idx), True, axis=1)
    assert np.all(member.sum(axis=1) == b)
    p = b / n
    spread = 4.5 * np.sqrt(p * (1 - p) / draws)
    np.testing.assert_array_less(np.abs(member.mean(axis=0) - p), spread)
    pair = (member[:, 0] & member[:, 1]).mean()
    q = b * (b - 1) / (n * (n - 1))
    assert abs(pair - q) < 4.5 * np.sqrt(q * (1 - q) / draws)
    g = prob.stochastic_grad_from_normals(prob.x0, xi[0])
    batch = np.asarray(idx[0])
    want = jax.grad(lambda p: jnp.mean(prob.train_losses(p, jnp.asarray(batch))))(prob.x0)
    np.testing.assert_allclose(g, want, rtol=1e-6)


def test_the_optimizers_gaussian_noise_has_its_law():
    """SGD with lr 1 on f = 0 steps by `-Z`: 10⁶ draws at d = 10 (200 runs × 500 steps; the
    runs on the minor axis) and 1.6·10⁵ at d = 16 (20 runs, vmapped) are N(0, s²) by moments
    (mean, variance, kurtosis within 5 standard errors) and a KS test; steps, coordinates and
    runs are uncorrelated (|r| < 5/√n)."""
    for d, runs, steps in ((10, 200, 500), (16, 20, 500)):
        scale = jnp.linspace(0.5, 2.0, d)
        flat = sl.Problem(loss=lambda x: 0.0 * jnp.sum(x), noise=sl.GaussianNoise(scale), dim=d)
        r = sl.run_optimizer(sl.SGD(lr=1.0), flat, jnp.zeros(d), steps, runs, jax.random.key(2))
        z = -np.diff(np.asarray(r.x, float), axis=1) / np.asarray(scale)  # (runs, steps, d)
        flat_z = z.reshape(-1)
        m = flat_z.size
        assert abs(flat_z.mean()) < 5 / np.sqrt(m)
        assert abs(flat_z.var() - 1) < 5 * np.sqrt(2 / m)
        assert abs(scipy.stats.kurtosis(flat_z)) < 5 * np.sqrt(24 / m)
        assert scipy.stats.kstest(flat_z, "norm").pvalue > 1e-3
        lag = np.corrcoef(z[:, :-1].reshape(-1), z[:, 1:].reshape(-1))[0, 1]
        across = np.corrcoef(z[..., 0].reshape(-1), z[..., 1].reshape(-1))[0, 1]
        runs_apart = np.corrcoef(z[0].reshape(-1), z[1].reshape(-1))[0, 1]
        assert abs(lag) < 5 / np.sqrt(m / d) and abs(across) < 5 / np.sqrt(m / d)
        assert abs(runs_apart) < 5 / np.sqrt(steps * d)


def test_optimizer_runs_are_bitwise_invariant_to_chunks():
    """Path `i` draws from key `i` only: chunks of 7 give the same bits as one call."""
    prob = sl.Quadratic.standard(3)
    for opt in (sl.SignSGD(lr=0.01), sl.Adam(lr=0.01, beta1=0.9, beta2=0.99)):
        whole = sl.run_optimizer(opt, prob, jnp.ones(3), 50, 30, jax.random.key(5), 10)
        parts = sl.run_optimizer(
            opt, prob, jnp.ones(3), 50, 30, jax.random.key(5), 10, chunk_size=7
        )
        for a, b in zip(whole.state, parts.state, strict=True):
            np.testing.assert_array_equal(a, b)
