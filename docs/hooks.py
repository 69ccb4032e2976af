"""mkdocs hook (mkdocs.yml `hooks:`): the notebooks in `notebooks/` become pages of the site.

The notebooks live outside `docs_dir`. This hook adds a `File` for each `notebooks/*.ipynb` that
points at the notebook where it is (its `src_dir` is the repository root), so nothing is copied
or written into the repository; mkdocs-jupyter (configured in mkdocs.yml) then executes and
renders them as the pages `notebooks/<name>/`.
"""

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

NOTEBOOKS = "notebooks"


@event_priority(100)  # before mkdocs-jupyter's `on_files` turns notebooks into pages
def on_files(files, config):
    root = Path(config.config_file_path).resolve().parent
    for notebook in sorted((root / NOTEBOOKS).glob("*.ipynb")):
        files.append(
            File(
                f"{NOTEBOOKS}/{notebook.name}",
                src_dir=str(root),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    return files
