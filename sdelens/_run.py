"""`Run`: the saved output of `simulate` or `run_optimizer`, and its files on disk."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ._ensemble import Histogram, RunStats

__all__ = ["Run", "save", "load", "package_versions"]

_ARRAYS = ("steps", "ts", "loss", "x", "state")
_STATS = ("count", "loss_mean", "loss_m2", "x_mean", "x_m2", "hist_counts")
_SCALARS = (
    "kind",
    "diverged",
    "first_bad_step",
    "n_diverged",
    "seconds",
    "grad_evals",
    "n_paths",
)


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    """Saved states of an ensemble of paths, at steps `0, save_every, 2·save_every, …, n_steps`.

    Attributes:
        kind: `"optimizer"` (discrete, optax) or `"sde"` (diffrax).
        steps: `(S,)` optimizer step index of each save.
        ts: `(S,)` times `steps · lr`, the clock both share.
        loss: `(n_paths, S)` loss of each path at each save (None with `keep="stats"`).
        x: `(n_paths, S, d)` parameters (None with `keep="stats"`).
        state: `(n_paths, S, n)` full SDE state when it holds more than `x` (else None).
        config: what produced the run (optimizer, problem, seed, sizes, solver).
        diverged: whether any path became non-finite.
        first_bad_step: the first saved step at which some path was non-finite (None if none).
            Divergence is seen at save resolution: it happened within the `save_every`
            steps before. Use `save_every=1` for the exact step.
        n_diverged: number of paths non-finite at the last save.
        seconds: wall-clock time of the call, compilation included.
        grad_evals: gradient (or drift) evaluations per path.
        stats: running statistics when only those were kept (`keep="stats"`); see
            `statistics()` for either kind of run.
        n_paths: number of paths.
    """

    kind: str
    steps: np.ndarray
    ts: np.ndarray
    loss: np.ndarray | None
    x: np.ndarray | None
    config: dict[str, Any]
    diverged: bool
    first_bad_step: int | None
    n_diverged: int
    state: np.ndarray | None = None
    seconds: float = float("nan")
    grad_evals: int = 0
    stats: RunStats | None = None
    n_paths: int = 0

    def __post_init__(self):
        if self.n_paths == 0 and self.loss is not None:
            object.__setattr__(self, "n_paths", int(self.loss.shape[0]))

    def statistics(self) -> RunStats:
        """Per-save statistics over the finite paths, from `stats` or from the stored paths."""
        if self.stats is not None:
            return self.stats
        return RunStats.from_paths(self.x, self.loss)

    @property
    def mean_loss(self) -> np.ndarray:
        """`(S,)` loss averaged over the paths that stayed finite."""
        return self.statistics().loss_mean

    def save(self, path: str | os.PathLike, *, force: bool = False, summary: dict | None = None):
        """Write this run to directory `path` (see `sdelens.save`)."""
        return save(path, {"run": self}, summary=summary, force=force)


def package_versions() -> dict[str, str]:
    """Versions of sdelens and the libraries its numbers depend on."""
    out = {}
    for name in ("sdelens", "jax", "jaxlib", "diffrax", "equinox", "optax", "lineax", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def save(
    path: str | os.PathLike,
    runs: dict[str, Run],
    *,
    summary: dict | None = None,
    figures: dict[str, Any] | None = None,
    arrays: dict[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write runs to a results directory, atomically.

    The directory holds `summary.json` (the `summary` given, plus `versions` and a manifest of
    each run's config and scalars), `runs.npz` (arrays named `"<run>/<field>"`, plus any extra
    `arrays` under `"extra/<name>"`) and one PNG per matplotlib figure in `figures`. `runs` may be
    empty when only a summary, figures and extra arrays are worth keeping (e.g. a sweep).
    Everything is written under a temporary name and renamed, so a crash leaves no half-written
    result. An existing `path` is replaced only with `force=True`.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists: pass force=True (CLI: --force) to overwrite it.")
    if not all(isinstance(r, Run) for r in runs.values()):
        raise ValueError("runs must be a dict of name -> Run.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        arrays_out, manifest = {}, {}
        for name, run in runs.items():
            for field in _ARRAYS:
                value = getattr(run, field)
                if value is not None:
                    arrays_out[f"{name}/{field}"] = np.asarray(value)
            if run.stats is not None:
                for field in _STATS:
                    value = getattr(run.stats, field)
                    if value is not None:
                        arrays_out[f"{name}/stats/{field}"] = np.asarray(value)
            manifest[name] = {"config": run.config, **{k: getattr(run, k) for k in _SCALARS}}
            if run.stats is not None and run.stats.hist is not None:
                hist = run.stats.hist
                manifest[name]["hist"] = {"coords": list(hist.coords), "edges": list(hist.edges)}
        for name, value in (arrays or {}).items():
            arrays_out[f"extra/{name}"] = np.asarray(value)
        np.savez_compressed(tmp / "runs.npz", **arrays_out)
        doc = dict(summary or {})
        doc.setdefault("versions", package_versions())
        doc["runs"] = manifest
        (tmp / "summary.json").write_text(json.dumps(_jsonable(doc), indent=2) + "\n")
        for name, fig in (figures or {}).items():
            fig.savefig(tmp / f"{name}.png", dpi=110, bbox_inches="tight")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load(path: str | os.PathLike) -> Run | dict[str, Run]:
    """Read a results directory written by `save` / `Run.save`.

    Returns the `Run` when the directory holds one run, else a dict name -> `Run` (empty for a
    directory that keeps only a summary, e.g. a sweep; its extra arrays are in `runs.npz`).
    """
    path = Path(path)
    summary_file, arrays_file = path / "summary.json", path / "runs.npz"
    if not summary_file.is_file() or not arrays_file.is_file():
        raise ValueError(f"path={str(path)!r} is not an sdelens results directory.")
    manifest = json.loads(summary_file.read_text())["runs"]
    runs = {}
    with np.load(arrays_file) as data:
        for name, meta in manifest.items():
            fields = {f: data[f"{name}/{f}"] if f"{name}/{f}" in data else None for f in _ARRAYS}
            scalars = {k: meta[k] for k in _SCALARS}
            scalars["seconds"] = float("nan") if scalars["seconds"] is None else scalars["seconds"]
            stats = None
            if f"{name}/stats/count" in data:
                parts = {f: data.get(f"{name}/stats/{f}") for f in _STATS}
                hist = Histogram(**meta["hist"]) if "hist" in meta else None
                stats = RunStats(**parts, hist=hist)
            runs[name] = Run(config=meta["config"], **fields, **scalars, stats=stats)
    return next(iter(runs.values())) if len(runs) == 1 else runs
