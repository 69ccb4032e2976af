"""mkdocs hook (mkdocs.yml `hooks:`): the notebooks in `notebooks/` become pages of the site.

The notebooks live outside `docs_dir`. This hook adds a `File` for each `notebooks/*.ipynb` that
points at the notebook where it is (its `src_dir` is the repository root), so nothing is copied
or written into the repository; mkdocs-jupyter (configured in mkdocs.yml) then executes and
renders them as the pages `notebooks/<name>/`.

`make test` executes the notebooks in its test suite first (tests/test_notebooks.py), in
parallel with the other tests, and keeps each executed copy in `build/notebooks/` with the
SHA-256 of its source. Where that copy's source is the notebook as it is now, the page is
rendered from the copy, which mkdocs.yml's `execute_ignore` exempts from a second execution; any
other notebook (edited since, or never tested) is executed here as before.
"""

import hashlib
import json
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

NOTEBOOKS = "notebooks"
EXECUTED = "build"  # build/notebooks/<name>.ipynb, written by tests/test_notebooks.py


def _executed_copy(root: Path, notebook: Path) -> bool:
    """Whether `build/notebooks/<name>` is an executed copy of the notebook as it is now."""
    copy = root / EXECUTED / NOTEBOOKS / notebook.name
    try:
        meta = json.loads(copy.read_text(encoding="utf-8"))["metadata"].get("sdelens", {})
    except (OSError, ValueError, KeyError, AttributeError):
        return False
    return meta.get("source_sha256") == hashlib.sha256(notebook.read_bytes()).hexdigest()


@event_priority(100)  # before mkdocs-jupyter's `on_files` turns notebooks into pages
def on_files(files, config):
    root = Path(config.config_file_path).resolve().parent
    for notebook in sorted((root / NOTEBOOKS).glob("*.ipynb")):
        src = root / EXECUTED if _executed_copy(root, notebook) else root
        files.append(
            File(
                f"{NOTEBOOKS}/{notebook.name}",
                src_dir=str(src),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    return files
