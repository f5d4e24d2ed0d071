# btse-collector: every target sets up its own virtual environment first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= deploy/collector.yaml

.PHONY: run test lint demo bench simulate clean

# setup.py and the C source: a changed _speedups.c is rebuilt (pip install -e compiles it in place)
$(STAMP): pyproject.toml setup.py collector/protocol/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/btse-collector run --config $(CONFIG)

# only the tests need the AsyncAPI JSON Schema (npm, once): run/demo/simulate work without Node
test: $(STAMP)
	scripts/fetch-asyncapi-schema.sh
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check collector tests
	$(VENV)/bin/mypy

demo: $(STAMP)
	$(VENV)/bin/btse-collector demo

bench: $(STAMP)
	$(PY) -m bench

simulate: $(STAMP)
	$(VENV)/bin/btse-collector simulate --host 127.0.0.1 --port 8765

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
