"""`compare`: the weak error of one run against another, with Monte Carlo standard errors, on
runs built by hand (known numbers), labels, and mismatched runs."""

import dataclasses
import json

import numpy as np
import pytest

import sdelens as sl


def make_run(kind, loss, x=None, steps=(0, 10), lr=0.1):
    loss = np.asarray(loss, dtype=np.float32)
    if x is None:
        x = np.sqrt(2 * loss)[..., None]
    steps = np.asarray(steps)
    return sl.Run(
        kind=kind,
        steps=steps,
        ts=steps * lr,
        loss=loss,
        state=sl.ParamState(np.asarray(x, dtype=np.float32)),
        config={},
        diverged=bool(not np.all(np.isfinite(loss))),
        first_bad_step=None,
        n_diverged=0,
    )


A = make_run("optimizer", [[1.0, 2.0], [3.0, 6.0]])
B = make_run("sde", [[2.0, 2.0], [2.0, 4.0]])


def test_comparison_numbers():
    """Means (2, 4) and (2, 3); standard errors std(ddof=1)/√n = (1, 2) and (0, 1)."""
    c = sl.compare(A, B)
    np.testing.assert_allclose(c.mean_loss_a, [2.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(c.mean_loss_b, [2.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(c.se_a, [1.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(c.se_b, [0.0, 1.0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(c.diff, [0.0, -1.0], atol=1e-6)
    np.testing.assert_allclose(c.se_diff, [1.0, np.sqrt(5.0)], rtol=1e-6)
    assert c.max_abs_mean_loss_error == pytest.approx(1.0)
    assert c.max_rel_mean_loss_error == pytest.approx(0.25)
    assert c.max_z == pytest.approx(1 / np.sqrt(5.0))
    np.testing.assert_array_equal(c.ts, A.ts)
    # x = √(2 f): final means (√2 + √12)/2 and (2 + √8)/2 of the last save.
    want_mean = (2 + np.sqrt(8)) / 2 - (np.sqrt(4) + np.sqrt(12)) / 2
    np.testing.assert_allclose(c.final_mean_error, [want_mean], rtol=1e-5)
    want_var = np.var([2.0, np.sqrt(8)], ddof=1) - np.var([2.0, np.sqrt(12)], ddof=1)
    np.testing.assert_allclose(c.final_var_error, [want_var], rtol=1e-4)


def test_labels_key_the_metrics():
    c = sl.compare(A, B)
    assert c.labels == ("optimizer", "sde")
    m = c.metrics()
    assert m["final_mean_loss"] == {"optimizer": pytest.approx(4.0), "sde": pytest.approx(3.0)}
    assert m["final_mean_loss_se"] == {"optimizer": pytest.approx(2.0), "sde": pytest.approx(1.0)}
    assert m["diverged"] == {"optimizer": False, "sde": False}
    assert m["max_rel_mean_loss_error"] == pytest.approx(0.25)
    assert m["final_max_abs_mean_error"] == pytest.approx(abs(c.final_mean_error[0]))
    same = sl.compare(A, dataclasses.replace(B, kind="optimizer"))
    assert same.labels == ("a", "b") and set(same.metrics()["diverged"]) == {"a", "b"}
    named = sl.compare(A, B, labels=("base", "scaled"))
    assert named.metrics()["final_mean_loss"]["scaled"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="labels="):
        sl.compare(A, B, labels=("x", "x"))


def test_diverged_paths_are_left_out():
    bad = make_run("sde", [[2.0, 2.0], [2.0, 4.0], [np.nan, np.inf]])
    c = sl.compare(A, bad)
    assert c.diverged_b and not c.diverged_a
    np.testing.assert_allclose(c.mean_loss_b, [2.0, 3.0], rtol=1e-6)
    assert c.metrics()["diverged"]["sde"] is True


def test_mismatched_runs_are_refused():
    with pytest.raises(ValueError, match="different save grids"):
        sl.compare(A, make_run("sde", [[1.0, 1.0, 1.0]], steps=(0, 5, 10)))
    with pytest.raises(ValueError, match="different save grids"):
        sl.compare(A, make_run("sde", [[1.0, 1.0]], steps=(0, 20)))
    with pytest.raises(ValueError, match="different clocks"):
        sl.compare(A, make_run("sde", [[1.0, 1.0]], lr=0.2))
    with pytest.raises(ValueError, match="two sdelens Run objects"):
        sl.compare(A, A.loss)


def test_a_statistic_without_data_is_nan_never_zero(tmp_path):
    """Every path diverged: no mean, no standard error, no gap, no z; `null` in summary.json."""
    dead = make_run("sde", [[np.nan, np.inf], [np.inf, np.nan]])
    stats = dead.statistics()
    np.testing.assert_array_equal(stats.count, [0, 0])
    assert np.all(np.isnan(stats.loss_mean)) and np.all(np.isnan(stats.loss_se))
    assert np.all(np.isnan(stats.x_mean)) and np.all(np.isnan(stats.x_var))
    assert np.isnan(dead.metrics()["final_mean_loss"])
    c = sl.compare(A, dead)
    assert np.isnan(c.max_rel_mean_loss_error) and np.isnan(c.max_abs_mean_loss_error)
    assert np.isnan(c.max_z)
    m = c.metrics()
    assert np.isnan(m["final_mean_loss"]["sde"]) and m["final_mean_loss"]["optimizer"] == 4.0
    sl.save(tmp_path / "r", {"a": A, "b": dead}, summary={"metrics": m})
    written = json.loads((tmp_path / "r" / "summary.json").read_text())["metrics"]
    assert written["max_z"] is None and written["final_mean_loss"]["sde"] is None


def test_one_path_has_a_mean_but_no_standard_error():
    one_a, one_b = make_run("optimizer", [[1.0, 2.0]]), make_run("sde", [[1.0, 3.0]])
    c = sl.compare(one_a, one_b)
    np.testing.assert_allclose(c.mean_loss_b, [1.0, 3.0])
    assert np.all(np.isnan(c.se_a)) and np.isnan(c.max_z)
    assert c.max_rel_mean_loss_error == pytest.approx(0.5)
    # without noise: no gap is agreement (z = 0), a gap is infinitely significant
    same = make_run("sde", [[1.0, 2.0], [1.0, 2.0]])
    assert sl.compare(same, same).max_z == 0.0
    assert sl.compare(same, make_run("sde", [[1.0, 2.5], [1.0, 2.5]])).max_z == np.inf


def test_merging_an_empty_chunk_changes_nothing():
    """A chunk whose paths all diverged merges as no data, not as a mean of 0."""
    from sdelens._ensemble import RunStats

    live = RunStats.from_paths(
        np.array([[[1.0], [2.0]], [[3.0], [6.0]]]), np.array([[1, 2], [3, 6.0]])
    )
    dead = RunStats.from_paths(np.full((2, 2, 1), np.nan), np.full((2, 2), np.nan))
    for merged in (live.merge(dead), dead.merge(live)):
        np.testing.assert_allclose(merged.loss_mean, live.loss_mean)
        np.testing.assert_allclose(merged.loss_var, live.loss_var)
        np.testing.assert_allclose(merged.x_mean, live.x_mean)
    both_dead = dead.merge(dead)
    assert np.all(np.isnan(both_dead.loss_mean)) and np.all(both_dead.count == 0)


def _runs_with_gap(gap_in_se, *, at=None, n=400, saves=50, seed=0):
    """Two runs whose per-path losses are constant over time (perfectly correlated saves), b
    shifted so that `diff = gap_in_se · se_diff` exactly: at every save after the start, or at
    save `at` only (elsewhere b equals a's mean)."""
    rng = np.random.default_rng(seed)
    a_paths, b_paths = 5.0 + rng.normal(size=n), 5.0 + rng.normal(size=n)
    se_diff = np.sqrt(np.var(a_paths, ddof=1) / n + np.var(b_paths, ddof=1) / n)
    b_paths = b_paths - b_paths.mean() + a_paths.mean()
    shift = np.zeros(saves)
    shift[1:] = gap_in_se * se_diff if at is None else 0.0
    if at is not None:
        shift[at] = gap_in_se * se_diff
    steps = np.arange(saves) * 10
    a = make_run("optimizer", np.repeat(a_paths[:, None], saves, 1), steps=steps)
    b = make_run("sde", b_paths[:, None] + shift[None, :], steps=steps)
    return a, b, gap_in_se * se_diff / a_paths.mean()


def test_verdict_agrees_within_monte_carlo_error():
    a, b, _ = _runs_with_gap(0.5)
    c = sl.compare(a, b)
    assert c.verdict == "agrees within Monte Carlo error"
    assert c.max_z == pytest.approx(0.5, rel=1e-3)
    np.testing.assert_allclose(c.mean_gap, 0.5 * c.se_diff[1], rtol=1e-3)
    assert c.metrics()["verdict"] == c.verdict
    assert c.metrics()["mean_gap_ci95"] == pytest.approx(1.959964 * c.mean_gap_se)


def test_verdict_finds_a_gap_at_one_save_and_on_average():
    """7 SE at save 20 alone exceeds the Bonferroni bound of 49 saves (3.29); 2.5 SE at every
    save does not, but its time average lies outside the 95% interval."""
    a, b, rel = _runs_with_gap(7.0, at=20)
    c = sl.compare(a, b)
    t = float(a.ts[20])
    want = f"gap of {rel:+.1%} ± {1.959964 * c.se_diff[20] / c.mean_loss_a[20]:.1%}"
    assert c.verdict == f"{want} beyond Monte Carlo error at t = {t:.4g}"
    a, b, rel = _runs_with_gap(2.5)
    c = sl.compare(a, b)
    assert c.verdict.startswith(f"gap of {rel:+.1%} ± ") and c.verdict.endswith("on average")
    assert c.rel_mean_gap == pytest.approx(rel, rel=1e-3)
    a, b, _ = _runs_with_gap(-2.5)
    assert sl.compare(a, b).verdict.startswith("gap of -")


def test_verdict_without_data_says_so():
    dead = make_run("sde", [[np.nan, np.inf], [np.inf, np.nan]])
    assert sl.compare(A, dead).verdict == "no finite paths to compare"
    assert np.isnan(sl.compare(A, dead).mean_gap)
    one_a, one_b = make_run("optimizer", [[1.0, 2.0]]), make_run("sde", [[1.0, 3.0]])
    assert sl.compare(one_a, one_b).verdict.startswith("no standard error")
