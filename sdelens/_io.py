"""The results directory format: `summary.json` + `runs.npz` + PNG figures, versioned, written
atomically.

This module knows files, not runs: a results directory holds named *records*, each a set of
arrays and a JSON manifest (`sdelens.Run` writes and reads its own record).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORMAT", "VERSION", "write", "read", "jsonable", "package_versions"]

FORMAT = "sdelens-results"
# 2: typed states (one array per named field). 1 (no "format" entry): a flat state array.
VERSION = 2

Record = tuple[dict[str, np.ndarray], dict[str, Any]]


def package_versions() -> dict[str, str]:
    """Versions of sdelens and the libraries its numbers depend on."""
    out = {}
    for name in ("sdelens", "jax", "jaxlib", "diffrax", "equinox", "optax", "lineax", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def jsonable(obj):
    """`obj` with numpy values as Python values and non-finite floats as null / "inf"."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def write(
    path: str | os.PathLike,
    records: dict[str, Record],
    *,
    summary: dict | None = None,
    figures: dict[str, Any] | None = None,
    arrays: dict[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write a results directory, atomically.

    `summary.json` holds the `summary` given plus `format`, `versions` and `runs` (each record's
    manifest); `runs.npz` the arrays `"<record>/<name>"` and `"extra/<name>"`; one PNG per
    figure (anything with `savefig`). Everything is written under a temporary name and renamed,
    so a crash leaves no half-written result. An existing `path` is replaced only with
    `force=True`.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists: pass force=True (CLI: --force) to overwrite it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        arrays_out, manifest = {}, {}
        for name, (record_arrays, record_manifest) in records.items():
            for key, value in record_arrays.items():
                arrays_out[f"{name}/{key}"] = np.asarray(value)
            manifest[name] = record_manifest
        for name, value in (arrays or {}).items():
            arrays_out[f"extra/{name}"] = np.asarray(value)
        np.savez_compressed(tmp / "runs.npz", **arrays_out)
        doc = dict(summary or {})
        doc["format"] = {"name": FORMAT, "version": VERSION}
        doc.setdefault("versions", package_versions())
        doc["runs"] = manifest
        (tmp / "summary.json").write_text(json.dumps(jsonable(doc), indent=2) + "\n")
        for name, fig in (figures or {}).items():
            fig.savefig(tmp / f"{name}.png", dpi=110, bbox_inches="tight")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read(path: str | os.PathLike) -> tuple[dict, dict[str, Record], dict[str, np.ndarray], int]:
    """`(summary, records, extra arrays, format version)` of a results directory."""
    path = Path(path)
    summary_file, arrays_file = path / "summary.json", path / "runs.npz"
    if not summary_file.is_file() or not arrays_file.is_file():
        raise ValueError(f"path={str(path)!r} is not an sdelens results directory.")
    summary = json.loads(summary_file.read_text())
    fmt = summary.get("format", {"name": FORMAT, "version": 1})
    if fmt.get("name") != FORMAT or int(fmt.get("version", 0)) > VERSION:
        raise ValueError(
            f"path={str(path)!r} holds results of format {fmt}: this sdelens reads "
            f"{FORMAT!r} up to version {VERSION}."
        )
    with np.load(arrays_file) as data:
        stored = {key: data[key] for key in data.files}
    records = {}
    for name, manifest in summary.get("runs", {}).items():
        prefix = f"{name}/"
        arrays = {k[len(prefix) :]: v for k, v in stored.items() if k.startswith(prefix)}
        records[name] = (arrays, manifest)
    extra = {k[len("extra/") :]: v for k, v in stored.items() if k.startswith("extra/")}
    return summary, records, extra, int(fmt["version"])
