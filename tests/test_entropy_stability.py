"""`sdelens.studies.entropy_sgd_stability`: Entropy-SGD's stability region on a quadratic,
measured by running the optimizer and against the exact linear rate (docs/math.md §7.4), its
closed-form boundary, the figure, and the input it refuses."""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.contour import ContourSet

import sdelens as sl
from sdelens.studies import EntropyStability, entropy_sgd_lr_max, entropy_sgd_stability

STD = sl.Quadratic.standard(3)  # the command line's quadratic, h = 1, 2.5, 4


def _max_radius(prob, lr, gamma, inner_lr, **kw):
    kw = {"inner_steps": 20, **kw}  # entropy_sgd_lr_max's default
    opt = sl.EntropySGD(lr=lr, gamma=gamma, inner_lr=inner_lr, temperature=0.0, **kw)
    return float(np.max(np.abs(sl.entropy_sgd_rate(opt, prob).per_step)))


@pytest.fixture(scope="module")
def grid():
    """6 x 6 x 2 around the command line's defaults (lr 0.01, γ 1, η' 0.02, L 20), spanning
    both sides of `|r| = 1` and, at η' = 0.4, of the inner chain's bound γ < 2/η' - 4 = 1."""
    return entropy_sgd_stability(
        STD,
        lrs=np.geomspace(0.01, 30.0, 6),
        gammas=np.geomspace(0.1, 10.0, 6),
        inner_lrs=[0.02, 0.4],
        steps=400,
        key=jax.random.key(0),
    )


def test_the_rate_is_the_noise_free_optimizer_per_eigenvalue():
    """Without noise the optimizer is the mean's recursion: `run_optimizer` (temperature 0,
    gradient noise 1e-30) multiplies each eigen-coordinate by `entropy_sgd_rate`'s `r` per
    outer step, to float32 precision."""
    prob = sl.Quadratic(h=jnp.array([1.0, 2.5, 4.0]), noise=sl.GaussianNoise(1e-30))
    opt = sl.EntropySGD(lr=0.7, gamma=1.5, inner_lr=0.05, inner_steps=20, temperature=0.0)
    r = sl.entropy_sgd_rate(opt, prob).per_step
    assert np.all(np.abs(r) < 1) and np.ptp(r) > 0.05  # three distinct contractions
    run = sl.run_optimizer(opt, prob, jnp.ones(3), n_steps=30, n_runs=1, key=jax.random.key(1))
    x = np.asarray(run.x[0], dtype=float)
    np.testing.assert_allclose(x[1:] / x[:-1], np.broadcast_to(r, (30, 3)), rtol=2e-5)
    np.testing.assert_allclose(x[-1], r**30, rtol=3e-4)


def test_measured_growth_is_the_spectral_radius():
    """At clearly stable and clearly unstable points, from a fixed start, on a rotated `H`
    with its minimum off 0: `(|x_K - x*|/|x_0 - x*|)^{1/K}` is `max |r|` within 1e-3 (the start
    point's share of the dominant mode costs at most log(√3)/K), the last step's factor within
    1e-5; the verdicts agree everywhere."""
    q, _ = np.linalg.qr(np.array([[1.0, 0.3, -0.2], [0.1, 1.0, 0.4], [-0.3, 0.2, 1.0]]))
    h = q @ np.diag([1.0, 2.5, 4.0]) @ q.T
    prob = sl.Quadratic(h=h, noise=sl.GaussianNoise(0.1), minimum=jnp.array([0.5, -1.0, 2.0]))
    x0 = prob.x_star + q @ np.ones(3)  # equal shares of the three modes
    res = entropy_sgd_stability(
        prob,
        lrs=[0.05, 0.5, 2.0, 12.0],
        gammas=[0.3, 1.0, 3.0],
        inner_lrs=[0.05],
        steps=1500,
        x0=x0,
        key=jax.random.key(2),
    )
    radius = res.spectral_radius
    assert (radius < 0.99).sum() >= 6 and (radius > 1.01).sum() >= 2
    interior = ~res.near_boundary
    assert interior.sum() >= 10
    np.testing.assert_allclose(res.growth[interior], radius[interior], rtol=1e-3)
    assert np.all(res.growth[interior] <= radius[interior] * (1 + 1e-5))  # approached from below
    np.testing.assert_allclose(res.last_growth[interior], radius[interior], rtol=1e-5)
    assert res.agreement == 1.0 and res.disagreements() == []
    np.testing.assert_array_equal(res.numeric_stable, radius < 1)
    assert res.metrics()["max_rel_growth_gap"] < 1e-3


