"""`AbstractOptimizer`: what every optimizer declares (weight decay, decays, scaling rules),
`hyperparameters`, `replace` (validating, unknown names rejected by name) and `with_lr` (every
`ρ = (1-β)/η` kept fixed)."""

import jax.numpy as jnp
import pytest

import sdelens as sl

ENTROPY = sl.EntropySGD(lr=0.1, gamma=1.0, inner_lr=0.01, inner_steps=5, temperature=1e-3)


@pytest.mark.parametrize(
    "opt,weight_decay,decays,rules,default",
    [
        (sl.SGD(lr=0.1), 0.0, (), ("linear",), "linear"),
        (sl.SignSGD(lr=0.1), 0.0, (), ("sqrt",), "sqrt"),
        (sl.RMSprop(lr=0.1), 0.0, ("beta",), ("malladi", "compagnoni"), "malladi"),
        (
            sl.RMSprop(lr=0.1, weight_decay=0.5),
            0.5,
            ("beta",),
            ("malladi", "compagnoni"),
            "compagnoni",
        ),
        (sl.Adam(lr=0.1), 0.0, ("beta1", "beta2"), ("malladi", "compagnoni"), "malladi"),
        (
            sl.Adam(lr=0.1, weight_decay=1.0),
            1.0,
            ("beta1", "beta2"),
            ("malladi", "compagnoni"),
            "compagnoni",
        ),
    ],
)
def test_declared_knowledge(opt, weight_decay, decays, rules, default):
    assert opt.weight_decay == weight_decay
    assert opt.decay_names == decays
    assert opt.scaling_rules == rules
    assert opt.default_scaling_rule() == default
    assert opt.grads_per_step == 1


def test_entropy_sgd_declares_no_rule_and_no_decay():
    assert ENTROPY.weight_decay == 0.0 and ENTROPY.decay_names == () and ENTROPY.scaling_rules == ()
    with pytest.raises(ValueError, match="no batch-size scaling rule"):
        ENTROPY.default_scaling_rule()


def test_names_and_hyperparameters():
    assert [o.name for o in (sl.SGD(0.1), sl.SignSGD(0.1))] == ["sgd", "signsgd"]
    assert (
        sl.RMSprop(0.1).name == "rmsprop" and sl.RMSprop(0.1, weight_decay=0.1).name == "rmspropw"
    )
    assert sl.Adam(0.1).name == "adam" and sl.Adam(0.1, weight_decay=0.1).name == "adamw"
    assert sl.SGD(lr=jnp.asarray(0.1)).hyperparameters() == {
        "lr": pytest.approx(0.1),
        "momentum": 0.0,
        "nesterov": False,
    }
    hp = sl.Adam(lr=0.1, beta1=0.8).hyperparameters()
    assert hp == {
        "lr": pytest.approx(0.1),
        "beta1": pytest.approx(0.8),
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.0,
    }
    assert all(type(v) is float for v in hp.values())
    assert ENTROPY.hyperparameters()["inner_steps"] == 5  # ints and bools stay what they are
    assert ENTROPY.hyperparameters()["nesterov"] is False


def test_replace_rebuilds_and_validates():
    adam = sl.Adam(lr=0.1, beta1=0.9, beta2=0.99, weight_decay=0.5)
    other = adam.replace(beta1=0.5, lr=0.2)
    assert isinstance(other, sl.Adam)
    assert (other.lr, other.beta1, other.beta2, other.weight_decay) == (0.2, 0.5, 0.99, 0.5)
    assert adam.beta1 == 0.9  # the original is untouched
    with pytest.raises(ValueError, match="beta1=1.0"):
        adam.replace(beta1=1.0)
    with pytest.raises(ValueError, match="lr=-0.1"):
        sl.SGD(lr=0.1).replace(lr=-0.1)


def test_replace_rejects_unknown_names_naming_them():
    with pytest.raises(
        ValueError, match=r"momentum is not a hyperparameter of Adam: choose from lr"
    ):
        sl.Adam(lr=0.1).replace(momentum=0.9)
    with pytest.raises(ValueError, match=r"gamma, momentum is not a hyperparameter of RMSprop"):
        sl.RMSprop(lr=0.1).replace(momentum=0.9, gamma=1.0)
    # Optimizers without decoupled weight decay have none to replace.
    with pytest.raises(ValueError, match="weight_decay is not a hyperparameter of SGD"):
        sl.SGD(lr=0.1).replace(weight_decay=0.1)


def test_with_lr_keeps_rho_fixed():
    adam = sl.Adam(lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-6, weight_decay=0.3)
    small = adam.with_lr(1e-3)
    # ρ₁ = 0.1/0.01 = 10, ρ₂ = 0.01/0.01 = 1: β = 1 - ρ η at the new η.
    assert small.lr == 1e-3
    assert small.beta1 == pytest.approx(0.99, rel=1e-12)
    assert small.beta2 == pytest.approx(0.999, rel=1e-12)
    assert (1 - small.beta1) / small.lr == pytest.approx((1 - adam.beta1) / adam.lr, rel=1e-9)
    assert (small.eps, small.weight_decay) == (1e-6, 0.3)
    rms = sl.RMSprop(lr=1e-2, beta=0.99).with_lr(4e-2)
    assert rms.beta == pytest.approx(0.96, rel=1e-12)
    assert sl.with_lr(adam, 1e-3).beta1 == small.beta1
    assert sl.SGD(lr=0.1).with_lr(0.05).lr == 0.05
    # Too large a step leaves no valid β at that ρ: 1 - 10 · 0.2 < 0.
    with pytest.raises(ValueError, match="beta1 at lr=0.2"):
        adam.with_lr(0.2)
    with pytest.raises(ValueError, match="lr="):
        adam.with_lr(0.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda bad: sl.SGD(lr=bad),
        lambda bad: sl.SignSGD(lr=bad),
        lambda bad: sl.RMSprop(lr=0.1, beta=bad),
        lambda bad: sl.Adam(lr=0.1, beta1=bad),
        lambda bad: sl.Adam(lr=0.1, weight_decay=bad),
        lambda bad: sl.EntropySGD(0.1, bad, 0.1, 5, 0.01),
    ],
)
@pytest.mark.parametrize("bad", ["0.01", None, jnp.ones(2)])
def test_hyperparameters_are_one_number_each(make, bad):
    """A string, None or a vector is a ValueError naming the hyperparameter, not a TypeError
    from deep inside (or, for "0.01", silently accepted)."""
    with pytest.raises(ValueError, match=r"(lr|beta1?|weight_decay|gamma)=.* is invalid"):
        make(bad)
