"""The recurrent equal-compute path of `benchmarks/entropy_recurrent.py` (docs/math.md §7.10): a
character LSTM, several initialisations as `x0` of shape `(n_runs, d)`, bits per character,
gradient evaluations counted per optimizer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl


def test_recurrent_compute_fair_reports_bits_per_char_counts_gradients_and_varies_seeds():
    data = sl.nn.load_synthetic(n_chars=400, seq_len=8, test_fraction=0.25)
    prob = sl.network_problem(
        "lstm", sl.MinibatchNoise(8), key=jax.random.key(0), data=data, embed=4, hidden=8
    )
    # a second initialisation of the same architecture, as the benchmark's seeds
    other = sl.nn.RecurrentLM(data.n_classes, embed=4, hidden=8, key=jax.random.key(1))
    x0s = jnp.stack([prob.x0, prob.flatten(other)])
    entropy = sl.EntropySGD(
        lr=1.0,
        gamma=0.03,
        inner_lr=0.3,
        inner_steps=3,
        temperature=1e-5,
        momentum=0.9,
        nesterov=True,
        gamma_in_outer_step=False,
    )
    fair = sl.compute_fair(
        prob,
        [entropy],
        x0s,
        grad_budget=6,
        n_runs=2,
        n_saves=1,
        key=jax.random.key(0),
    )
    metrics = fair.metrics()
    for name, per_step in (("entropysgd", 3),):
        run, row = fair.runs[name], metrics[name]
        np.testing.assert_array_equal(run.steps, [0, 6 // per_step])
        assert row["grad_evals"] == 6 and run.grad_evals == 6
        assert row["effective_epochs"] == pytest.approx(6 * 8 / data.n_train)
        # each run starts at its own initialisation, and the runs end apart
        np.testing.assert_array_equal(run.x[:, 0], np.asarray(x0s))
        assert run.loss[0, -1] != run.loss[1, -1]
        test = fair.test_loss[name][:, -1]
        assert row["final_test_bits_per_char"] == pytest.approx(np.mean(test) / np.log(2.0))
        se = np.std(test, ddof=1) / np.sqrt(2) / np.log(2.0)
        assert row["final_test_bits_per_char_se"] == pytest.approx(se, rel=1e-5)
        # a fresh model predicts about uniformly: log2(vocabulary) bits per character
        start = fair.test_loss[name][:, 0] / np.log(2.0)
        np.testing.assert_allclose(start, np.log2(data.n_classes), rtol=0.05)
