"""`sdelens._ensemble`: streaming statistics, chunks, devices and processes give the same numbers
as keeping every path."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

PROB = sl.Quadratic(
    h=jnp.array([1.0, 2.0, 4.0]), noise=sl.GaussianNoise(scale=jnp.array([0.5, 1.0, 2.0]))
)
X0 = jnp.array([1.5, -1.0, 0.5])
ARGS = dict(n_steps=200, key=jax.random.key(4), save_every=20)


@pytest.mark.parametrize("fn", [sl.simulate, sl.run_optimizer])
@pytest.mark.parametrize("opt", [sl.SignSGD(lr=0.01), sl.Adam(lr=0.01, beta1=0.9, beta2=0.99)])
def test_stats_and_chunks_equal_stored_paths(fn, opt):
    paths = fn(opt, PROB, X0, 200, 30, ARGS["key"], 20)
    edges = np.linspace(-2, 2, 21)
    stats = fn(
        opt, PROB, X0, 200, 30, ARGS["key"], 20, keep="stats", chunk_size=7, hist=([0, 2], edges)
    )
    chunked = fn(opt, PROB, X0, 200, 30, ARGS["key"], 20, chunk_size=7)
    np.testing.assert_allclose(chunked.x, paths.x, rtol=1e-6, atol=1e-7)  # same keys per path
    assert type(chunked.state) is type(paths.state) and chunked.state._fields == paths.state._fields
    for got_field, want_field in zip(chunked.state, paths.state, strict=True):  # x, m, v
        np.testing.assert_allclose(got_field, want_field, rtol=1e-6, atol=1e-7)
    assert stats.x is None and stats.loss is None and stats.n_paths == 30
    assert stats.state is None and stats.config["keep"] == "stats"
    ref = paths.statistics()
    got = stats.stats
    np.testing.assert_array_equal(got.count, 30)
    np.testing.assert_allclose(got.loss_mean, ref.loss_mean, rtol=1e-5)
    np.testing.assert_allclose(got.loss_var, paths.loss.var(axis=0, ddof=1), rtol=1e-4)
    np.testing.assert_allclose(got.x_mean, paths.x.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.x_var, paths.x.var(axis=0, ddof=1), rtol=1e-4, atol=1e-9)
    for j, coord in enumerate((0, 2)):
        expected = np.stack([np.histogram(paths.x[:, s, coord], bins=edges)[0] for s in range(11)])
        np.testing.assert_array_equal(got.hist_counts[:, j], expected)
    c = sl.compare(paths, stats)  # comparison works on statistics alone
    np.testing.assert_allclose(c.diff, 0.0, atol=1e-6)


def test_stats_output_does_not_grow_with_paths():
    sizes = []
    for n in (10, 1000):
        run = sl.run_optimizer(
            sl.SGD(lr=0.01), PROB, X0, 100, n, jax.random.key(0), 10, keep="stats", chunk_size=64
        )
        arrays = [
            run.stats.count,
            run.stats.loss_mean,
            run.stats.loss_m2,
            run.stats.x_mean,
            run.stats.x_m2,
        ]
        sizes.append(sum(a.nbytes for a in arrays))
    assert sizes[0] == sizes[1]


def test_stats_runs_flag_divergence_save_and_estimate(tmp_path):
    run = sl.run_optimizer(
        sl.SGD(lr=0.6), PROB, X0, 400, 16, jax.random.key(0), 10, keep="stats", chunk_size=5
    )
    assert run.diverged and run.n_diverged == 16 and 100 <= run.first_bad_step <= 200
    ok = sl.run_optimizer(
        sl.SGD(lr=0.01), PROB, jnp.zeros(3), 2000, 400, jax.random.key(1), 20, keep="stats"
    )
    est = sl.empirical_stationary(ok)
    th = sl.stationary(sl.SGD(lr=0.01), PROB)
    assert 0 < est.expected_loss_se < 0.05 * th.expected_loss and "statistics" in est.method
    assert abs(est.expected_loss - th.expected_loss) < 0.1 * th.expected_loss
    np.testing.assert_allclose(np.diag(est.cov), np.diag(th.cov), rtol=0.15)
    ok.save(tmp_path / "s")
    back = sl.load(tmp_path / "s")
    np.testing.assert_array_equal(back.stats.x_m2, ok.stats.x_m2)
    np.testing.assert_array_equal(back.stats.count, ok.stats.count)
    assert sl.empirical_stationary(back).expected_loss_se == est.expected_loss_se  # blocks kept
    assert back.x is None and back.state is None and back.n_paths == 400


def test_chunk_and_keep_checks():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="chunk_size=0"):
        sl.run_optimizer(sl.SGD(lr=0.1), PROB, X0, 10, 4, key, chunk_size=0)
    with pytest.raises(ValueError, match="keep='all'"):
        sl.run_optimizer(sl.SGD(lr=0.1), PROB, X0, 10, 4, key, keep="all")
    with pytest.raises(ValueError, match="hist= needs keep='stats'"):
        sl.run_optimizer(sl.SGD(lr=0.1), PROB, X0, 10, 4, key, hist=([0], [0.0, 1.0]))
    with pytest.raises(ValueError, match="edges"):
        sl.run_optimizer(sl.SGD(lr=0.1), PROB, X0, 10, 4, key, keep="stats", hist=([0], [1.0, 0.0]))
    with pytest.raises(ValueError, match="hist coords"):
        sl.Histogram(coords=[-1], edges=[0.0, 1.0])
    with pytest.raises(ValueError, match="devices is empty"):
        sl.run_optimizer(sl.SGD(lr=0.1), PROB, X0, 10, 4, key, devices=[])
    big = sl.run_optimizer(sl.SGD(lr=0.1), PROB, X0, 10, 4, key, chunk_size=1000)  # clamped to 4
    assert big.x.shape == (4, 11, 3) and big.config["chunk_size"] == 1000


SHARDED = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    import sdelens as sl
    assert len(jax.devices()) == 4, jax.devices()
    noise = sl.GaussianNoise(scale=jnp.array([0.5, 1.0, 2.0]))
    prob = sl.Quadratic(h=jnp.array([1.0, 2.0, 4.0]), noise=noise)
    x0 = jnp.array([1.5, -1.0, 0.5])
    for fn, opt in [(sl.simulate, sl.SignSGD(lr=0.01)), (sl.run_optimizer, sl.Adam(lr=0.01))]:
        one = fn(opt, prob, x0, 100, 30, jax.random.key(2), 10, devices=jax.devices()[:1])
        four = fn(opt, prob, x0, 100, 30, jax.random.key(2), 10)  # 30 paths: padded to 32
        np.testing.assert_allclose(four.x, one.x, rtol=1e-6, atol=1e-7)
        for a, b in zip(four.state, one.state, strict=True):  # every field of the state
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        assert four.config["devices"] == 4
        stats = fn(opt, prob, x0, 100, 30, jax.random.key(2), 10, keep="stats", chunk_size=6)
        np.testing.assert_allclose(stats.stats.x_mean, one.x.mean(0), rtol=1e-5, atol=1e-6)
    print("sharded ok")
    """
)


