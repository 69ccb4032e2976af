"""Bad input gets a ValueError naming the parameter, the value and what is allowed."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

H = jnp.array([1.0, 2.0, 4.0])
PROB = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=jnp.array([0.5, 1.0, 2.0])))
X0 = jnp.ones(3)


@pytest.mark.parametrize("cls", [sl.SGD, sl.SignSGD, sl.RMSprop, sl.Adam])
@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf")])
def test_learning_rate(cls, lr):
    with pytest.raises(ValueError, match=r"lr=.*finite and > 0"):
        cls(lr=lr)


@pytest.mark.parametrize(
    "scale", [-1.0, 0.0, float("nan"), jnp.array([1.0, -1.0]), jnp.array([1.0, 0.0])]
)
def test_gaussian_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        sl.GaussianNoise(scale=scale)


def test_singular_and_nonsquare_matrix_scale():
    with pytest.raises(ValueError, match="positive definite"):
        sl.GaussianNoise(scale=jnp.array([[1.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        sl.GaussianNoise(scale=jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="scalar, a vector or a square matrix"):
        sl.GaussianNoise(scale=jnp.ones((2, 2, 2)))


@pytest.mark.parametrize("df", [0.0, -1.0, float("nan")])
def test_student_t_df(df):
    with pytest.raises(ValueError, match="df="):
        sl.StudentTNoise(df=df, scale=1.0)


def test_student_t_matrix_scale():
    with pytest.raises(ValueError, match="scalar or vector"):
        sl.StudentTNoise(df=3.0, scale=jnp.eye(2))


@pytest.mark.parametrize(
    "h,needle",
    [
        (jnp.array([1.0, -2.0]), "h="),
        (jnp.array([[1.0, 2.0], [0.0, 1.0]]), "not symmetric"),
        (jnp.array([[1.0, 2.0], [2.0, 1.0]]), "not positive definite"),
        (jnp.ones((2, 2, 2)), "h has shape"),
    ],
)
def test_quadratic_curvature(h, needle):
    with pytest.raises(ValueError, match=needle):
        sl.Quadratic(h=h, noise=sl.GaussianNoise(scale=1.0))


def test_noise_dimension_mismatch():
    with pytest.raises(ValueError, match="dimension"):
        sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=jnp.ones(2)))
    with pytest.raises(ValueError, match="minimum"):
        sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=1.0), minimum=jnp.zeros(2))
    with pytest.raises(ValueError, match="dim=3"):
        sl.Problem(loss=lambda x: jnp.sum(x**2), noise=sl.GaussianNoise(scale=jnp.ones(2)), dim=3)
    with pytest.raises(ValueError, match="loss="):
        sl.Problem(loss=3.0, noise=sl.GaussianNoise(scale=1.0))


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


def test_sde_and_solver_choices():
    with pytest.raises(ValueError, match="opt="):
        sl.sde_for(object(), PROB)
    with pytest.raises(ValueError, match="problem="):
        sl.sde_for(sl.SGD(lr=0.1), object())
    with pytest.raises(ValueError, match="form='x'"):
        sl.sde_for(sl.SGD(lr=0.1), PROB, form="x")
    with pytest.raises(ValueError, match="solver=Tsit5"):
        sl.simulate(sl.SGD(lr=0.1), PROB, X0, 10, 4, jax.random.key(0), solver=diffrax.Tsit5())
    with pytest.raises(ValueError, match="substeps=0"):
        sl.simulate(sl.SGD(lr=0.1), PROB, X0, 10, 4, jax.random.key(0), substeps=0)


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


def test_valid_configuration_passes():
    sl.Quadratic(
        h=jnp.array([[2.0, 0.5], [0.5, 1.0]]), noise=sl.StudentTNoise(df=0.5, scale=[1.0, 2.0])
    )
    sl.Adam(lr=1e-3, beta1=0.0, beta2=0.999, eps=0.0, weight_decay=0.0)
