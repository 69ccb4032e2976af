"""Coupled optimizer–SDE runs (docs/math.md §13): the optimizer's noise driven by the SDE's
Brownian increments leaves each run's law unchanged, and the paired differences estimate the
weak error with a far smaller standard error; refusals come before any run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

PROB = sl.Quadratic.standard(3)
X0 = jnp.ones(3)
N, STEPS, EVERY = 400, 400, 20


def _pair(opt, coupled, key=0, substeps=4):
    return sl.optimizer_vs_sde(
        opt,
        PROB,
        X0,
        n_steps=STEPS,
        n_paths=N,
        key=jax.random.key(key),
        save_every=EVERY,
        substeps=substeps,
        coupled=coupled,
    )


def test_coupling_keeps_the_optimizers_law():
    """SignSGD driven by its SDE's increments (4 substeps) against the same optimizer with its
    own draws: the mean loss and every coordinate's mean and variance at each save agree
    within Monte Carlo error (4 standard errors of the difference of two independent runs)."""
    opt = sl.SignSGD(lr=0.01)
    coupled = sl.run_optimizer(
        opt, PROB, X0, STEPS, 2000, jax.random.key(1), EVERY, coupled=True, substeps=4
    )
    own = sl.run_optimizer(opt, PROB, X0, STEPS, 2000, jax.random.key(2), EVERY)
    c = sl.compare(own, coupled)
    assert np.max(np.abs(c.diff[1:]) / c.se_diff[1:]) < 4.0  # after the common start
    a, b = own.statistics(), coupled.statistics()
    se_mean = np.sqrt((a.x_var + b.x_var) / 2000)[1:]
    assert np.max(np.abs(a.x_mean - b.x_mean)[1:] / se_mean) < 4.5
    # Var of a sample variance of n Gaussian-ish values: 2σ⁴/(n-1) each
    se_var = np.sqrt(2 * (a.x_var**2 + b.x_var**2) / 1999)[1:]
    assert np.max(np.abs(a.x_var - b.x_var)[1:] / se_var) < 4.5
    assert coupled.config["coupled"] and not own.config["coupled"]


@pytest.mark.parametrize(
    "opt, least",
    [
        (sl.SGD(lr=0.01), 100.0),
        (sl.Adam(lr=0.01, beta1=0.9, beta2=0.99), 8.0),
        (sl.SignSGD(lr=0.01), 2.0),
    ],
    ids=["sgd", "adam", "signsgd"],
)
def test_pairing_shrinks_the_standard_error_of_the_weak_error(opt, least):
    """The same comparison with coupled and with independent runs: the mean gaps agree within
    their errors, the paired standard error is many times smaller (SGD: the same Euler scheme
    up to the substeps; SignSGD: a sign coupled to a Gaussian keeps at most 2/π of the variance
    per step, docs/math.md §13), and the strong error of coupled paths is a small fraction of
    that of independent ones."""
    free, tied = _pair(opt, False), _pair(opt, True)
    cf, ct = free.comparison, tied.comparison
    assert ct.paired and not cf.paired
    np.testing.assert_allclose(ct.se_independent, cf.se_diff, rtol=0.25)
    later = slice(1, None)
    gap_se = np.sqrt(cf.se_diff**2 + ct.se_diff**2)[later]
    assert np.max(np.abs(cf.diff - ct.diff)[later] / gap_se) < 4.0
    ratio = tied.metrics()["paths_ratio_median"]
    assert ratio > least, ratio
    # the same paths: the paired mean difference is the difference of the means
    np.testing.assert_allclose(ct.diff, ct.mean_loss_b - ct.mean_loss_a, atol=1e-6)
    strong = ct.strong_error[-1]
    independent = np.mean(np.linalg.norm(free.run.x[:, -1] - free.ref.x[:, -1], axis=-1))
    assert strong < 0.7 * independent


def test_coupled_weak_order_keeps_its_slope_with_fewer_paths():
    """SGD's weak error against its SDE over [0, 1] at three learning rates from 300 coupled
    paths: slope 1 (the Euler substeps' error, ∝ η) with standard errors below a tenth of the
    errors, which uncoupled runs need about 100 times the paths for."""
    sgd = sl.SGD(lr=0.02)
    w = sl.weak_order(
        sgd, PROB, lrs=[0.05, 0.1, 0.2], horizon=1.0, x0=X0, n_paths=300, n_saves=5,
        substeps=2, key=jax.random.key(3), coupled=True,
    )  # fmt: skip
    assert np.all(w.se < 0.1 * w.error), (w.error, w.se)
    assert 0.8 < w.slope < 1.2, w.slope


@pytest.mark.parametrize(
    "opt, prob, form, needle",
    [
        (sl.EntropySGD(lr=0.1, gamma=1.0, inner_lr=0.02, inner_steps=5, temperature=0.01),
         PROB, "default", "EntropySGDSDE"),
        (sl.SAM(lr=0.01, rho=0.05), PROB, "moments", "MomentsSDE"),
        (sl.SGD(lr=0.01),
         sl.Quadratic(h=jnp.ones(3), noise=sl.SampledNoise(
             lambda k, s: jax.random.normal(k, s), covariance_sqrt=jnp.eye(3))),
         "default", "SampledNoise"),
    ],
    ids=["entropysgd", "monte-carlo-moments", "sampled-noise"],
)  # fmt: skip
def test_pairs_that_cannot_be_coupled_are_refused(opt, prob, form, needle):
    with pytest.raises(ValueError, match=f"coupled=True is invalid for .*{needle}"):
        sl.run_optimizer(opt, prob, X0, 10, 2, jax.random.key(0), coupled=True, form=form)


def test_coupled_option_errors():
    with pytest.raises(ValueError, match="keep='stats' is invalid with coupled=True"):
        sl.optimizer_vs_sde(
            sl.SGD(lr=0.01), PROB, X0, n_steps=10, n_paths=2, key=jax.random.key(0),
            keep="stats", coupled=True,
        )  # fmt: skip
    with pytest.raises(ValueError, match="need coupled=True"):
        sl.run_optimizer(sl.SGD(lr=0.01), PROB, X0, 10, 2, jax.random.key(0), substeps=4)
    with pytest.raises(ValueError, match="coupled=1 is invalid"):
        sl.run_optimizer(sl.SGD(lr=0.01), PROB, X0, 10, 2, jax.random.key(0), coupled=1)
    with pytest.raises(ValueError, match="extrapolate=True"):
        sl.weak_order(
            sl.SGD(lr=0.1), PROB, lrs=[0.1, 0.2], horizon=1.0, x0=X0, n_saves=5,
            extrapolate=True, coupled=True,
        )  # fmt: skip
    a = sl.run_optimizer(sl.SGD(lr=0.01), PROB, X0, 10, 4, jax.random.key(0), 5)
    b = sl.run_optimizer(sl.SGD(lr=0.01), PROB, X0, 10, 4, jax.random.key(0), 5, keep="stats")
    with pytest.raises(ValueError, match="kept statistics only"):
        sl.compare(a, b, paired=True)
    c = sl.run_optimizer(sl.SGD(lr=0.01), PROB, X0, 10, 3, jax.random.key(0), 5)
    with pytest.raises(ValueError, match="the same paths"):
        sl.compare(a, c, paired=True)


def test_minibatch_noise_couples_with_the_exact_covariance_sde():
    """On a network with exact minibatch noise the SDE's Brownian motion has one coordinate per
    example, and the optimizer's minibatch is the examples with the largest normals: coupled
    SGD is closer to its SDE path by path than an independent run (a batch indicator correlates
    with the normals like a sign does, so the gain is partial: measured 0.64 of the distance)."""
    prob = sl.network_problem(
        "mlp-breast-cancer", sl.MinibatchNoise(8), key=jax.random.key(0), train_size=64
    )
    pair = {"n_steps": 20, "n_paths": 16, "save_every": 10, "substeps": 1, "key": jax.random.key(1)}
    tied = sl.optimizer_vs_sde(sl.SGD(lr=0.2), prob, prob.x0, coupled=True, **pair)
    free = sl.optimizer_vs_sde(sl.SGD(lr=0.2), prob, prob.x0, **pair)
    tied_gap = np.mean(np.linalg.norm(tied.run.x[:, -1] - tied.ref.x[:, -1], axis=-1))
    free_gap = np.mean(np.linalg.norm(free.run.x[:, -1] - free.ref.x[:, -1], axis=-1))
    assert tied_gap < 0.8 * free_gap, (tied_gap, free_gap)
    diagonal = sl.network_problem(
        "mlp-breast-cancer", sl.MinibatchNoise(8, covariance="diagonal"),
        key=jax.random.key(0), train_size=64,
    )  # fmt: skip
    with pytest.raises(ValueError, match="Brownian motion has shape"):
        sl.run_optimizer(
            sl.SGD(lr=0.2), diagonal, diagonal.x0, 4, 2, jax.random.key(0), coupled=True
        )
