"""`sdelens.flatness` test landscapes (`_landscapes`): the two-well formula, its minima, and the
deprecated `landscape_1d` / `landscape_2d`."""

import jax.numpy as jnp
import numpy as np
import pytest

from sdelens import flatness


def test_landscape_is_the_two_well_formula():
    loss, narrow, wide = flatness.landscape(1)
    np.testing.assert_array_equal(narrow, [-1.0])
    np.testing.assert_array_equal(wide, [1.5])

    def formula(x):  # the docstring's f with the default parameters
        narrow_well = jnp.exp(-0.5 * ((x[0] + 1.0) / 0.05) ** 2)
        wide_well = 0.8 * jnp.exp(-0.5 * ((x[0] - 1.5) / 0.5) ** 2)
        return -(narrow_well + wide_well)

    for x in (-1.0, -0.97, 0.0, 1.2, 1.5, 3.0):
        np.testing.assert_allclose(loss(jnp.array([x])), formula(jnp.array([x])), rtol=1e-6)
    # the narrow well is deeper by the depth gap 0.2, plus the wide well's tail at the narrow
    # minimum, 2.5 = 5 wide widths away
    np.testing.assert_allclose(loss(wide) - loss(narrow), 0.2 + 0.8 * np.exp(-12.5), rtol=1e-6)
    # isotropic wells on the first axis in any dimension
    loss3, narrow3, wide3 = flatness.landscape(3, wide_depth=0.5, wide_width=1.0)
    np.testing.assert_array_equal(wide3, [1.5, 0.0, 0.0])
    np.testing.assert_allclose(
        loss3(wide3 + jnp.array([0.0, 0.3, -0.4])), -0.5 * np.exp(-0.5 * 0.25), rtol=1e-6
    )
    assert narrow3.shape == (3,)


def test_two_minima_and_the_deprecated_aliases_are_landscape():
    for dim in (1, 2):
        loss, narrow, wide = flatness.landscape(dim)
        np.testing.assert_array_equal(flatness.two_minima(dim)[1], narrow)
        assert flatness.two_minima(dim)[0](narrow) == loss(narrow)
    with pytest.warns(DeprecationWarning, match=r"landscape\(dim=1"):
        old, old_narrow, _ = flatness.landscape_1d(narrow=-0.5)
    np.testing.assert_array_equal(old_narrow, [-0.5])
    assert old(old_narrow) == flatness.landscape(1, narrow=-0.5)[0](old_narrow)
    with pytest.warns(DeprecationWarning, match=r"landscape\(dim=2"):
        _, _, old_wide = flatness.landscape_2d()
    np.testing.assert_array_equal(old_wide, [1.5, 0.0])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: flatness.landscape(narrow_width=0.0), "narrow_width"),
        (lambda: flatness.landscape(2, wide_depth=-1.0), "wide_depth"),
        (lambda: flatness.landscape(0), "dim=0"),
        (lambda: flatness.two_minima(1.5), "dim=1.5"),
    ],
)
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_deprecated_alias_still_validates():
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="narrow_width"):
        flatness.landscape_1d(narrow_width=0.0)
