"""`verify_scaling`: the right batch-size scaling rule keeps training the same per sample
processed (docs/math.md §6), a wrong one is caught, and bad input fails before anything runs."""

import jax
import jax.numpy as jnp
import pytest

import sdelens as sl

H = jnp.array([1.0, 2.0, 4.0])
S = jnp.array([0.5, 1.0, 2.0])
X0 = jnp.array([1.5, -1.0, 0.5])
PROB = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S))
ADAM = sl.Adam(lr=1e-2, beta1=0.9, beta2=0.99)
ADAMW = sl.Adam(lr=1e-2, beta1=0.9, beta2=0.99, weight_decay=1.0)
RMSPROPW = sl.RMSprop(lr=1e-2, beta=0.99, weight_decay=0.5)
START = 0.2 * X0  # noise-dominated: scaling rules are statements about that regime
KEY = jax.random.key(0)


@pytest.mark.parametrize(
    "opt,rule",
    [
        (sl.SGD(lr=1e-2), "linear"),
        (sl.SignSGD(lr=1e-2), "sqrt"),
        (ADAM, "malladi"),
        (ADAMW, "compagnoni"),
        (RMSPROPW, "compagnoni"),
    ],
)
def test_scaling_rule_keeps_training_the_same(opt, rule):
    chk = sl.verify_scaling(
        opt, PROB, START, 4.0, rule, n_steps=4000, n_paths=1000, key=KEY, n_saves=500
    )
    assert chk.holds, chk.metrics()
    assert chk.scaled.lr == pytest.approx(opt.lr * (4.0 if rule == "linear" else 2.0))


@pytest.mark.parametrize("opt,rule", [(sl.SignSGD(lr=1e-2), "linear"), (ADAMW, "malladi")])
def test_wrong_scaling_rule_fails(opt, rule):
    chk = sl.verify_scaling(
        opt, PROB, START, 4.0, rule, n_steps=4000, n_paths=1000, key=KEY, n_saves=500
    )
    assert not chk.holds
    assert chk.stationary_rel_diff > 0.2


def test_bad_input_fails_before_running():
    kwargs = dict(n_steps=4000, n_paths=10, n_saves=500)
    with pytest.raises(ValueError, match="key=None"):
        sl.verify_scaling(ADAM, PROB, START, 4.0, **kwargs)
    with pytest.warns(DeprecationWarning, match="seed= is deprecated"):
        with pytest.raises(ValueError, match="seed= and key= were both given"):
            sl.verify_scaling(ADAM, PROB, START, 4.0, key=KEY, seed=0, **kwargs)
    with pytest.raises(ValueError, match=r"n_steps/kappa = 1333.33 must be a whole multiple"):
        sl.verify_scaling(ADAM, PROB, START, 3.0, key=KEY, **kwargs)
    with pytest.raises(ValueError, match="rule='cubic'"):
        sl.verify_scaling(ADAM, PROB, START, 4.0, "cubic", key=KEY, **kwargs)
