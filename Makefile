# Quick start:  make train   (the tutorial's MNIST logistic regression)
#               make test    (the whole test suite)
# Each target creates .venv and installs what it needs the first time.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Where datasets are looked for first; ../shared/data is the project's local copy.
DESCENTLAB_DATA ?= $(abspath ../shared/data)
export DESCENTLAB_DATA

.PHONY: install train test lint typecheck check bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

train: install
	$(VENV)/bin/descentlab train $(ARGS)

# lint-imports checks the layer rule and the other import contracts ([tool.importlinter]
# in pyproject.toml; see docs/architecture.md).
lint: install
	$(VENV)/bin/ruff check src tests examples scripts conftest.py
	$(VENV)/bin/ruff format --check src tests examples scripts conftest.py
	$(VENV)/bin/lint-imports --no-logo --no-cache

typecheck: install
	$(VENV)/bin/mypy src/descentlab

# --dist loadfile: a document's examples share one namespace and folder, so each file stays on one worker.
test: install lint typecheck
	$(PY) -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

bench: install
	$(VENV)/bin/descentlab bench train

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
