"""Property tests of every public constructor (hypothesis): any value outside a field's allowed
set is refused with a ValueError that names the field, and any value inside it is stored as
the number given."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import sdelens as sl

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Allowed sets: (low, high, low_closed, high_closed); None = unbounded.
POSITIVE = (0.0, None, False, False)
NON_NEGATIVE = (0.0, None, True, False)
UNIT = (0.0, 1.0, True, False)  # [0, 1): decay rates, momentum
UNIT_HALF_OPEN = (0.0, 1.0, False, True)  # (0, 1]: averaging weights, friction

FIELDS = {  # class: (required arguments, {field: allowed set})
    sl.SGD: ({"lr": 0.1}, {"lr": POSITIVE}),
    sl.SignSGD: ({"lr": 0.1}, {"lr": POSITIVE}),
    sl.RMSprop: (
        {"lr": 0.1},
        {"lr": POSITIVE, "beta": UNIT, "eps": NON_NEGATIVE, "weight_decay": NON_NEGATIVE},
    ),
    sl.Adam: (
        {"lr": 0.1},
        {
            "lr": POSITIVE,
            "beta1": UNIT,
            "beta2": UNIT,
            "eps": NON_NEGATIVE,
            "weight_decay": NON_NEGATIVE,
        },
    ),
    sl.EntropySGD: (
        {"lr": 0.1, "gamma": 1.0, "inner_lr": 0.01, "inner_steps": 5, "temperature": 0.01},
        {
            "lr": POSITIVE,
            "gamma": POSITIVE,
            "inner_lr": POSITIVE,
            "temperature": NON_NEGATIVE,
            "alpha": UNIT_HALF_OPEN,
            "scoping": NON_NEGATIVE,
            "momentum": UNIT,
            "friction": UNIT_HALF_OPEN,
        },
    ),
}
CASES = [(cls, name) for cls, (_, fields) in FIELDS.items() for name in fields]


def _allowed(value: float, allowed) -> bool:
    low, high, low_closed, high_closed = allowed
    if not math.isfinite(value):
        return False
    above = value >= low if low_closed else value > low
    below = high is None or (value <= high if high_closed else value < high)
    return above and below


NUMBERS = st.floats(allow_nan=True, allow_infinity=True, width=64) | st.sampled_from(
    [0.0, 1.0, -0.0, 1e-300, -1e-300, 1 - 1e-16, 1e300]
)
NOT_NUMBERS = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.lists(st.floats(0.01, 0.5), min_size=2, max_size=3),  # a vector where one number goes
    st.just(jnp.array([0.1, 0.2])),
    st.just(object()),
)


@pytest.mark.parametrize(("cls", "name"), CASES, ids=[f"{c.__name__}.{n}" for c, n in CASES])
@SETTINGS
@given(value=NUMBERS)
def test_a_hyperparameter_is_accepted_exactly_in_its_allowed_set(cls, name, value):
    required, fields = FIELDS[cls]
    kwargs = {**required, name: value}
    if _allowed(value, fields[name]):
        opt = cls(**kwargs)
        assert getattr(opt, name) == value and isinstance(getattr(opt, name), float)
    else:
        with pytest.raises(ValueError, match=rf"^{name}="):
            cls(**kwargs)


@pytest.mark.parametrize(("cls", "name"), CASES, ids=[f"{c.__name__}.{n}" for c, n in CASES])
@SETTINGS
@given(value=NOT_NUMBERS)
def test_what_is_not_one_number_is_refused_naming_the_field(cls, name, value):
    required, _ = FIELDS[cls]
    with pytest.raises(ValueError, match=rf"^{name}=.* is invalid"):
        cls(**{**required, name: value})


@SETTINGS
@given(steps=st.integers(-5, 50) | st.floats(0.5, 5.5) | st.none() | st.text(max_size=3))
def test_entropy_sgd_inner_steps_is_a_positive_int(steps):
    required = dict(FIELDS[sl.EntropySGD][0])
    required["inner_steps"] = steps
    if isinstance(steps, int) and steps >= 1:  # 2.0 is refused too: a count is an int
        assert sl.EntropySGD(**required).inner_steps == steps
    else:
        with pytest.raises(ValueError, match="^inner_steps="):
            sl.EntropySGD(**required)


SCALES = st.lists(NUMBERS, min_size=1, max_size=4)
F32_MAX = float(np.finfo(np.float32).max)


def _positive_f32(values) -> bool:
    """Finite and > 0 once stored in float32 (JAX's default): 1e300 overflows, 1e-300 is 0."""
    return all(math.isfinite(v) and abs(v) <= F32_MAX and np.float32(v) > 0 for v in values)


@SETTINGS
@given(scale=SCALES, df=NUMBERS)
def test_noise_models_take_positive_finite_scales_and_degrees_of_freedom(scale, df):
    scale_ok = _positive_f32(scale)
    if scale_ok:
        np.testing.assert_array_equal(sl.GaussianNoise(scale=scale).scale, np.float32(scale))
    else:
        with pytest.raises(ValueError, match="^scale="):
            sl.GaussianNoise(scale=scale)
    if scale_ok and _positive_f32([df]):
        noise = sl.StudentTNoise(df=df, scale=scale)
        assert noise.has_finite_variance == (np.float32(df) > 2)
    else:
        with pytest.raises(ValueError, match="^(scale|df)="):
            sl.StudentTNoise(df=df, scale=scale)


@SETTINGS
@given(value=NOT_NUMBERS.filter(lambda v: not isinstance(v, (list, type(jnp.zeros(0))))))
def test_noise_and_quadratic_fields_refuse_what_is_not_numbers(value):
    with pytest.raises(ValueError, match="^scale="):
        sl.GaussianNoise(scale=value)
    with pytest.raises(ValueError, match="^df="):
        sl.StudentTNoise(df=value, scale=1.0)
    with pytest.raises(ValueError, match="^h="):
        sl.Quadratic(h=value, noise=sl.GaussianNoise(scale=1.0))


@SETTINGS
@given(h=SCALES, minimum=st.lists(NUMBERS, min_size=1, max_size=4))
def test_a_quadratic_needs_positive_curvatures_and_a_finite_minimum(h, minimum):
    noise = sl.GaussianNoise(scale=1.0)
    h_ok = _positive_f32(h)
    min_ok = all(math.isfinite(v) and abs(v) <= F32_MAX for v in minimum)
    min_ok = min_ok and len(minimum) == len(h)
    if h_ok and min_ok:
        prob = sl.Quadratic(h=h, noise=noise, minimum=minimum)
        x = jnp.asarray(minimum, dtype=jnp.float32)
        assert float(prob.loss(x)) == 0.0
    else:
        with pytest.raises(ValueError, match="^(h|minimum)="):
            sl.Quadratic(h=h, noise=noise, minimum=minimum)
