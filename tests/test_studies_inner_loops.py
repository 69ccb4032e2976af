"""`sdelens.studies.inner_loops`: Entropy-SGD's inner-loop variants at equal cost, the
local-entropy direction's bias and variance against the finite-chain closed forms, the
equal-budget runs, the figure and bad input (docs/math.md §7.9)."""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

import sdelens as sl

H, X0, SIGMA, TEMP = np.array([0.5, 3.0]), np.array([2.0, -1.0]), 0.5, 0.01
PROB = sl.Quadratic(h=jnp.asarray(H), noise=sl.GaussianNoise(SIGMA))
BASE = sl.EntropySGD(lr=0.2, gamma=1.0, inner_lr=0.1, inner_steps=3, temperature=TEMP)
N_PATHS = 2000


@pytest.fixture(scope="module")
def study():
    with jax.enable_x64(True):
        result = sl.studies.inner_loops(
            PROB,
            BASE,
            jnp.asarray(X0),
            grad_budget=3,
            key=jax.random.key(0),
            variants=("restart", "cv"),
            baselines=[sl.SGD(0.1)],
            n_runs=N_PATHS,  # one outer step of as many runs: the sweep's restart run again
            n_saves=1,
            inner_steps=(3,),
            n_steps=1,
            n_paths=N_PATHS,
        )
    yield result
    plt.close("all")


def _finite_chain(h, gamma, inner_lr, steps, alpha=0.75):
    """`K` and the `B_j` of the restarted chain (docs/math.md §7.4, "Finite chain")."""
    a = 1.0 - inner_lr * (h + gamma)
    w = alpha * (1 - alpha) ** (steps - np.arange(1, steps + 1))
    k = inner_lr * sum(w[i - 1] * sum(a**j for j in range(i)) for i in range(1, steps + 1))
    b = [sum(w[i - 1] * a ** (i - 1 - j) for i in range(j + 1, steps + 1)) for j in range(steps)]
    return k, np.asarray(b)


def test_one_outer_step_bias_and_variance_match_the_closed_forms(study):
    """From one start point the direction's error `γ(x - μ) - γ h/(h+γ) x` has mean
    `γ (K h - h/(h+γ)) x` and variance `γ² Var μ`: `(η'²σ² + 2η'T) Σ B_j²` per coordinate for
    the restart, `K²σ²/m + 2η'T Σ B_j²` for the control variate (cost `2L + m`)."""
    gamma, il, steps = 1.0, 0.1, 3
    chains = [_finite_chain(h, gamma, il, steps) for h in H]
    k, b = np.array([c[0] for c in chains]), np.stack([c[1] for c in chains])  # b: (d, L)
    thermal = 2 * il * TEMP * np.sum(b**2, axis=1)
    bias2 = np.sum((gamma * (k * H - H / (H + gamma)) * X0) ** 2)
    variances = {
        "restart": gamma**2 * (il**2 * SIGMA**2 * np.sum(b**2, axis=1) + thermal),
        "cv": gamma**2 * (k**2 * SIGMA**2 + thermal),
    }
    assert study.grads_per_step == {"restart": [3], "cv": [7]}
    for name, var in variances.items():
        se_var = np.sqrt(np.sum(2 * var**2 / (N_PATHS - 1)))
        assert abs(study.variance[name][0] - var.sum()) < 4 * se_var, name
        se_bias = 2 * np.sqrt(bias2 * var.sum() / N_PATHS) + var.sum() / N_PATHS
        assert abs(study.bias2[name][0] - bias2) < 4 * se_bias, name
        assert study.mse[name][0] == pytest.approx(study.bias2[name][0] + study.variance[name][0])
    assert study.scale == pytest.approx(np.sum((gamma * H / (H + gamma) * X0) ** 2))


def test_equal_budget_runs_and_metrics(study):
    """Every variant at the base's cost per outer step: the control variate with
    `(L - m) // 2 = 1` inner step and one anchor costs 3, like `L = 3`."""
    assert list(study.fair.runs) == ["sgd", "restart", "cv"]
    assert study.variants["cv"].inner_steps == 1 and study.variants["cv"].grads_per_step == 3
    metrics = study.metrics()
    for name, row in metrics["compute_fair"].items():
        assert row["grad_evals"] == 3, name
    assert metrics["variants"]["cv"]["control_variate"] is True
    assert metrics["estimator"]["cv"]["grads_per_step"] == [7]
    assert metrics["estimator"]["n_paths"] == N_PATHS
    figs = sl.plot.figures(study)
    assert {"estimator_error", "loss_vs_grad_evals", "loss_vs_seconds"} <= set(figs)


def test_variants_at_equal_cost_and_bad_input():
    variants = sl.studies.inner_loop_variants(
        BASE.replace(inner_steps=10, inner="sghmc", warm_start=True), anchor_batches=2
    )
    assert list(variants) == list(sl.studies.INNER_LOOP_VARIANTS)
    assert {n: v.grads_per_step for n, v in variants.items()} == dict.fromkeys(variants, 10)
    assert variants["restart"].inner == "sgld" and not variants["restart"].warm_start
    assert variants["warm-sghmc"].inner == "sghmc" and variants["warm-sghmc"].warm_start
    assert variants["cv"].inner_steps == 4 and variants["cv"].anchor_batches == 2
    with pytest.raises(ValueError, match="inner_steps=3 is too small for the control variate"):
        sl.studies.inner_loop_variants(BASE, ["cv"], anchor_batches=2)
    with pytest.raises(ValueError, match="variants='hmc' is invalid"):
        sl.studies.inner_loop_variants(BASE, ["hmc"])
    with pytest.raises(ValueError, match="each variant at most once"):
        sl.studies.inner_loop_variants(BASE, ["warm", "warm"])
    with pytest.raises(ValueError, match="base=SGD"):
        sl.studies.inner_loop_variants(sl.SGD(0.1))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="x0 is required for a Quadratic"):
        sl.studies.inner_loops(PROB, BASE, grad_budget=12, key=key)
    with pytest.raises(ValueError, match="n_paths=1 is invalid"):
        sl.studies.inner_loops(PROB, BASE, jnp.asarray(X0), grad_budget=12, key=key, n_paths=1)
    with pytest.raises(ValueError, match="key=None is invalid"):
        sl.studies.inner_loops(PROB, BASE, jnp.asarray(X0), grad_budget=12, key=None)
