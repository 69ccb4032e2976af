"""`noise_sweep`: the stationary loss of SGD and SignSGD, optimizer and SDE, reaches the
closed-form floor (docs/math.md §5) and grows like `s²` and `s` with the noise scale `s`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

H = jnp.array([1.0, 2.0, 4.0])
BASE = jnp.array([0.5, 1.0, 2.0])
LR = 2e-3
SCALES = [0.25, 0.5, 1.0, 2.0]


@pytest.fixture(scope="module")
def sweep():
    """Stationary loss of SGD and SignSGD, optimizer and SDE, as the noise scale grows."""
    return sl.noise_sweep(
        [sl.SGD(lr=LR), sl.SignSGD(lr=LR)],
        lambda s: sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=s * BASE)),
        SCALES,
        jnp.zeros(3),
        n_steps=10_000,
        n_paths=400,
        key=jax.random.key(0),
        save_every=50,
    )


def test_floor_and_noise_level_slopes(sweep):
    """Each estimate within 4 SE plus the O(η) bias, η·max(h)·E f, of the closed form; the
    slopes in the noise scale are 2 for SGD and 1 for SignSGD. (One test, so that the sweep
    runs once even when pytest-xdist spreads a module's tests over workers.)"""
    for name, by_kind in sweep.loss.items():
        theory = by_kind["theory"]
        for kind in ("optimizer", "sde"):
            tol = 4 * sweep.se[name][kind] + LR * float(H.max()) * theory
            assert np.all(np.abs(by_kind[kind] - theory) <= tol), (name, kind)
    for kind in ("optimizer", "sde"):
        assert abs(sweep.slopes["sgd"][kind] - 2.0) < 0.05
        assert abs(sweep.slopes["signsgd"][kind] - 1.0) < 0.05
    assert sweep.slopes["sgd"]["theory"] == pytest.approx(2.0)
    assert sweep.slopes["signsgd"]["theory"] == pytest.approx(1.0)
    # The theory column is the closed form at each scale; metrics and arrays hold the curves.
    assert sweep.parameter == "noise scale"
    np.testing.assert_array_equal(sweep.values, SCALES)
    sgd_floor = LR / 4 * float(jnp.sum(BASE**2)) * np.asarray(SCALES) ** 2
    np.testing.assert_allclose(sweep.loss["sgd"]["theory"], sgd_floor, rtol=1e-6)
    np.testing.assert_array_equal(sweep.se["sgd"]["theory"], 0.0)
    assert sweep.diverged == {n: {"optimizer": False, "sde": False} for n in ("sgd", "signsgd")}
    m = sweep.metrics()
    assert m["values"] == SCALES and m["slopes"] == sweep.slopes
    np.testing.assert_array_equal(
        m["stationary_loss"]["signsgd"]["sde"], sweep.loss["signsgd"]["sde"]
    )
    arrays = sweep.arrays()
    np.testing.assert_array_equal(arrays["sgd/optimizer/loss"], sweep.loss["sgd"]["optimizer"])
    np.testing.assert_array_equal(arrays["signsgd/sde/se"], sweep.se["signsgd"]["sde"])


def test_sweeps_refuse_bad_input_before_running():
    problem_at = lambda s: sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=s * BASE))  # noqa: E731
    sizes = dict(n_steps=100, n_paths=4)
    with pytest.raises(ValueError, match="key=None"):
        sl.noise_sweep([sl.SGD(lr=LR)], problem_at, SCALES, jnp.zeros(3), **sizes)
    with pytest.raises(ValueError, match="scales="):
        sl.noise_sweep(
            [sl.SGD(lr=LR)], problem_at, [1.0, 0.0], jnp.zeros(3), key=jax.random.key(0), **sizes
        )
    # Only optimizers with a decoupled weight decay can be swept over it.
    with pytest.raises(ValueError, match="weight_decay is not a hyperparameter of SGD"):
        sl.weight_decay_sweep(
            [sl.SGD(lr=LR)],
            problem_at(1.0),
            [0.1, 1.0],
            jnp.zeros(3),
            key=jax.random.key(0),
            **sizes,
        )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"burn_in": 1.5}, r"burn_in=1.5 is invalid: allowed range is \[0.0, 1.0\)"),
        ({"scales": [1.0, 1.0]}, r"scales=\[1.0, 1.0\] is invalid: the values must be distinct"),
        ({"weight_decays": [-1.0, 2.0]}, r"weight_decays=\[-1, 2\] is invalid: .* > 0"),
        ({"weight_decays": [1.0, 1.0]}, r"weight_decays=\[1.0, 1.0\] .* distinct"),
        ({"save_every": 7}, r"save_every=7 does not divide n_steps=100"),
        ({"n_paths": 0}, r"n_paths=0"),
        ({"optimizers": []}, r"optimizers=\[\] is invalid"),
        (
            {"optimizers": [sl.SignSGD(lr=LR), sl.SGD(lr=LR)], "weight_decays": [], "df": 1.5},
            "The SGD SDE does not exist for StudentTNoise",
        ),
    ],
)
def test_stationary_sweeps_check_everything_before_the_first_run(change, message):
    """A bad setting anywhere (also in the weight-decay sweep that runs second, also for the
    last optimizer or scale) fails before any run starts: nothing is reported as started."""
    change = dict(change)
    df = change.pop("df", None)

    def problem_at(s):
        if df is None:
            return sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=s * BASE))
        return sl.Quadratic(h=H, noise=sl.StudentTNoise(df=df, scale=s * BASE))

    started = []
    args = dict(
        optimizers=[sl.SignSGD(lr=LR), sl.Adam(lr=LR, weight_decay=1.0)],
        problem_at=problem_at,
        scales=[0.5, 1.0],
        x0=jnp.zeros(3),
        weight_decays=[0.5, 1.0],
        n_steps=100,
        n_paths=4,
        key=jax.random.key(0),
        progress=started.append,
    )
    with pytest.raises(ValueError, match=message):
        sl.studies.stationary_sweeps(**{**args, **change})
    assert started == []
