"""The USAM and SAM SDEs: drift and diffusion against the step they model, the SDE against the
optimizer on a quadratic and on a non-quadratic loss, the linearised stationary law, and
refusals (docs/math.md §11.3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl

H = jnp.array([1.0, 2.0, 4.0])
S = jnp.array([0.5, 1.0, 2.0])
QUAD = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S))
X0 = jnp.array([1.5, -1.0, 0.5])


def log_cosh(x):
    return jnp.sum(jnp.log(jnp.cosh(x))) + 0.1 * x[0] * x[1]


NONQUAD = sl.Problem(log_cosh, sl.GaussianNoise(scale=jnp.array([0.5, 0.5, 0.5])))


def test_sde_for_picks_the_variant():
    usam, sam = sl.SAM(lr=0.1, rho=0.1, normalize=False), sl.SAM(lr=0.1, rho=0.1)
    assert type(sl.sde_for(usam, QUAD)) is sl.USAMSDE
    assert type(sl.sde_for(sam, QUAD)) is sl.SAMSDE
    assert sl.sde_forms(sam)[0] == "default"
    with pytest.raises(ValueError, match="models USAM"):
        sl.USAMSDE(sam, QUAD)


def test_usam_drift_and_diffusion_on_a_quadratic():
    """`b = -(I + ρH) H x` and `G = √η (I + ρH) S`: exactly one USAM step's mean and noise."""
    opt = sl.SAM(lr=0.1, rho=0.3, normalize=False)
    sde = sl.sde_for(opt, QUAD)
    x = jnp.array([0.3, -0.4, 0.2])
    lift = 1.0 + 0.3 * np.asarray(H)
    np.testing.assert_allclose(sde.drift(0.0, sde.rest_state(x), None).x, -lift * H * x, rtol=1e-6)
    g = sde.diffusion(0.0, sde.rest_state(x), None).as_matrix()
    np.testing.assert_allclose(g, np.sqrt(0.1) * np.diag(lift * np.asarray(S)), rtol=1e-6)


def test_sam_drift_and_diffusion_match_one_step():
    """On a quadratic with additive noise a SAM step is exactly `-η (Hx + Z + ρ H u)`: its mean
    and covariance over many draws match `η b` and `η G Gᵀ` (Monte Carlo over 200k steps; the
    SDE's own averages here over 4096 fixed draws, whose error in the off-diagonal `ρ` terms
    is ~`η ρ² ‖H‖² / √K` ≈ 3e-4, measured 3.5e-4; with the default 128 draws ~0.0016)."""
    opt = sl.SAM(lr=0.1, rho=0.3)
    sde = sl.SAMSDE(opt, QUAD, samples=4096)
    x = jnp.array([0.3, -0.4, 0.2])
    tx = opt.to_optax()
    keys = jax.random.split(jax.random.key(1), 200_000)

    def step(k):
        g = QUAD.stochastic_grad(x, k)
        return tx.update(g, tx.init(x), x, step_grad_fn=lambda y: QUAD.stochastic_grad(y, k))[0]

    steps = np.asarray(jax.vmap(step)(keys), dtype=float)
    b = np.asarray(sde.drift(0.0, sde.rest_state(x), None).x)
    g = np.asarray(sde.diffusion(0.0, sde.rest_state(x), None).as_matrix())
    se = steps.std(axis=0) / np.sqrt(len(steps))
    # the fixed draws' error in E[u] (4096 draws): |ρ H ΔE u| η ≲ 0.3·4·0.01·0.1
    np.testing.assert_array_less(np.abs(steps.mean(axis=0) - 0.1 * b), 4 * se + 1.5e-3)
    np.testing.assert_allclose(np.cov(steps, rowvar=False), 0.1 * g @ g.T, rtol=0.03, atol=6e-4)
    # not vacuous: SGD's covariance η Σ misses the ρ terms by more than that
    assert np.max(np.abs(np.cov(steps, rowvar=False) - 0.1 * np.diag(S**2))) > 5e-3


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize(("prob", "rho"), [(QUAD, 0.2), (NONQUAD, 0.4)], ids=["quad", "logcosh"])
def test_sde_tracks_the_optimizer(normalize, prob, rho):
    """Mean loss of the SDE (Euler, 4 substeps) against the optimizer on `[0, 1]`: within
    4 standard errors plus an `O(η)` allowance of `η |E f|` (measured: the largest gap is
    0.4-0.76 of that bound; SGD's SDE, which lacks the `ρ` terms, exceeds it 1.6-3x)."""
    lr = 0.05
    opt = sl.SAM(lr=lr, rho=rho, normalize=normalize)
    a = sl.run_optimizer(opt, prob, X0, 20, 3000, jax.random.key(1), 2)
    b = sl.simulate(opt, prob, X0, 20, 3000, jax.random.key(2), 2, substeps=4)
    c = sl.compare(a, b)
    allowed = 4 * c.se_diff + lr * np.abs(c.mean_loss_a)
    assert np.all(np.abs(c.diff) <= allowed), (c.diff, c.se_diff, c.mean_loss_a)
    # not vacuous: SGD's SDE misses USAM/SAM's (I + ρH) contraction by far more
    sgd = sl.simulate(sl.SGD(lr=lr), prob, X0, 20, 3000, jax.random.key(2), 2, substeps=4)
    assert np.max(np.abs(sl.compare(a, sgd).diff) - allowed) > 0


@pytest.mark.parametrize("normalize", [False, True])
def test_linearised_stationary(normalize):
    """The linearised law exists for both SDEs; at a minimum SAM's `E[u]` vanishes exactly (the
    draws come in antithetic pairs), so the rest point is the minimiser."""
    opt = sl.SAM(lr=0.05, rho=0.2, normalize=normalize)
    lin = sl.linearised_stationary(opt, QUAD)
    np.testing.assert_allclose(lin.mean, 0.0, atol=1e-6)
    assert np.all(np.linalg.eigvalsh(lin.cov) > 0)
    sgd = sl.stationary(sl.SGD(lr=0.05), QUAD).expected_loss
    # SAM/USAM contract faster, but their noise is lifted by (I + ρH) too: measured 0.111 (USAM)
    if not normalize:
        np.testing.assert_allclose(lin.expected_loss, 0.11125, rtol=1e-3)
    assert lin.expected_loss > 0.5 * sgd


def test_refusals():
    opt = sl.SAM(lr=0.1, rho=0.1)
    heavy = QUAD.with_noise(sl.StudentTNoise(df=1.5, scale=S))
    with pytest.raises(ValueError, match="infinite variance"):
        sl.sde_for(opt, heavy)
    with pytest.raises(ValueError, match="samples="):
        sl.SAMSDE(opt, QUAD, samples=3)
