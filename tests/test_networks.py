"""Network problems: data, models, flattening, minibatch noise, SDE vs optimizer on an MLP."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sdelens as sl

SMALL_MLP = {"width": 4, "depth": 1}  # 134 parameters on Breast Cancer


@pytest.fixture(scope="module")
def small():
    return sl.network_problem("mlp-breast-cancer", sl.MinibatchNoise(32), **SMALL_MLP)


def test_bundled_datasets_split_and_standardise():
    bc = sl.nn.load_dataset("breast-cancer")
    digits = sl.nn.load_dataset("digits", image=True)
    assert bc.x_train.shape == (455, 30) and bc.x_test.shape == (114, 30) and bc.n_classes == 2
    assert digits.x_train.shape == (1438, 1, 8, 8) and digits.x_test.shape[0] == 359
    np.testing.assert_allclose(np.asarray(bc.x_train).mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(bc.x_train).std(0), 1.0, atol=1e-4)
    again = sl.nn.load_dataset("breast-cancer")
    other = sl.nn.load_dataset("breast-cancer", seed=1)
    assert np.array_equal(bc.y_test, again.y_test) and not np.array_equal(bc.y_test, other.y_test)


def test_npz_round_trip_and_bad_user_data(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.integers(0, 3, 50)
    np.savez(tmp_path / "ok.npz", x=x, y=y)
    data = sl.nn.load_npz(tmp_path / "ok.npz")
    assert data.n_train == 40 and data.n_classes == 3 and data.feature_shape == (3,)
    x_nan = x.copy()
    x_nan[3, 1] = np.nan
    bad = {
        "nan": ({"x": x_nan, "y": y}, "NaN"),
        "shapes": ({"x": x, "y": y[:-1]}, "shape"),
        "labels": ({"x": x, "y": y - 1}, "labels"),
        "missing": ({"x": x}, "'y'"),
    }
    for name, (arrays, message) in bad.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(ValueError, match=message):
            sl.nn.load_npz(tmp_path / f"{name}.npz")
    with pytest.raises(ValueError, match="n_classes=2"):
        sl.nn.load_npz(tmp_path / "ok.npz", n_classes=2)


def test_dataset_and_problem_bad_input():
    with pytest.raises(ValueError, match="dataset='mnist'"):
        sl.nn.load_dataset("mnist")
    with pytest.raises(ValueError, match="problem='mlp-mnist'"):
        sl.network_problem("mlp-mnist")
    x = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match=r"labels outside \[0, 2\)"):
        sl.nn.Dataset(x, jnp.array([0, 1, 2, 0]), x, jnp.zeros(4, int), n_classes=2)
    with pytest.raises(ValueError, match="x_train has 4 examples but y_train has 3"):
        sl.nn.Dataset(x, jnp.array([0, 1, 1]), x, jnp.zeros(4, int), n_classes=2)
    for batch in (0, 456):
        with pytest.raises(ValueError, match=f"batch_size={batch}"):
            sl.network_problem("mlp-breast-cancer", sl.MinibatchNoise(batch))
    with pytest.raises(ValueError, match="covariance='full'"):
        sl.MinibatchNoise(8, covariance="full")
    with pytest.raises(ValueError, match="needs square images"):
        sl.nn.make_model("lenet", 10, (64,), key=jax.random.key(0))


def test_flatten_round_trip_and_gradient(small):
    model = small.unflatten(small.x0)
    np.testing.assert_array_equal(small.flatten(model), small.x0)
    x = small.x0 + 0.1
    data = small.data

    def model_loss(m):
        logits = jax.vmap(m)(data.x_train)
        return optax.softmax_cross_entropy_with_integer_labels(logits, data.y_train).mean()

    want = small.flatten(eqx.filter_grad(model_loss)(small.unflatten(x)))
    np.testing.assert_allclose(small.grad(x), want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", list(sl.NETWORK_PROBLEMS))
def test_every_model_runs_under_jit_and_vmap(name):
    prob = sl.network_problem(name)
    run = sl.run_optimizer(sl.Adam(1e-3), prob, prob.x0, n_steps=2, n_runs=2, key=jax.random.key(0))
    assert run.x.shape == (2, 3, prob.dim) and np.all(np.isfinite(run.loss))
    assert run.loss[0, -1] < run.loss[0, 0]  # two Adam steps already lower the loss


def test_minibatch_covariance_matches_real_minibatches(small):
    """Cov of real minibatch gradients (Monte Carlo) = the SDE's Σ(x) = R Rᵀ at a fixed point."""
    x = small.x0
    n_samples = 6000
    keys = jax.random.split(jax.random.key(3), n_samples)
    grads = np.asarray(jax.vmap(lambda k: small.stochastic_grad(x, k))(keys), dtype=np.float64)
    coords = np.argsort(grads.var(0))[-12:]  # the noisiest coordinates: largest signal
    dev = grads[:, coords] - np.asarray(small.grad(x))[coords]
    products = dev[:, :, None] * dev[:, None, :]
    empirical = products.mean(0)
    se = products.std(0) / np.sqrt(n_samples)
    root = np.asarray(small.noise_cov_sqrt(x).as_matrix(), dtype=np.float64)
    theory = (root @ root.T)[np.ix_(coords, coords)]
    z = np.abs(empirical - theory) / se
    assert z.max() < 4.5, z.max()
    diagonal = sl.network_problem(
        "mlp-breast-cancer", sl.MinibatchNoise(32, covariance="diagonal"), **SMALL_MLP
    )
    var_diag = np.asarray(diagonal.noise_variance(x))
    np.testing.assert_allclose(np.diag(root @ root.T), var_diag, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(small.noise_variance(x)), var_diag, rtol=1e-6)
    full = sl.network_problem("mlp-breast-cancer", sl.MinibatchNoise(455), **SMALL_MLP)
    np.testing.assert_allclose(full.noise_variance(x), 0.0, atol=1e-12)


