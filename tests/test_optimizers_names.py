"""`optimizer_by_name`: the command line's names, the weight-decay rules of the "w" names, and
hyperparameters an optimizer does not have (ignored)."""

import pytest

import sdelens as sl

OPTIONS = dict(
    beta=0.9,
    beta1=0.8,
    beta2=0.95,
    eps=1e-6,
    weight_decay=0.25,
    gamma=1.0,
    inner_lr=0.01,
    inner_steps=4,
    temperature=1e-3,
)


@pytest.mark.parametrize(
    "name,cls,weight_decay",
    [
        ("sgd", sl.SGD, 0.0),
        ("signsgd", sl.SignSGD, 0.0),
        ("rmsprop", sl.RMSprop, 0.0),
        ("rmspropw", sl.RMSprop, 0.25),
        ("adam", sl.Adam, 0.0),
        ("adamw", sl.Adam, 0.25),
        ("entropysgd", sl.EntropySGD, 0.0),
    ],
)
def test_every_name_from_one_set_of_options(name, cls, weight_decay):
    opt = sl.optimizer_by_name(name, 0.05, **OPTIONS)
    assert type(opt) is cls and opt.lr == 0.05
    assert opt.name == name  # the name round-trips
    assert opt.weight_decay == weight_decay
    assert sl.OPTIMIZERS[name][0] is cls


def test_options_reach_the_fields_they_name():
    rms = sl.optimizer_by_name("rmspropw", 0.1, **OPTIONS)
    assert (rms.beta, rms.eps) == (0.9, 1e-6)
    adam = sl.optimizer_by_name("adam", 0.1, **OPTIONS)
    assert (adam.beta1, adam.beta2, adam.eps) == (0.8, 0.95, 1e-6)
    entropy = sl.optimizer_by_name("entropysgd", 0.1, **OPTIONS)
    assert (entropy.gamma, entropy.inner_steps, entropy.temperature) == (1.0, 4, 1e-3)
    # Defaults where an option is not given; unknown keys are ignored, not an error.
    plain = sl.optimizer_by_name("adam", 0.1, momentum=0.9, colour="red")
    assert (plain.beta1, plain.beta2, plain.weight_decay) == (0.9, 0.999, 0.0)
    sgd = sl.optimizer_by_name("sgd", 0.1, weight_decay=0.5)
    assert sgd.hyperparameters() == {"lr": 0.1, "momentum": 0.0, "nesterov": False}


def test_weight_decay_rules():
    for name in ("rmspropw", "adamw"):
        for bad in ({}, {"weight_decay": 0.0}):
            with pytest.raises(ValueError, match=rf"weight_decay=0.0 is invalid for {name}"):
                sl.optimizer_by_name(name, 0.1, **bad)
        with pytest.raises(ValueError, match=rf"use {name[:-1]} for no weight decay"):
            sl.optimizer_by_name(name, 0.1, weight_decay=-1.0)
    # The plain names mean no weight decay, whatever the options say.
    assert sl.optimizer_by_name("adam", 0.1, weight_decay=0.5).weight_decay == 0.0
    assert sl.optimizer_by_name("rmsprop", 0.1, weight_decay=0.5).name == "rmsprop"


def test_bad_name_and_bad_values():
    with pytest.raises(ValueError, match=r"optimizer='adamx' is invalid: choose one of 'sgd'"):
        sl.optimizer_by_name("adamx", 0.1)
    with pytest.raises(ValueError, match="lr="):
        sl.optimizer_by_name("sgd", -1.0)
    with pytest.raises(ValueError, match="beta1="):
        sl.optimizer_by_name("adam", 0.1, beta1=1.0)
