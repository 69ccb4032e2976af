# Two commands set everything up: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test docs bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/sdelens demo --force

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n 2 tests
	$(MAKE) docs

# The API reference from the docstrings and the notebooks, executed (a failing cell or a broken
# reference fails the strict build), into site/. Under `make test` the test suite has executed the
# notebooks already (tests/test_notebooks.py, in parallel): their unchanged copies in build/ are
# rendered, not run again (docs/hooks.py). mkdocs-jupyter has no per-cell timeout: a hung notebook
# must not hang CI, so the whole build gets 30 minutes (about 5 when it executes them all).
docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 timeout 1800 $(BIN)/mkdocs build --strict

PEERS := benchmarks/.venv-peers

# torch (CPU build, pinned) and torchsde only for the comparison; never sdelens dependencies.
$(PEERS)/bin/python:
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet torch==2.13.0 torchsde==0.2.6

bench: $(VENV)/.installed $(PEERS)/bin/python
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/vs_torchsde.py
	$(BIN)/python benchmarks/grid.py
	cd benchmarks && ../$(BIN)/python networks.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) $(PEERS) results site build .pytest_cache .import_linter_cache .hypothesis
