"""`simulate` and `run_optimizer`: validated input (start point, sizes, key, solver), the save
grid, per-path start points, divergence reports, and the solvers (Milstein and Heun, with the
Stratonovich correction, against Euler for SignSGD; Milstein for SGD is in test_kernels.py)."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl
from sdelens._simulate import check_key

H = jnp.array([1.0, 2.0, 4.0])
S = jnp.array([0.5, 1.0, 2.0])
PROB = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S))
X0 = jnp.array([1.5, -1.0, 0.5])


@pytest.mark.parametrize("fn", [sl.simulate, sl.run_optimizer])
@pytest.mark.parametrize(
    "x0,needle",
    [
        (jnp.ones(2), "d=2"),
        (jnp.ones((2, 2, 3)), r"\(d,\) or \(n_paths, d\)"),
        (jnp.array([1.0, jnp.nan, 1.0]), "non-finite"),
    ],
)
def test_start_point(fn, x0, needle):
    with pytest.raises(ValueError, match=needle):
        fn(sl.SGD(lr=0.1), PROB, x0, 10, 4, jax.random.key(0))


@pytest.mark.parametrize("fn,paths", [(sl.simulate, "n_paths"), (sl.run_optimizer, "n_runs")])
def test_sizes(fn, paths):
    opt, key = sl.SGD(lr=0.1), jax.random.key(0)
    with pytest.raises(ValueError, match="n_steps=0"):
        fn(opt, PROB, X0, 0, 4, key)
    with pytest.raises(ValueError, match="n_steps=2.5"):
        fn(opt, PROB, X0, 2.5, 4, key)
    with pytest.raises(ValueError, match=f"{paths}=0"):
        fn(opt, PROB, X0, 10, 0, key)
    with pytest.raises(ValueError, match="save_every=0"):
        fn(opt, PROB, X0, 10, 4, key, 0)
    with pytest.raises(ValueError, match="save_every=3 does not divide n_steps=10"):
        fn(opt, PROB, X0, 10, 4, key, 3)
    with pytest.raises(ValueError, match=f"{paths}=5 but x0 has shape"):
        fn(opt, PROB, jnp.ones((4, 3)), 10, 5, key)
    with pytest.raises(ValueError, match="key="):
        fn(opt, PROB, X0, 10, 4, 123)
    run = fn(opt, PROB, jnp.ones((4, 3)), 10, None, key, 5)  # n from x0
    assert run.n_paths == 4 and run.steps.tolist() == [0, 5, 10]


@pytest.mark.parametrize("fn", [sl.simulate, sl.run_optimizer])
def test_key_is_required(fn):
    with pytest.raises(ValueError, match=r"key=None is invalid: pass a JAX PRNG key"):
        fn(sl.SGD(lr=0.1), PROB, X0, 10, 4)
    with pytest.raises(ValueError, match=r"key=None is invalid"):
        fn(sl.SGD(lr=0.1), PROB, X0, 10, 4, None, 5)


def test_check_key_takes_new_and_legacy_keys():
    new, legacy = jax.random.key(0), jax.random.PRNGKey(0)  # legacy: uint32[2]
    assert check_key(new) is new and check_key(legacy) is legacy
    with pytest.raises(ValueError, match="key=.* is invalid: a JAX PRNG key"):
        check_key(jnp.zeros(3, jnp.uint32))
    with pytest.raises(ValueError, match="seed=None is invalid"):
        check_key(None, "seed")


def test_solver_choices():
    with pytest.raises(ValueError, match="solver=Tsit5"):
        sl.simulate(sl.SGD(lr=0.1), PROB, X0, 10, 4, jax.random.key(0), solver=diffrax.Tsit5())
    with pytest.raises(ValueError, match="substeps=0"):
        sl.simulate(sl.SGD(lr=0.1), PROB, X0, 10, 4, jax.random.key(0), substeps=0)
    with pytest.raises(ValueError, match="form='malladi'"):
        sl.simulate(sl.SGD(lr=0.1), PROB, X0, 10, 4, jax.random.key(0), form="malladi")


def test_per_path_start_points_and_grid():
    x0 = jnp.stack([X0, -X0, 2 * X0, jnp.zeros(3)])
    run = sl.simulate(sl.SGD(lr=0.02), PROB, x0, n_steps=50, key=jax.random.key(0), save_every=25)
    assert run.x.shape == (4, 3, 3) and run.n_paths == 4
    np.testing.assert_allclose(run.x[:, 0], x0)
    np.testing.assert_array_equal(run.steps, [0, 25, 50])
    np.testing.assert_allclose(run.ts, [0.0, 0.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(run.loss[:, 0], jax.vmap(PROB.loss)(x0), rtol=1e-6)
    assert run.config["solver"] == "Euler" and run.config["substeps"] == 1
    assert run.kind == "sde" and run.grad_evals == 50


def test_divergence_is_reported_with_first_bad_step():
    # lr·h = 0.6·4 > 2: SGD's iterates grow like 1.4^k; the loss overflows float32 near step
    # 130 (x itself near 250). A non-finite loss counts as divergence.
    run = sl.run_optimizer(
        sl.SGD(lr=0.6), PROB, X0, n_steps=400, n_runs=16, key=jax.random.key(0), save_every=10
    )
    assert run.diverged and run.n_diverged == 16
    assert 100 <= run.first_bad_step <= 200 and run.first_bad_step % 10 == 0
    assert np.all(np.isfinite(run.loss[:, run.steps < run.first_bad_step]))
    assert not np.all(np.isfinite(run.loss[:, run.steps == run.first_bad_step]))
    ok = sl.run_optimizer(
        sl.SGD(lr=0.1), PROB, X0, n_steps=400, n_runs=16, key=jax.random.key(0), save_every=10
    )
    assert not ok.diverged and ok.first_bad_step is None


def weak_error_tolerance(c: sl.Comparison, lr: float) -> np.ndarray:
    """4 standard errors of the difference plus the O(η) weak error, η L E f with L = max h."""
    return 4 * c.se_diff + lr * float(H.max()) * np.abs(c.mean_loss_a)


@pytest.mark.parametrize("solver", [diffrax.ItoMilstein(), diffrax.Heun()])
def test_other_solvers_agree_with_euler(solver):
    """SignSGD: Milstein (Itô) and Heun (Stratonovich, with the drift correction) model the same
    law."""
    lr = 1e-2
    kwargs = dict(n_steps=600, n_paths=2000, save_every=20)
    euler = sl.simulate(sl.SignSGD(lr=lr), PROB, X0, key=jax.random.key(5), **kwargs)
    other = sl.simulate(sl.SignSGD(lr=lr), PROB, X0, key=jax.random.key(6), solver=solver, **kwargs)
    c = sl.compare(euler, other)
    assert other.config["solver"] == type(solver).__name__
    assert np.all(np.abs(c.diff) <= weak_error_tolerance(c, lr))


def test_a_vector_loss_and_out_of_range_histograms_are_refused_before_running():
    vector = sl.Problem(lambda x: x**2, sl.GaussianNoise(1.0))
    for fn in (sl.simulate, sl.run_optimizer):
        with pytest.raises(ValueError, match=r"loss returns an array of shape \(2,\): a scalar"):
            fn(sl.SGD(0.1), vector, jnp.ones(2), 10, 2, jax.random.key(0), 5)
    prob = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S))
    hist = sl.Histogram(coords=(5,), edges=jnp.linspace(-1.0, 1.0, 5))
    with pytest.raises(ValueError, match=r"hist coords=\(5,\) is invalid: .* 0..2"):
        sl.simulate(
            sl.SGD(0.1), prob, jnp.ones(3), 10, 2, jax.random.key(0), 5, keep="stats", hist=hist
        )
