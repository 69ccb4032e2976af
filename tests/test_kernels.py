"""`sdelens._kernels`: the jitted cores return `(states, loss)` with the optimizer's typed state;
`solve_paths` is Euler-Maruyama driven by each path's own Brownian path (both ensemble layouts,
identical draws in float64) and `optimize_paths` the optax update driven by the standard
normals of the same counter-based paths, both checked step by step against hand-written loops;
the optimizer's two layouts run the same numbers, and a coupled optimizer run is the SDE's
Euler scheme where that is exact."""

import logging

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdelens as sl
from sdelens._brownian import CounterBrownianPath, EnsembleBrownianPath
from sdelens._kernels import Coupling, optimize_paths, solve_paths

H = jnp.array([1.0, 2.0, 4.0])
S = jnp.array([0.5, 1.0, 2.0])
PROB = sl.Quadratic(h=H, noise=sl.GaussianNoise(scale=S))
LR = 0.05
X0S = jnp.stack([jnp.array([1.5, -1.0, 0.5]), jnp.zeros(3)])
KEYS = jax.random.split(jax.random.key(0), 2)


def hand_euler(sde, dws, x0, dt):
    """`x ← x + b(x) dt + G(x) dW` over the given increments `dW`: every state, `x0` included."""
    xs = [x0]
    for dw in dws:
        y = sl.ParamState(xs[-1])
        drift, kick = sde.drift(0.0, y, None).x, sde.diffusion(0.0, y, None).mv(dw).x
        xs.append(xs[-1] + drift * dt + kick)
    return np.stack([np.asarray(x) for x in xs])


def increments(path, ts, column=None):
    """`W(t_{k+1}) - W(t_k)` of a Brownian path on the grid `ts` (one column of an ensemble)."""
    dws = [path.evaluate(ts[k], ts[k + 1]) for k in range(ts.shape[0] - 1)]
    return dws if column is None else [dw[:, column] for dw in dws]