def test_agreement_on_a_grid_across_the_boundary(grid):
    assert isinstance(grid, EntropyStability)
    assert grid.spectral_radius.shape == grid.growth.shape == (6, 6, 2)
    # both sides of both conditions are on the grid
    assert grid.theory_stable.any() and (~grid.theory_stable).any()
    assert (grid.inner_radius[..., 1] >= 1).any() and (grid.inner_radius[..., 0] < 1).all()
    assert grid.agreement >= 0.95, grid.disagreements()
    assert grid.agreement_away_from_boundary == 1.0
    assert all(d["reason"] != "unexplained" for d in grid.disagreements())
    # where the inner chain diverges within the outer step the runs blow up (or overflow)
    wild = grid.inner_radius > 1.5
    assert wild.any() and not grid.numeric_stable[wild].any()
    metrics = grid.metrics()
    assert metrics["n_points"] == 72 and metrics["agreement"] == grid.agreement
    assert metrics["max_rel_growth_gap"] < 0.01
    assert np.allclose(metrics["gamma_max"], [2 / 0.02 - 4, 2 / 0.4 - 4])


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"inner_steps": 5, "alpha": 0.25},
        {"inner_steps": 50, "gamma_in_outer_step": False},
    ],
)
@pytest.mark.parametrize("gamma, inner_lr", [(0.1, 0.02), (1.0, 0.02), (3.0, 0.1), (0.5, 0.3)])
def test_closed_form_boundary_is_where_the_radius_crosses_one(gamma, inner_lr, kw):
    """`lr_max = 2/(γ_out max_h D(h))` against a bisection of `entropy_sgd_rate`'s `max |r| = 1`
    in `lr` (|r| - 1 changes sign once: `r` is affine in `lr`, `r(0) = 1`)."""
    lr_max = float(entropy_sgd_lr_max(STD, gamma, inner_lr, **kw))
    assert lr_max > 0
    lo, hi = 1e-6, 1e6
    for _ in range(200):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if _max_radius(STD, mid, gamma, inner_lr, **kw) < 1 else (lo, mid)
        if hi / lo < 1 + 1e-13:
            break
    assert lr_max == pytest.approx(lo, rel=1e-10)
    assert _max_radius(STD, lr_max * (1 - 1e-6), gamma, inner_lr, **kw) < 1
    assert _max_radius(STD, lr_max * (1 + 1e-6), gamma, inner_lr, **kw) > 1


def test_boundary_limits_and_the_inner_chain_bound(grid):
    # L → ∞: D → h/(h+γ), lr_max → 2/γ + 2/h_max (γ_out = γ)
    for gamma in (0.3, 1.0, 4.0):
        long = float(entropy_sgd_lr_max(STD, gamma, 0.02, inner_steps=3000))
        assert long == pytest.approx(2 / gamma + 2 / 4.0, rel=1e-9)
    # the inner chain's a = 1 - η'(h_max + γ) crosses -1 at γ = 2/η' - h_max
    opt = sl.EntropySGD(lr=0.01, gamma=1.0, inner_lr=0.4, inner_steps=20, temperature=0.0)
    edge = 2 / 0.4 - 4.0
    below = sl.entropy_sgd_rate(opt.replace(gamma=edge * (1 - 1e-6)), STD).inner_factor[-1]
    above = sl.entropy_sgd_rate(opt.replace(gamma=edge * (1 + 1e-6)), STD).inner_factor[-1]
    assert -1 < below and above < -1
    # the grid's theory, closed form and entropy_sgd_rate are the same numbers
    lr, gamma, inner = np.meshgrid(grid.lrs, grid.gammas, grid.inner_lrs, indexing="ij")
    closed = grid.spectral_radius_at(lr, gamma, inner)
    finite = np.isfinite(closed)
    np.testing.assert_allclose(closed[finite], grid.spectral_radius[finite], rtol=1e-10)
    np.testing.assert_allclose(
        grid.lr_max, entropy_sgd_lr_max(STD, grid.gammas[:, None], grid.inner_lrs[None, :])
    )
    below_max = grid.lrs[:, None, None] < grid.lr_max[None] * (1 - 1e-9)
    inner_ok = grid.gammas[None, :, None] < grid.gamma_max[None, None, :]
    np.testing.assert_array_equal(grid.theory_stable, below_max & inner_ok)


