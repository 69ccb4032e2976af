"""The results directory format: `summary.json` + `runs.npz` + PNG figures, versioned, written
atomically.

This module knows files, not runs: a results directory holds named *records*, each a set of
arrays and a JSON manifest (`sdelens.Run` writes and reads its own record).
"""

from __future__ import annotations

import ctypes
import errno
import glob
import json
import os
import shutil
import sys
import tempfile
import zipfile
import zlib
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORMAT", "VERSION", "check_target", "write", "read", "jsonable", "package_versions"]

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


# What `write` puts in a results directory; `--force` replaces nothing that holds anything else.
_OWN_FILES = ("summary.json", "runs.npz")
_OWN_SUFFIX = ".png"
# Temporaries beside the target: `.<name>.sdelens-<pid>-<random>`; a dead writer's are removed.
_TMP_TAG = ".sdelens-"


def _foreign(path: Path) -> list[str]:
    """What in `path` a results directory would not hold (empty for an sdelens result)."""
    return sorted(
        p.name
        for p in path.iterdir()
        if not (p.is_file() and (p.name in _OWN_FILES or p.name.endswith(_OWN_SUFFIX)))
    )


def _is_result(path: Path) -> bool:
    """A directory `write` made: its `summary.json` carries the format (or is a version-1
    summary, which had `runs` and no format), beside `runs.npz`, and nothing else is in it."""
    try:
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(summary, dict) or not (path / "runs.npz").is_file():
        return False
    fmt = summary.get("format")
    own = fmt.get("name") == FORMAT if isinstance(fmt, dict) else fmt is None and "runs" in summary
    return own and not _foreign(path)


def check_target(path: str | os.PathLike, force: bool = False) -> Path:
    """Refuse, before anything is computed, a results location `write` would refuse: `""`, the
    current directory or one of its ancestors, a file, an existing directory without `force`,
    with `force` a directory that is not an sdelens result (or holds anything else), and a
    location that cannot be written (probed with an empty directory, removed at once). Nothing
    else is created, and nothing is removed."""
    if str(path).strip() == "":
        raise ValueError("path='' is invalid: name a results directory, e.g. 'results/run'.")
    path = Path(path).expanduser()
    here, target = Path.cwd().resolve(), path.resolve()
    if target == here or target in here.parents:
        raise ValueError(
            f"path={str(path)!r} is invalid: it is the current directory or one of its parents; "
            "name a new subdirectory for the results."
        )
    if path.is_symlink():
        raise ValueError(f"path={str(path)!r} is invalid: it is a symbolic link.")
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"path={str(path)!r} is invalid: it exists and is not a directory.")
        if not force:
            raise FileExistsError(f"path={str(path)!r} exists: pass force=True to replace it.")
        if not _is_result(path):
            other = _foreign(path)
            what = (
                f"it holds {', '.join(other[:3])}{' ...' if len(other) > 3 else ''}"
                if other
                else "it has no sdelens summary.json and runs.npz"
            )
            raise ValueError(
                f"path={str(path)!r} is invalid: force replaces only an sdelens results "
                f"directory, and {what}; it is left untouched."
            )
    parent = next(p for p in path.absolute().parents if p.exists())
    try:  # permissions alone miss read-only mounts and root's bypass of them
        os.rmdir(tempfile.mkdtemp(prefix=f".{path.name}{_TMP_TAG}probe-", dir=parent))
    except OSError as err:
        raise ValueError(
            f"path={str(path)!r} is invalid: nothing can be written in {parent} ({err.strerror})."
        ) from None
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _clean_stale(path: Path) -> None:
    """Remove temporaries of `path` left by writers that were killed (their pid is gone)."""
    prefix = f".{path.name}{_TMP_TAG}"
    for stale in path.parent.glob(f"{glob.escape(prefix)}*"):
        pid = stale.name[len(prefix) :].partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)) and stale.is_dir() and not _foreign(stale):
            shutil.rmtree(stale, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux `renameat2(RENAME_EXCHANGE)`); False where
    the system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
    figure (anything with `savefig`). Everything is written into a temporary directory beside
    `path` (with the user's umask) and moved into place, so a crash leaves no half-written
    result. An existing `path` is replaced only with `force=True`, and only if it is an sdelens
    result holding nothing else (`check_target`); the old and the new result are swapped in one
    atomic rename on Linux (elsewhere two renames), then the old one is removed. Temporaries of
    killed writers are removed.
    """
    path = check_target(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(path)
    tag = f".{path.name}{_TMP_TAG}{os.getpid()}-"
    tmp = Path(tempfile.mkdtemp(prefix=tag, dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
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
        if not path.exists():
            os.replace(tmp, path)
            return path
        check_target(path, force)  # still an sdelens result, just before it goes
        if not _exchange(tmp, path):
            old = tmp.with_name(tmp.name + "old")
            os.replace(path, old)
            os.replace(tmp, path)
            tmp = old
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)  # now the old result
    return path


def read(path: str | os.PathLike) -> tuple[dict, dict[str, Record], dict[str, np.ndarray], int]:
    """`(summary, records, extra arrays, format version)` of a results directory. A ValueError
    naming the file for anything that is not a readable sdelens result of a known format."""
    path = Path(path)
    summary_file, arrays_file = path / "summary.json", path / "runs.npz"
    if not summary_file.is_file() or not arrays_file.is_file():
        raise ValueError(f"path={str(path)!r} is not an sdelens results directory.")
    try:
        summary = json.loads(summary_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(
            f"{summary_file} is not valid JSON ({err}): the result is damaged."
        ) from None
    if not isinstance(summary, dict):
        raise ValueError(f"{summary_file} is not an sdelens summary (not a JSON object).")
    fmt = summary.get("format", {"name": FORMAT, "version": 1})
    version = fmt.get("version") if isinstance(fmt, dict) else None
    if not isinstance(fmt, dict) or fmt.get("name") != FORMAT or not isinstance(version, int):
        raise ValueError(
            f"{summary_file} holds results of format {fmt}, not {FORMAT!r}: not an sdelens result."
        )
    if version > VERSION:
        raise ValueError(
            f"path={str(path)!r} holds results of format {fmt}: this sdelens reads "
            f"{FORMAT!r} up to version {VERSION}; upgrade sdelens to read it."
        )
    runs = summary.get("runs", {})
    if not isinstance(runs, dict) or not all(isinstance(m, dict) for m in runs.values()):
        raise ValueError(f"{summary_file}: its 'runs' entry is not a map of name -> manifest.")
    try:
        # our own handle: np.load leaves the file it opened open when the archive is damaged
        with open(arrays_file, "rb") as handle, np.load(handle, allow_pickle=False) as data:
            stored = {key: data[key] for key in data.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(
            f"{arrays_file} cannot be read ({type(err).__name__}: {err}): it is truncated or "
            "damaged."
        ) from None
    records = {}
    for name, manifest in runs.items():
        prefix = f"{name}/"
        arrays = {k[len(prefix) :]: v for k, v in stored.items() if k.startswith(prefix)}
        records[name] = (arrays, manifest)
    extra = {k[len("extra/") :]: v for k, v in stored.items() if k.startswith("extra/")}
    return summary, records, extra, version
