"""`sde_for` and `sde_forms`: which SDE models which optimizer in which published form, and
bad choices."""

import jax.numpy as jnp
import optax
import pytest

import sdelens as sl

H = jnp.array([1.0, 2.0, 4.0])
S = jnp.array([0.5, 1.0, 2.0])
PROB = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S))
ADAM = sl.Adam(lr=1e-2, beta1=0.9, beta2=0.99)
ENTROPY = sl.EntropySGD(lr=0.1, gamma=1.0, inner_lr=0.01, inner_steps=5, temperature=1e-3)


@pytest.mark.parametrize(
    "opt,forms",
    [
        (sl.SGD(lr=0.1), ("default", "second_order", "moments")),
        (sl.SGD(lr=0.1, momentum=0.9), ("default", "moments")),
        (sl.SignSGD(lr=0.1), ("default", "moments")),
        (sl.RMSprop(lr=0.1), ("default", "malladi", "moments")),
        (sl.RMSprop(lr=0.1, weight_decay=0.5), ("default", "malladi", "moments")),
        (ADAM, ("default", "malladi", "moments")),
        (ENTROPY, ("default", "finite_chain", "moments")),
        (sl.SAM(lr=0.1, rho=0.05), ("default", "moments")),
        (sl.Optax(lambda lr: optax.adabelief(lr), lr=0.1), ("moments",)),
    ],
)
def test_sde_forms(opt, forms):
    assert sl.sde_forms(opt) == forms


@pytest.mark.parametrize(
    "opt,form,cls",
    [
        (sl.SGD(lr=0.1), "default", sl.SGDSDE),
        (sl.SignSGD(lr=0.1), "default", sl.SignSGDSDE),
        (sl.RMSprop(lr=0.1), "default", sl.RMSpropSDE),
        (sl.RMSprop(lr=0.1), "malladi", sl.RMSpropMalladiSDE),
        (ADAM, "default", sl.AdamSDE),
        (ADAM, "malladi", sl.AdamMalladiSDE),
        (ENTROPY, "default", sl.EntropySGDSDE),
        (ENTROPY, "finite_chain", sl.FiniteChainEntropySGDSDE),
    ],
)
def test_sde_for_picks_the_class_of_the_optimizer_and_form(opt, form, cls):
    sde = sl.sde_for(opt, PROB, form=form)
    assert type(sde) is cls and sde.form == form and cls.optimizer_type is type(opt)
    assert sde.optimizer is opt and sde.problem is PROB


def test_sde_and_problem_choices():
    with pytest.raises(ValueError, match="opt="):
        sl.sde_for(object(), PROB)
    with pytest.raises(ValueError, match="problem="):
        sl.sde_for(sl.SGD(lr=0.1), object())
    with pytest.raises(ValueError, match="form='x'"):
        sl.sde_for(sl.SGD(lr=0.1), PROB, form="x")


def test_unknown_form_and_infinite_variance():
    with pytest.raises(ValueError, match="form='ito'"):
        sl.sde_for(ADAM, PROB, form="ito")
    with pytest.raises(ValueError, match=r"form='malladi' is invalid for SGD: choose one of"):
        sl.sde_for(sl.SGD(lr=0.1), PROB, form="malladi")
    heavy = sl.Quadratic(h=H, noise=sl.StudentTNoise(df=1.5, scale=S))
    with pytest.raises(ValueError, match="SignSGD"):
        sl.sde_for(ADAM, heavy)
