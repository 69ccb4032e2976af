"""`sdelens._theory`: `stationary` (the optimizers' closed forms on quadratics), the linearised
SDE's Lyapunov law for any optimizer, and estimates from runs (docs/math.md §5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

H = jnp.array([1.0, 2.0, 4.0])
S = jnp.array([0.5, 1.0, 2.0])
PROB = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S))
X0 = jnp.ones(3)


def test_theory_inputs():
    custom = sl.Problem(loss=lambda x: jnp.sum(x**2), noise=sl.GaussianNoise(scale=1.0))
    with pytest.raises(NotImplementedError, match="Quadratic"):
        sl.stationary(sl.SGD(lr=0.1), custom)
    with pytest.raises(ValueError, match="at="):
        sl.linearised_stationary(sl.SGD(lr=0.1), custom)
    th = sl.linearised_stationary(sl.SGD(lr=0.01), custom, at=jnp.zeros(2))
    np.testing.assert_allclose(np.diag(th.cov), 0.01 / 4, rtol=1e-5)  # H = 2I: η σ²/(2·2)
    run = sl.run_optimizer(sl.SGD(lr=0.1), PROB, X0, 10, 4, jax.random.key(0))
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="burn_in="):
            sl.empirical_stationary(run, burn_in=bad)
    with pytest.raises(ValueError, match="window="):
        sl.empirical_stationary(run, burn_in=0.5, window=0.8)
    with pytest.raises(ValueError, match=r"at has shape \(2, 3\)"):
        sl.linearised_stationary(sl.SGD(lr=0.01), PROB, at=jnp.zeros((2, 3)))


def test_stationary_moments_and_metrics():
    """`stationary` centres the law on `x*` with `E f = ½ tr(H C)`; `metrics()` is JSON-ready."""
    shifted = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S), minimum=jnp.array([1.0, 0, -1]))
    th = sl.stationary(sl.SGD(lr=0.01), shifted)
    np.testing.assert_array_equal(th.mean, [1.0, 0.0, -1.0])
    np.testing.assert_allclose(th.std, np.sqrt(0.01 / 2 * S**2 / H), rtol=1e-6)
    assert th.expected_loss == pytest.approx(0.5 * float(np.sum(np.asarray(H) * np.diag(th.cov))))
    m = th.metrics()
    assert m["method"] == "closed form" and m["expected_loss_se"] is None
    assert m["mean"] == [1.0, 0.0, -1.0]
    np.testing.assert_allclose(m["variance"], np.diag(th.cov))


def test_linearised_sgd_is_the_closed_form():
    """SGD's SDE is linear on a quadratic: the linearised route is exact, at any `η`."""
    for lr in (0.01, 0.1):
        closed = sl.stationary(sl.SGD(lr=lr), PROB)
        lin = sl.linearised_stationary(sl.SGD(lr=lr), PROB)
        np.testing.assert_allclose(lin.cov, closed.cov, rtol=1e-5, atol=1e-10)
        assert lin.expected_loss == pytest.approx(closed.expected_loss, rel=1e-5)
    assert lin.state_names == ("x0", "x1", "x2") and lin.method == "lyapunov (linearised SDE)"


def test_linearised_rest_point_with_weight_decay():
    """Weight decay moves the rest point off the loss minimum: Newton finds `y*` with zero
    drift, `x*` strictly between 0 and the minimum, and `V` at its target there."""
    minimum = jnp.array([1.0, -1.0, 0.5])
    prob = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S), minimum=minimum)
    opt = sl.RMSprop(lr=1e-3, beta=0.999, weight_decay=0.5)
    th = sl.linearised_stationary(opt, prob)
    assert th.state_names == ("x0", "x1", "x2", "v0", "v1", "v2")
    rest = sl.RMSpropState(jnp.asarray(th.state_mean[:3]), jnp.asarray(th.state_mean[3:]))
    drift = sl.sde_for(opt, prob).drift(jnp.asarray(jnp.inf), rest, None)
    np.testing.assert_allclose(np.concatenate(list(drift)), 0.0, atol=1e-5)
    ratio = th.mean / np.asarray(minimum)
    assert np.all((ratio > 0.05) & (ratio < 0.95)), ratio
    grad = np.asarray(H) * (th.mean - np.asarray(minimum))
    np.testing.assert_allclose(th.state_mean[3:], grad**2 + np.asarray(S) ** 2, rtol=1e-5)
    np.testing.assert_array_equal(th.mean, th.state_mean[:3])


