import gc
import os

import jax
import matplotlib
import pytest

matplotlib.use("Agg")  # figures are drawn off-screen; shared test helpers live in helpers.py

# The CLI keeps compiled programs in an on-disk cache (~/.cache/sdelens/jax by default). The tests
# call it in-process; they do not test the cache (test_cli does, in a subprocess), and they never
# write into the user's.
os.environ.setdefault("SDELENS_JAX_CACHE", "off")

# The suite compiles a thousand small XLA programs and runs each briefly: compiling is about half
# of its time. At LLVM optimisation level 1 XLA compiles them a quarter faster and they run about
# as fast (three SDE test files 130 -> 103 s, the network tests 217 -> 165 s, the moment and
# coupling tests 243 -> 227 s). Only the tests do this: the library and the CLI keep XLA's default.
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_backend_optimization_level" not in _flags:
    os.environ["XLA_FLAGS"] = f"{_flags} --xla_backend_optimization_level=1".strip()


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
