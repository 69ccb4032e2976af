import gc
import os
import shutil
import tempfile

# One on-disk cache of compiled XLA programs for the whole run, shared by the pytest workers, the
# notebook kernels and the subprocesses (they inherit the environment; set before JAX is imported,
# which reads it then). Many tests compile the same programs (test_cli, test_plot and the README
# run the same commands), and every module recompiles after `_free_compiled_programs`: with the
# cache they load them instead (test_cli + test_plot 207 -> 177 s). It starts empty, as on CI,
# and is deleted at the end; a run that sets JAX_COMPILATION_CACHE_DIR itself keeps its own.
_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="sdelens-tests-jax-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402
import matplotlib  # noqa: E402
import pytest  # noqa: E402

matplotlib.use("Agg")  # figures are drawn off-screen; shared test helpers live in helpers.py

# The CLI keeps compiled programs in an on-disk cache (~/.cache/sdelens/jax by default). The tests
# call it in-process; they do not test the cache (test_cli does, in a subprocess), and they never
# write into the user's.
os.environ.setdefault("SDELENS_JAX_CACHE", "off")

# The suite compiles a thousand small XLA programs and runs each briefly: compiling is about half
# of its time. At LLVM optimisation level 1 XLA compiles them a quarter faster and they run about
# as fast (three SDE test files 130 -> 103 s, the network tests 217 -> 165 s, the moment and
# coupling tests 243 -> 227 s). XLA's older loop emitters for fusions compile faster again than
# its MLIR fusion emitters, and the programs run no slower (CPU seconds: test_sde_lion 45.5 ->
# 32.1, test_nn_models 60.0 -> 47.5, test_sde_moments 262 -> 205). Only the tests do this: the
# library and the CLI keep XLA's defaults.
_flags = os.environ.get("XLA_FLAGS", "")
for _flag in ("--xla_backend_optimization_level=1", "--xla_cpu_use_fusion_emitters=false"):
    if _flag.partition("=")[0] not in _flags:
        _flags = f"{_flags} {_flag}".strip()
os.environ["XLA_FLAGS"] = _flags


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after each test module. XLA maps the machine code of every
    program into memory regions of its own: a pytest worker that kept every module's programs
    grew by ~60 mappings a second (8700 after 130 s), a rate that reaches the kernel's limit
    (`vm.max_map_count`, 65530) late in the suite, where a compilation's mmap fails. That is the
    likely cause of the workers that died of a segfault inside XLA's compiler at 75-90% of the
    suite (CI and fresh clones, in test_readme's CLI commands; never with those tests alone).
    With this, a worker's mappings fall back to ~1200 after each module, at no cost in time."""
    yield
    jax.clear_caches()
    gc.collect()


def pytest_unconfigure(config):
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)