@pytest.mark.parametrize(
    "opt, tolerance",
    [(sl.SGD(0.05), 0.03), (sl.SignSGD(0.002), 0.03), (sl.Adam(0.002), 0.03)],
    ids=["sgd", "signsgd", "adam"],
)
def test_sde_tracks_optimizer_on_mlp_breast_cancer(opt, tolerance):
    """Gaussian noise s = 0.05 on the full-batch gradient (Compagnoni et al.'s setting), 200
    steps, 16 runs: the mean loss curves agree within `tolerance` (relative)."""
    prob = sl.network_problem("mlp-breast-cancer", sl.GaussianNoise(0.05))
    kwargs = {"n_steps": 200, "save_every": 20}
    ref = sl.run_optimizer(opt, prob, prob.x0, n_runs=16, key=jax.random.key(0), **kwargs)
    run = sl.simulate(opt, prob, prob.x0, n_paths=16, key=jax.random.key(1), **kwargs)
    comparison = sl.compare(ref, run)
    assert comparison.max_rel_mean_loss_error < tolerance
    assert ref.loss.mean(0)[-1] < 0.15 * ref.loss.mean(0)[0]  # it did train


def test_minibatch_sde_tracks_sgd(small):
    """Real minibatch noise, exact covariance: SGD vs its SDE (VJP diffusion) within 2%."""
    opt = sl.SGD(0.05)
    kwargs = {"n_steps": 100, "save_every": 20}
    ref = sl.run_optimizer(opt, small, small.x0, n_runs=32, key=jax.random.key(0), **kwargs)
    run = sl.simulate(opt, small, small.x0, n_paths=32, key=jax.random.key(1), **kwargs)
    assert sl.compare(ref, run).max_rel_mean_loss_error < 0.02
    loss, accuracy = small.metrics(run.x[0, -1])
    assert accuracy > 0.9 and loss < 0.3


def test_evaluate_and_cli_network_compare(tmp_path):
    from typer.testing import CliRunner

    from sdelens.cli import app

    out = tmp_path / "net"
    args = ["compare", "--problem", "mlp-breast-cancer", "--optimizer", "signsgd", "--lr", "0.002"]
    args += ["--steps", "40", "--paths", "4", "--save-every", "20", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    import json

    accuracy = json.loads((out / "summary.json").read_text())["metrics"]["final_test_accuracy"]
    assert 0.85 < accuracy["optimizer"] <= 1.0 and 0.85 < accuracy["sde"] <= 1.0
    assert (out / "test_accuracy.png").is_file()
    bad = CliRunner().invoke(app, ["compare", "--problem", "vgg-cifar", "--out", str(out / "x")])
    assert bad.exit_code == 2 and "--problem='vgg-cifar'" in bad.output
    bad = CliRunner().invoke(app, ["compare", "--noise", "minibatch", "--out", str(out / "y")])
    assert bad.exit_code == 2 and "network --problem" in bad.output


def test_signsgd_minibatch_sampled_sign_moments_capture_the_late_rise():
    """Near the minimum the minibatch gradient is skewed: the optimizer's loss rises between
    steps 80 and 200. The Gaussian approximation of E[sign g] predicts a fall; sampling real
    minibatches for the moments (sign_samples=64) predicts the rise."""
    kwargs = {"n_steps": 200, "n_paths": 8, "save_every": 40}
    trend = {}
    for k in (0, 64):
        prob = sl.network_problem("mlp-breast-cancer", sl.MinibatchNoise(32, sign_samples=k))
        both = sl.optimizer_vs_sde(sl.SignSGD(2e-3), prob, prob.x0, **kwargs)
        ref, run = both.ref.loss.mean(0), both.run.loss.mean(0)
        trend[k] = run[-1] - run[2]
    assert ref[-1] - ref[2] > 0.01  # the optimizer: 0.068 -> 0.085
    assert trend[0] < -0.01 and trend[64] > 0.01
    with pytest.raises(ValueError, match="sign_samples=-1"):
        sl.MinibatchNoise(32, sign_samples=-1)