def test_solve_paths_is_euler_maruyama_path_by_path():
    """vmap layout: path `r` is driven by `CounterBrownianPath(key_r)` on the grid `t_k = k η`,
    saves at every `save_every`-th step, loss `f(x)` at each save; for SGD Milstein agrees."""
    sde = sl.sde_for(sl.SGD(lr=LR), PROB)
    states, loss = solve_paths(sde, diffrax.Euler(), False, X0S, KEYS, 6, 2, 1, False)
    assert type(states) is sl.ParamState and states.x.shape == (2, 4, 3) and loss.shape == (2, 4)
    ts = LR * jnp.arange(7, dtype=jnp.float32)
    for r in range(2):
        path = CounterBrownianPath((3,), KEYS[r], jnp.float32)
        want = hand_euler(sde, increments(path, ts), X0S[r], LR)[::2]
        np.testing.assert_allclose(states.x[r], want, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(loss[r], jax.vmap(PROB.loss)(jnp.asarray(want)), rtol=1e-5)
    # SGD's diffusion does not depend on the state, so Milstein's correction vanishes: the
    # Milstein solver (vmap layout, as for any solver with derivative terms) is Euler, path by
    # path.
    milstein, _ = solve_paths(sde, diffrax.ItoMilstein(), False, X0S, KEYS, 6, 2, 1, False)
    assert not np.allclose(states.x[0, -1], states.x[1, -1])  # the paths differ
    np.testing.assert_allclose(milstein.x, states.x, rtol=1e-6, atol=1e-7)


def test_solve_paths_ensemble_layout_and_float64():
    """The paths-minor layout integrates all paths as one state, path `r` driven by column `r`
    of `EnsembleBrownianPath` (same Euler step); in float64 it draws the same numbers as the
    vmap layout, so the two agree to rounding."""
    sde = sl.sde_for(sl.SignSGD(lr=LR), PROB)
    with jax.enable_x64(True):
        x0s = X0S.astype(jnp.float64)
        minor, loss_minor = solve_paths(sde, diffrax.Euler(), False, x0s, KEYS, 6, 2, 1, True)
        major, loss_major = solve_paths(sde, diffrax.Euler(), False, x0s, KEYS, 6, 2, 1, False)
        assert minor.x.dtype == jnp.float64
        ts = LR * jnp.arange(7, dtype=jnp.float64)
        ensemble = EnsembleBrownianPath((3,), KEYS, jnp.float64)
        for r in range(2):
            want = hand_euler(sde, increments(ensemble, ts, r), x0s[r], LR)[::2]
            np.testing.assert_allclose(minor.x[r], want, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(minor.x, major.x, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(loss_minor, loss_major, rtol=1e-12, atol=1e-14)


def test_substeps_refine_the_grid_not_the_saves():
    """`substeps=2`: Euler steps of `dt = η/2`, saves still at optimizer steps `0, 2, 4, 6`."""
    sgd = sl.sde_for(sl.SGD(lr=LR), PROB)
    fine, loss = solve_paths(sgd, diffrax.Euler(), False, X0S, KEYS, 6, 2, 2, False)
    assert fine.x.shape == (2, 4, 3) and loss.shape == (2, 4)
    ts = (LR / 2) * jnp.arange(13, dtype=jnp.float32)
    path = CounterBrownianPath((3,), KEYS[0], jnp.float32)
    want = hand_euler(sgd, increments(path, ts), X0S[0], LR / 2)[::4]
    np.testing.assert_allclose(fine.x[0], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("paths_minor", [True, False])
def test_optimize_paths_is_the_optax_update_driven_by_the_brownian_draws(paths_minor):
    """Adam by hand on `g = ∇f + s ξ`, `ξ` the standard normals of step `[t_k, t_{k+1}]`,
    `t_k = k η`, of run `r`'s counter-based path (the ensemble draws, `EnsembleBrownianPath`,
    when the runs sit on the minor axis; `CounterBrownianPath`'s otherwise): every field of the
    saved `AdamState` and the loss."""
    opt = sl.Adam(lr=LR, beta1=0.9, beta2=0.99)
    states, loss = optimize_paths(opt, PROB, X0S, KEYS, 6, 2, paths_minor=paths_minor)
    assert type(states) is sl.AdamState and loss.shape == (2, 4)
    b1, b2, eps = 0.9, 0.99, 1e-8
    ts = LR * jnp.arange(7, dtype=jnp.float32)
    ensemble = EnsembleBrownianPath((3,), KEYS, jnp.float32)
    for r in range(2):
        if paths_minor:
            dws = increments(ensemble, ts, r)
        else:
            dws = increments(CounterBrownianPath((3,), KEYS[r], jnp.float32), ts)
        x = np.asarray(X0S[r], dtype=float)
        m, v = np.zeros(3), np.zeros(3)
        saved = [(x, m, v)]
        for k in range(6):
            xi = np.asarray(dws[k], dtype=float) / np.sqrt(float(ts[k + 1] - ts[k]))
            g = np.asarray(PROB.grad(jnp.asarray(x, jnp.float32)), dtype=float) + S * xi
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
            x = x - LR * (m / (1 - b1 ** (k + 1))) / (np.sqrt(v / (1 - b2 ** (k + 1))) + eps)
            saved.append((x, m, v))
        saved = saved[::2]
        for i, field in enumerate(("x", "m", "v")):
            want = np.stack([s[i] for s in saved])
            np.testing.assert_allclose(getattr(states, field)[r], want, rtol=1e-5, atol=1e-5)
        want_loss = [float(PROB.loss(jnp.asarray(s[0], jnp.float32))) for s in saved]
        np.testing.assert_allclose(loss[r], want_loss, rtol=1e-5)


def test_optimize_paths_layouts_agree_given_the_same_draws():
    """Run on the minor axis or under `vmap`, the optimizer computes the same numbers from the
    same draws (here the coupled draws of a vmapped SDE, so both layouts use them)."""
    opt = sl.Adam(lr=LR, beta1=0.9, beta2=0.99)
    coupling = Coupling(sl.sde_for(opt, PROB), 2, False)
    minor, _ = optimize_paths(opt, PROB, X0S, KEYS, 6, 2, coupling, paths_minor=True)
    major, _ = optimize_paths(opt, PROB, X0S, KEYS, 6, 2, coupling, paths_minor=False)
    for field in minor._fields:
        np.testing.assert_allclose(getattr(minor, field), getattr(major, field), rtol=1e-6)


@pytest.mark.parametrize("paths_minor", [True, False])
def test_coupled_sgd_is_the_euler_scheme_of_its_sde(paths_minor):
    """SGD with Gaussian noise coupled to its SDE at one substep: Euler's step
    `x - η∇f + √η S ΔW` is the optimizer's `x - η(∇f + S ξ)` with `ξ = -ΔW/√η`, so the two runs
    agree path by path to rounding; at two substeps they differ (the SDE's drift is evaluated
    twice per step) but stay close."""
    opt = sl.SGD(lr=LR)
    sde = sl.sde_for(opt, PROB)
    for substeps, tolerance in ((1, 1e-6), (2, 0.05)):
        run, _ = solve_paths(sde, diffrax.Euler(), False, X0S, KEYS, 6, 2, substeps, paths_minor)
        coupling = Coupling(sde, substeps, paths_minor)
        ref, _ = optimize_paths(opt, PROB, X0S, KEYS, 6, 2, coupling)
        gap = float(np.max(np.abs(run.x - ref.x)))
        assert gap < tolerance, (substeps, gap)
        assert substeps == 1 or gap > 1e-4  # not the same scheme: it does measure something


def test_optimize_paths_saves_are_a_subsequence():
    """The same keys saved every step or every third step: the same iterates at steps 0, 3, 6."""
    opt = sl.SGD(lr=LR)
    every, _ = optimize_paths(opt, PROB, X0S, KEYS, 6, 1)
    third, loss = optimize_paths(opt, PROB, X0S, KEYS, 6, 3)
    assert type(third) is sl.ParamState and third.x.shape == (2, 3, 3)
    np.testing.assert_array_equal(third.x, every.x[:, ::3])
    np.testing.assert_allclose(loss, jax.vmap(jax.vmap(PROB.loss))(third.x), rtol=1e-6)


def _core_compilations(caplog, fn) -> int:
    """How many times `fn` compiles one of the two cores (JAX's compile log)."""
    caplog.clear()
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        fn()
    return sum(
        message.startswith(("Compiling jit(_solve_paths)", "Compiling jit(_optimize_paths)"))
        for message in (record.getMessage() for record in caplog.records)
    )


def test_hyperparameters_are_traced_so_a_sweep_compiles_each_core_once(caplog):
    """Learning rates, β's and noise scales are arguments of the compiled cores, not constants:
    a sweep over them compiles `simulate`'s and `run_optimizer`'s core once each; an SGD's
    momentum 0 or not (another state) compiles again. The runs equal those of a fresh
    compilation with the values as constants would (same numbers, float32)."""
    x0 = jnp.array([1.5, -1.0, 0.5])
    kw = {"n_steps": 20, "key": jax.random.key(3), "save_every": 10}

    def sweep(values, make):
        return [
            (
                sl.simulate(*make(v), x0, n_paths=8, **kw),
                sl.run_optimizer(*make(v), x0, n_runs=8, **kw),
            )
            for v in values
        ]

    jax.clear_caches()
    lrs = (0.011, 0.021, 0.031)
    runs = []
    assert (
        _core_compilations(
            caplog, lambda: runs.extend(sweep(lrs, lambda lr: (sl.Adam(lr, beta2=0.99), PROB)))
        )
        == 2
    )
    assert (
        _core_compilations(
            caplog,
            lambda: sweep(
                (0.5, 1.5),
                lambda s: (sl.Adam(0.011, beta1=0.8), sl.Quadratic(h=H, noise=sl.GaussianNoise(s))),
            ),
        )
        == 2
    )
    assert (
        _core_compilations(
            caplog, lambda: sweep((0.0, 0.9), lambda m: (sl.SGD(0.01, momentum=m), PROB))
        )
        == 4
    )
    # the traced runs are the runs: the last learning rate alone, compiled afresh
    jax.clear_caches()
    alone = sweep(lrs[-1:], lambda lr: (sl.Adam(lr, beta2=0.99), PROB))[0]
    for swept, fresh in zip(runs[-1], alone, strict=True):
        np.testing.assert_array_equal(swept.x, fresh.x)
        assert float(jnp.abs(swept.x[:, -1] - x0).min()) > 0  # the runs moved


def test_the_steps_between_saves_are_traced_so_a_weak_order_sweep_compiles_each_core_once(caplog):
    """`weak_order` at three learning rates over the same horizon runs 40, 20 and 10 steps with
    the same number of saves: one compilation of each core (was one per learning rate; coupled,
    the optimizer's core once more); another number of saves changes the shapes returned and
    compiles again. Each run takes the steps it is asked for: SGD's mean on a quadratic is
    `(1 - ηh)^k x₀` exactly, and the weak errors fall with the step."""
    x0 = jnp.array([1.5, -1.0, 0.5])
    kw = {"lrs": [0.025, 0.05, 0.1], "horizon": 1.0, "x0": x0, "n_paths": 200, "n_saves": 5}
    kw |= {"substeps": 2, "key": jax.random.key(1)}
    jax.clear_caches()
    runs = []

    def sweep(**extra):
        runs.append(sl.weak_order(sl.SGD(0.1), PROB, **(kw | extra)))

    assert _core_compilations(caplog, sweep) == 2
    assert _core_compilations(caplog, lambda: sweep(coupled=True)) == 1  # the SDE's is the same
    # coupled, the errors stand far above their SE: first order (0.77, bent at ηh = 0.4)
    assert np.all(runs[1].error > 5 * runs[1].se) and 0.6 < runs[1].slope < 1.4, runs[1].metrics()
    assert _core_compilations(caplog, lambda: sweep(n_saves=10)) == 2
    for lr, steps in [(0.05, 20), (0.1, 10), (0.025, 40)]:
        run = []
        compiled = _core_compilations(
            caplog,
            lambda lr=lr, steps=steps, run=run: run.append(
                sl.run_optimizer(sl.SGD(lr), PROB, x0, steps, 200, jax.random.key(2), steps // 5)
            ),
        )
        assert compiled == 0  # the program of the sweeps above
        x = np.asarray(run[0].x[:, -1])
        exact = (1 - lr * np.asarray(H)) ** steps * np.asarray(x0)
        se = x.std(axis=0) / np.sqrt(x.shape[0])
        assert np.all(np.abs(x.mean(axis=0) - exact) < 4 * se), (steps, x.mean(axis=0), exact)