def test_the_figure_draws_the_boundary(grid):
    fig = sl.plot.entropy_sgd_stability(grid)
    ax = fig.axes[0]
    assert any(isinstance(c, ContourSet) for c in ax.collections)
    labels = ax.get_legend_handles_labels()[1]
    assert "theory: |r| = 1" in labels and any("off the map" in s for s in labels)
    assert "η' = 0.02" in ax.get_title()
    plt.close(fig)
    fig, ax = plt.subplots()
    assert sl.plot.entropy_sgd_stability(grid, ax=ax, inner_lr=0.4) is fig
    assert any(isinstance(c, ContourSet) for c in ax.collections)
    labels = ax.get_legend_handles_labels()[1]
    assert "inner chain: γ = 2/η' - h_max = 1" in labels  # drawn: γ = 1 is on the map
    plt.close(fig)
    with pytest.raises(ValueError, match=r"inner_lr=0\.1 is invalid: .*0\.02, 0\.4"):
        sl.plot.entropy_sgd_stability(grid, inner_lr=0.1)
    with pytest.raises(ValueError, match="result=dict is invalid"):
        sl.plot.entropy_sgd_stability({})


GOOD = {"lrs": [0.1, 1.0], "gammas": [1.0], "inner_lrs": [0.02]}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"lrs": [0.1, -1.0]}, r"lrs=\[0.1, -1\] is invalid: every entry must be finite and > 0"),
        ({"lrs": [0.0]}, "lrs=.* is invalid: every entry must be finite and > 0"),
        ({"gammas": []}, r"gammas=\[\] is invalid: at least one value is required"),
        ({"inner_lrs": [np.nan]}, "inner_lrs=.* is invalid: every entry must be finite"),
        ({"lrs": [1.0, 0.1]}, r"lrs=\[1, 0.1\] is invalid: values must be increasing"),
        ({"lrs": [[0.1, 1.0]]}, r"lrs has shape \(1, 2\): a 1-D sequence"),
        ({"gammas": "1,2"}, "gammas='1,2' is invalid: a sequence of numbers"),
        ({"inner_lrs": None}, "inner_lrs=None is invalid"),
        ({"inner_steps": 0}, "inner_steps=0 is invalid: must be an integer >= 1"),
        ({"alpha": 0.0}, r"alpha=0.0 is invalid: allowed range is \(0, 1\]"),
        ({"alpha": 1.5}, r"alpha=1.5 is invalid: allowed range is \[0.0, 1.0\]"),
        ({"gamma_in_outer_step": "yes"}, "gamma_in_outer_step='yes' is invalid: True or False"),
        ({"steps": 2.5}, "steps=2.5 is invalid: must be an integer >= 1"),
        ({"paths": 0}, "paths=0 is invalid: must be an integer >= 1"),
        ({"threshold": 0.0}, "threshold=0.0 is invalid: every entry must be finite and > 0"),
        ({"key": None}, "key=None is invalid: pass a JAX PRNG key"),
        ({"key": 3}, "key=3 is invalid"),
        ({"x0": jnp.zeros(3)}, "x0 is invalid: a start point at the minimum"),
        ({"x0": jnp.ones(2)}, "x0 has dimension d=2"),
        ({"x0": jnp.ones((2, 3)), "paths": 3}, r"paths=3 is invalid with x0 of shape \(2, 3\)"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(changes, message):
    kw = {**GOOD, "key": jax.random.key(0), **changes}
    with pytest.raises(ValueError, match=message):
        entropy_sgd_stability(STD, **kw)


def test_only_quadratics_and_valid_boundary_arguments():
    net = sl.Problem(lambda v: jnp.sum(v**2), sl.GaussianNoise(0.1), dim=3)
    with pytest.raises(ValueError, match="prob=Problem is invalid: an sl.Quadratic is required"):
        entropy_sgd_stability(net, **GOOD, key=jax.random.key(0))
    with pytest.raises(ValueError, match="prob=Problem is invalid"):
        entropy_sgd_lr_max(net, 1.0, 0.02)
    with pytest.raises(ValueError, match="gamma=-1.0 is invalid: every entry must be finite"):
        entropy_sgd_lr_max(STD, -1.0, 0.02)
    with pytest.raises(ValueError, match="inner_steps=0 is invalid"):
        entropy_sgd_lr_max(STD, 1.0, 0.02, inner_steps=0)
    # no learning rate is stable where the inner chain overshoots badly (D(h_max) < 0)
    assert float(entropy_sgd_lr_max(STD, 1.0, 0.5)) == 0.0
