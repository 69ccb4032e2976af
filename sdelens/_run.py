"""`Run`: the saved output of `simulate` or `run_optimizer`, and reading and writing results
directories of runs."""

from __future__ import annotations

import collections
import dataclasses
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import _io
from ._ensemble import Histogram, RunStats

__all__ = ["Run", "Results", "save", "load", "load_results"]


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    """Saved states of an ensemble of paths, at steps `0, save_every, 2·save_every, …, n_steps`.

    Attributes:
        kind: `"optimizer"` (discrete, optax) or `"sde"` (diffrax).
        steps: `(S,)` optimizer step index of each save.
        ts: `(S,)` times `steps · lr`, the clock both share.
        loss: `(n_paths, S)` loss of each path at each save (None with `keep="stats"`).
        state: the state at every save as the optimizer's named tuple (`ParamState(x)`,
            `AdamState(x, m, v)`, ...; Entropy-SGD's model `RelaxationState(x, y)`), each field
            `(n_paths, S, d)`. None with `keep="stats"`. `run.x` is `run.state.x`.
        config: what produced the run (optimizer, problem, sizes, solver).
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
    state: NamedTuple | None
    config: dict[str, Any]
    diverged: bool
    first_bad_step: int | None
    n_diverged: int
    seconds: float = float("nan")
    grad_evals: int = 0
    stats: RunStats | None = None
    n_paths: int = 0

    def __post_init__(self):
        if self.n_paths == 0 and self.loss is not None:
            object.__setattr__(self, "n_paths", int(self.loss.shape[0]))

    @property
    def x(self) -> np.ndarray | None:
        """`(n_paths, S, d)` parameters of every path at every save (None with
        `keep="stats"`)."""
        return None if self.state is None else self.state.x

    def statistics(self) -> RunStats:
        """Per-save statistics over the finite paths, from `stats` or from the stored paths."""
        if self.stats is not None:
            return self.stats
        return RunStats.from_paths(self.x, self.loss)

    @property
    def mean_loss(self) -> np.ndarray:
        """`(S,)` loss averaged over the paths that stayed finite."""
        return self.statistics().loss_mean

    def metrics(self) -> dict:
        """JSON-ready numbers: the final mean loss (± SE), divergence, cost."""
        stats = self.statistics()
        return {
            "kind": self.kind,
            "n_paths": self.n_paths,
            "final_mean_loss": float(stats.loss_mean[-1]),
            "final_mean_loss_se": float(stats.loss_se[-1]),
            "diverged": self.diverged,
            "first_bad_step": self.first_bad_step,
            "n_diverged": self.n_diverged,
            "grad_evals": self.grad_evals,
            "seconds": self.seconds,
        }

    def save(self, path, *, force: bool = False, summary: dict | None = None) -> Path:
        """Write this run to directory `path` (see `sdelens.save`)."""
        return save(path, {"run": self}, summary=summary, force=force)


# -- results directories ----------------------------------------------------------------------

_SCALARS = ("kind", "diverged", "first_bad_step", "n_diverged", "seconds", "grad_evals", "n_paths")
_STATS = ("count", "loss_mean", "loss_m2", "x_mean", "x_m2", "hist_counts")
_STATS += ("block_edges", "block_count", "block_mean", "block_m2")  # absent in older results
# Version-1 directories stored the state as one flat array of these blocks.
_V1_BLOCKS = {1: ("x",), 2: ("x", "v"), 3: ("x", "m", "v")}


def _record(run: Run):
    arrays = {"steps": run.steps, "ts": run.ts}
    manifest = {"config": run.config, **{k: getattr(run, k) for k in _SCALARS}}
    if run.loss is not None:
        arrays["loss"] = run.loss
    if run.state is not None:
        manifest["state"] = {"type": type(run.state).__name__, "fields": list(run.state._fields)}
        arrays.update({f"state/{k}": v for k, v in zip(run.state._fields, run.state, strict=True)})
    if run.stats is not None:
        for field in _STATS:
            value = getattr(run.stats, field)
            if value is not None:
                arrays[f"stats/{field}"] = value
        if run.stats.hist is not None:
            hist = run.stats.hist
            manifest["hist"] = {"coords": list(hist.coords), "edges": list(hist.edges)}
    return arrays, manifest


def _state_from(arrays, manifest, version: int):
    if version >= 2:
        if "state" not in manifest:
            return None
        spec = manifest["state"]
        cls = collections.namedtuple(spec["type"], spec["fields"])
        return cls(*(arrays[f"state/{field}"] for field in spec["fields"]))
    if "x" not in arrays:
        return None
    x = arrays["x"]
    flat = arrays.get("state", x)
    blocks = _V1_BLOCKS.get(flat.shape[-1] // x.shape[-1], ("x",))
    cls = collections.namedtuple("State", blocks)
    return cls(*np.split(flat, len(blocks), axis=-1))


def _run_from(arrays, manifest, version: int) -> Run:
    scalars = {k: manifest[k] for k in _SCALARS}
    scalars["seconds"] = float("nan") if scalars["seconds"] is None else scalars["seconds"]
    stats = None
    if "stats/count" in arrays:
        hist = Histogram(**manifest["hist"]) if "hist" in manifest else None
        stats = RunStats(**{f: arrays.get(f"stats/{f}") for f in _STATS}, hist=hist)
    return Run(
        config=manifest["config"],
        steps=arrays["steps"],
        ts=arrays["ts"],
        loss=arrays.get("loss"),
        state=_state_from(arrays, manifest, version),
        stats=stats,
        **scalars,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Results:
    """A results directory read back: its `runs` (name → `Run`), its `summary` (config,
    versions, metrics, as written), and any extra `arrays` (e.g. a sweep's curves)."""

    path: Path
    runs: dict[str, Run]
    summary: dict
    arrays: dict[str, np.ndarray]

    def metrics(self) -> dict:
        """The metrics written with the results (`summary["metrics"]`, `{}` if none)."""
        return dict(self.summary.get("metrics", {}))


def save(
    path: str | os.PathLike,
    runs: dict[str, Run],
    *,
    summary: dict | None = None,
    figures: dict[str, Any] | None = None,
    arrays: dict[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write runs to a results directory, atomically (`summary.json`, `runs.npz`, one PNG per
    figure; format in `sdelens._io`). `runs` may be empty when only a summary, figures and
    extra `arrays` are worth keeping (e.g. a sweep). An existing `path` is replaced only with
    `force=True`, and only if it is an sdelens result (`sdelens._io.check_target`)."""
    if not isinstance(runs, dict) or not all(isinstance(r, Run) for r in runs.values()):
        raise ValueError(f"runs={type(runs).__name__} is invalid: a dict of name -> Run.")
    records = {name: _record(run) for name, run in runs.items()}
    return _io.write(path, records, summary=summary, figures=figures, arrays=arrays, force=force)


def load_results(path: str | os.PathLike) -> Results:
    """Everything in a results directory written by `save` / `Run.save` / the CLI."""
    summary, records, extra, version = _io.read(path)
    runs = {}
    for name, (arrays, manifest) in records.items():
        try:
            runs[name] = _run_from(arrays, manifest, version)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{Path(path) / 'summary.json'}: run {name!r} is incomplete or from another "
                f"version ({type(err).__name__}: {err}); it cannot be read."
            ) from None
    return Results(Path(path), runs, summary, extra)


def load(path: str | os.PathLike, name: str | None = None) -> Run:
    """The run `name` of a results directory (`name` may be omitted when it holds one run).
    For several runs, summaries and extra arrays at once use `sdelens.load_results`."""
    runs = load_results(path).runs
    if name is None:
        if len(runs) != 1:
            raise ValueError(
                f"path={str(path)!r} holds {len(runs)} runs ({', '.join(runs) or 'none'}): pass "
                "name= or use sl.load_results(path).runs."
            )
        return next(iter(runs.values()))
    if name not in runs:
        raise ValueError(f"name={name!r} is invalid: {str(path)!r} holds {', '.join(runs)}.")
    return runs[name]
