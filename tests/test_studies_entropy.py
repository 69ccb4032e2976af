"""`sdelens.studies._entropy`: Entropy-SGD against its baselines: equal compute, Hessian
spectra, sensitivity grids, local entropy vs smoothing, and what it checks first."""

import jax
import numpy as np
import pytest

import sdelens as sl
from sdelens import flatness
from sdelens.studies import _entropy

KEY = jax.random.key(0)
ENTROPY = sl.EntropySGD(lr=1.0, gamma=0.03, inner_lr=0.1, inner_steps=5, temperature=1e-5)


@pytest.fixture(scope="module")
def prob():
    return sl.network_problem(
        "mlp-breast-cancer", sl.MinibatchNoise(32), key=KEY, train_size=128, width=4, depth=1
    )


@pytest.fixture(scope="module")
def study(prob):
    messages = []
    result = sl.studies.entropy_study(
        prob,
        ENTROPY,
        [sl.SGD(0.1)],
        grad_budget=20,
        key=KEY,
        n_runs=2,
        n_saves=2,
        grids=[(("gamma", [0.01, 0.1]), ("inner_steps", [2]))],
        progress=messages.append,
    )
    return result, messages


def test_metrics_hold_every_part(study, prob):
    result, messages = study
    m = result.metrics()
    assert set(m) == {"compute_fair", "hessian", "sensitivity", "preference"}
    assert set(m["compute_fair"]) == {"sgd", "entropysgd"}
    assert all(row["grad_evals"] == 20 for row in m["compute_fair"].values())
    assert m["compute_fair"] == result.fair.metrics() and result.entropy_sgd == ENTROPY
    np.testing.assert_array_equal(result.fair.runs["entropysgd"].steps, [0, 2, 4])
    assert set(m["hessian"]) == {"sgd", "entropysgd"}
    assert len(m["hessian"]["sgd"]["top_eigenvalues"]) == 10
    (grid,) = m["sensitivity"]
    assert grid["x"] == "gamma" and grid["y"] == "inner_steps"
    assert np.asarray(grid["final_loss"]).shape == (2, 1)
    assert m["preference"]["temperatures"] == list(_entropy.PREFERENCE_TEMPERATURES)
    assert np.asarray(m["preference"]["entropy_wide_minus_narrow"]).shape == (5, 3)
    assert messages[0] == "2 optimizers x 2 runs, 20 gradients each"
    assert any(msg.startswith("sensitivity grid gamma x inner_steps (2)") for msg in messages)


def test_parts_are_the_studies_they_name(study, prob):
    """Each part equals the study run alone: the spectrum at run 0's final point with `key`,
    the grid with `fold_in(key, 1)` and `n_runs // 2` runs, the preference on the two wells."""
    result, _ = study
    x = result.fair.runs["sgd"].x[0, -1]
    spectrum = sl.hessian_spectrum(prob, x, KEY)
    np.testing.assert_allclose(result.spectra["sgd"].top, spectrum.top, rtol=1e-5)
    assert result.spectra["sgd"].trace == pytest.approx(spectrum.trace, rel=1e-5)
    grid = sl.sensitivity(
        prob,
        ENTROPY,
        "gamma",
        [0.01, 0.1],
        "inner_steps",
        [2],
        grad_budget=20,
        n_runs=1,
        key=jax.random.fold_in(KEY, 1),
    )
    np.testing.assert_allclose(result.grids[0].loss, grid.loss, rtol=1e-6)
    np.testing.assert_allclose(result.grids[0].accuracy, grid.accuracy)
    loss, narrow, wide = flatness.two_minima()
    pref = sl.minimum_preference(
        loss, narrow, wide, _entropy.PREFERENCE_TEMPERATURES, _entropy.PREFERENCE_GAMMAS
    )
    np.testing.assert_allclose(result.preference.entropy_gap, pref.entropy_gap, rtol=1e-6)
    np.testing.assert_allclose(result.preference.smoothing_gap, pref.smoothing_gap, rtol=1e-6)


def test_parts_can_be_left_out(prob):
    bare = sl.studies.entropy_study(
        prob,
        ENTROPY,
        [],
        grad_budget=10,
        key=KEY,
        n_runs=1,
        n_saves=1,
        spectrum=False,
        preference=False,
    )
    assert set(bare.metrics()) == {"compute_fair"} and set(bare.fair.runs) == {"entropysgd"}
    assert bare.spectra == {} and bare.grids == [] and bare.preference is None


def test_grids_and_inputs_are_checked_before_running(prob, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("compute_fair ran before the checks")

    monkeypatch.setattr(_entropy, "compute_fair", never)
    kwargs = {"grad_budget": 20, "key": KEY}
    with pytest.raises(ValueError, match="beta is not a hyperparameter of EntropySGD"):
        sl.studies.entropy_study(
            prob, ENTROPY, [], grids=[(("beta", [1.0]), ("gamma", [0.1]))], **kwargs
        )
    with pytest.raises(ValueError, match="inner_steps=0 is invalid"):
        sl.studies.entropy_study(
            prob, ENTROPY, [], grids=[(("gamma", [0.1]), ("inner_steps", [2, 0]))], **kwargs
        )
    with pytest.raises(ValueError, match="x_values and y_values must each hold at least one"):
        sl.studies.entropy_study(
            prob, ENTROPY, [], grids=[(("gamma", []), ("inner_steps", [2]))], **kwargs
        )
    with pytest.raises(ValueError, match="entropy_sgd=SGD.* is invalid: an sl.EntropySGD"):
        sl.studies.entropy_study(prob, sl.SGD(0.1), [], **kwargs)
    with pytest.raises(ValueError, match="key=None is invalid"):
        sl.studies.entropy_study(prob, ENTROPY, [], grad_budget=20, key=None)