def test_sharded_over_four_simulated_devices_equals_one_device():
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    result = subprocess.run(
        [sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sharded ok" in result.stdout


def test_merging_hosts_is_exact():
    """Two 'hosts' with their own keys, merged, equal the statistics of all their paths."""
    a = sl.run_optimizer(sl.SignSGD(lr=0.01), PROB, X0, 100, 10, jax.random.key(1), 10)
    b = sl.run_optimizer(sl.SignSGD(lr=0.01), PROB, X0, 100, 23, jax.random.key(2), 10)
    merged = a.statistics().merge(b.statistics())
    both = sl.RunStats.from_paths(np.concatenate([a.x, b.x]), np.concatenate([a.loss, b.loss]))
    for field in ("count", "loss_mean", "loss_m2", "x_mean", "x_m2", "block_count", "block_m2"):
        # each chunk's sums are float32 on the device: sums of squares ~1e-4 carry ~1e-9
        np.testing.assert_allclose(
            getattr(merged, field), getattr(both, field), rtol=1e-5, atol=2e-8
        )


def test_run_stats_leave_out_non_finite_paths():
    """`RunStats.from_paths`: per-save count, means, ddof=1 variances and standard errors over
    the paths that are finite at that save."""
    rng = np.random.default_rng(0)
    x, loss = rng.normal(size=(6, 3, 2)), rng.exponential(size=(6, 3))
    x[4, 2, 1] = np.nan  # path 4 is non-finite at save 2 only
    loss[4, 2] = np.nan
    stats = sl.RunStats.from_paths(x, loss)
    np.testing.assert_array_equal(stats.count, [6, 6, 5])
    keep = [0, 1, 2, 3, 5]
    np.testing.assert_allclose(stats.loss_mean[2], loss[keep, 2].mean(), rtol=1e-6)
    np.testing.assert_allclose(stats.loss_var[:2], loss[:, :2].var(axis=0, ddof=1), rtol=1e-5)
    se = loss[keep, 2].std(ddof=1) / np.sqrt(5)
    np.testing.assert_allclose(stats.loss_se[2], se, rtol=1e-5)
    np.testing.assert_allclose(stats.x_mean[2], x[keep, 2].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats.x_var[2], x[keep, 2].var(axis=0, ddof=1), rtol=1e-5)


MULTIPROCESS = textwrap.dedent(
    """
    import sys
    import jax
    pid, port, ref_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    import jax.numpy as jnp, numpy as np
    import sdelens as sl
    assert jax.process_count() == 2
    noise = sl.GaussianNoise(scale=jnp.array([0.5, 1.0, 2.0]))
    prob = sl.Quadratic(h=jnp.array([1.0, 2.0, 4.0]), noise=noise)
    x0 = jnp.array([1.5, -1.0, 0.5])
    ref = np.load(ref_file)
    run = sl.simulate(sl.SignSGD(lr=0.01), prob, x0, 100, 7, jax.random.key(3), 10)
    np.testing.assert_allclose(run.x, ref["x"], rtol=1e-6, atol=1e-7)  # 7 paths over 2 hosts
    stats = sl.run_optimizer(sl.Adam(lr=0.01), prob, x0, 100, 7, jax.random.key(3), 10,
                             keep="stats", chunk_size=2)
    np.testing.assert_array_equal(stats.stats.count, 7)
    np.testing.assert_allclose(stats.stats.x_mean, ref["adam_mean"], rtol=1e-5, atol=1e-6)
    print("process", pid, "ok")
    """
)


def test_two_processes_equal_one(tmp_path):
    """jax.distributed with two CPU processes on loopback: each runs its share, all gather."""
    import socket

    sde = sl.simulate(sl.SignSGD(lr=0.01), PROB, X0, 100, 7, jax.random.key(3), 10)
    adam = sl.run_optimizer(sl.Adam(lr=0.01), PROB, X0, 100, 7, jax.random.key(3), 10)
    np.savez(tmp_path / "ref.npz", x=sde.x, adam_mean=adam.x.mean(axis=0))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MULTIPROCESS, str(pid), str(port), str(tmp_path / "ref.npz")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in (0, 1)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for pid, (p, (out, err)) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, err[-3000:]
        assert f"process {pid} ok" in out