@pytest.mark.parametrize("name", ["rmspropw", "adamw", "adam"])
def test_optimizer_reaches_its_stationary_law(name):
    opt = {
        "rmspropw": sl.RMSprop(lr=1e-2, beta=0.99, weight_decay=0.5),
        "adam": sl.Adam(lr=1e-2, beta1=0.9, beta2=0.99),
        "adamw": sl.Adam(lr=1e-2, beta1=0.9, beta2=0.99, weight_decay=1.0),
    }[name].with_lr(2e-3)
    run = sl.run_optimizer(opt, PROB, jnp.zeros(3), 6000, 400, jax.random.key(9), 50)
    est, th = sl.empirical_stationary(run), sl.linearised_stationary(opt, PROB)
    assert (
        abs(est.expected_loss - th.expected_loss)
        <= 4 * est.expected_loss_se + 0.03 * th.expected_loss
    )


def test_empirical_window_selects_saves():
    run = sl.run_optimizer(
        sl.SGD(lr=0.01),
        PROB,
        jnp.zeros(3),
        n_steps=100,
        n_runs=4,
        key=jax.random.key(0),
        save_every=10,
    )
    est = sl.empirical_stationary(run, burn_in=0.5, window=0.2)
    assert "4 paths x 3 saves" in est.method  # t/T in {0.5, 0.6, 0.7}


def test_empirical_from_paths_and_from_statistics():
    """Pooled paths and saves after burn-in: the mean loss, the per-path SE, the covariance; a
    run that kept statistics only gives the same mean loss, diagonal variances and the SE from
    its per-path block means."""
    kwargs = dict(n_steps=200, n_runs=64, key=jax.random.key(4), save_every=10)
    paths = sl.run_optimizer(sl.SGD(lr=0.01), PROB, X0, **kwargs)
    stats = sl.run_optimizer(sl.SGD(lr=0.01), PROB, X0, keep="stats", **kwargs)
    est, pooled = sl.empirical_stationary(paths), sl.empirical_stationary(stats)
    keep = paths.ts >= 0.5 * paths.ts[-1] - 1e-9
    loss = paths.loss[:, keep]
    assert est.expected_loss == pytest.approx(float(loss.mean()), rel=1e-6)
    per_path = loss.mean(axis=1)
    assert est.expected_loss_se == pytest.approx(per_path.std(ddof=1) / 8.0, rel=1e-5)
    x = paths.x[:, keep].reshape(-1, 3)
    np.testing.assert_allclose(est.cov, np.cov(x, rowvar=False), rtol=1e-5)
    assert "64 paths x 11 saves" in est.method
    assert pooled.expected_loss == pytest.approx(est.expected_loss, rel=1e-5)
    assert "statistics" in pooled.method
    # saves 10..20 are whole blocks of the 16: the block SE is the per-path SE itself
    edges = stats.stats.block_edges
    assert 10 in edges and edges[-1] == 21 and len(edges) == 17
    assert pooled.expected_loss_se == pytest.approx(est.expected_loss_se, rel=1e-4)
    # a window that cuts a block: only whole blocks enter, a shorter window, a larger error
    late = sl.empirical_stationary(stats, burn_in=0.45)
    whole = np.arange(21)[np.arange(21) >= edges[edges >= 0.45 * 20].min()]
    per_path = paths.loss[:, whole].mean(axis=1)
    assert late.expected_loss_se == pytest.approx(per_path.std(ddof=1) / 8.0, rel=1e-4)
    assert sl.empirical_stationary(stats, burn_in=0.99).expected_loss_se != 0  # NaN or a value
    np.testing.assert_allclose(pooled.mean, est.mean, rtol=1e-4, atol=1e-6)
    # The law of total variance over the saves: the mean within-save variance (ddof 1) plus
    # the variance of the save means.
    xs = np.asarray(paths.x[:, keep], dtype=float)
    total = xs.var(axis=0, ddof=1).mean(axis=0) + xs.mean(axis=0).var(axis=0)
    np.testing.assert_allclose(np.diag(pooled.cov), total, rtol=1e-4)
    np.testing.assert_array_equal(pooled.cov, np.diag(np.diag(pooled.cov)))
