"""The notebooks execute without error. Each executed copy goes to `build/notebooks/`, with the
SHA-256 of its source in its metadata: `make docs` (docs/hooks.py) renders a copy whose source is
unchanged instead of executing the notebook again, so under `make test` the notebooks run once,
in parallel with the other tests, rather than one after another in the documentation build."""

import hashlib
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXECUTED = ROOT / "build" / "notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    source = path.read_bytes()
    notebook = nbformat.reads(source.decode("utf-8"), as_version=4)
    # the working directory is a scratch one: a notebook never writes into the repository
    client = NotebookClient(notebook, timeout=900, kernel_name="python3", allow_errors=False)
    client.execute(cwd=str(tmp_path))
    notebook.metadata["sdelens"] = {"source_sha256": hashlib.sha256(source).hexdigest()}
    EXECUTED.mkdir(parents=True, exist_ok=True)
    partial = EXECUTED / f".{path.name}.{os.getpid()}.partial"
    nbformat.write(notebook, partial)
    os.replace(partial, EXECUTED / path.name)  # a reader never sees half a notebook
