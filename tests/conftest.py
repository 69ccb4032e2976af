import atexit
import os
import shutil
import tempfile

import matplotlib

matplotlib.use("Agg")  # figures are drawn off-screen; shared test helpers live in helpers.py

# The CLI keeps compiled programs in an on-disk cache (~/.cache/sdelens/jax by default). Tests
# call it in-process from several pytest-xdist workers: each worker gets a cache of its own, so
# no worker reads an entry another is still writing (a torn entry aborted a worker), and the
# user's cache is never touched.
if "SDELENS_JAX_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(
        prefix=f"sdelens-jax-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-"
    )
    os.environ["SDELENS_JAX_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
