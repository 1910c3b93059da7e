# Jobline: `make run` starts the platform, `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROTOS := $(shell find protos -name '*.proto')

.PHONY: run test proto proto-check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start every service, the gateway and a demo agent (Ctrl-C stops them all).
run: $(STAMP)
	$(VENV)/bin/jobline run --demo-agent

## Run the whole test suite (the PostgreSQL store tests run when JOBLINE_TEST_POSTGRES_URL is set).
test: $(STAMP)
	$(PY) -m pytest -q

## Regenerate the Python code (with .pyi stubs) from protos/ into jobline/.
proto: $(STAMP)
	$(PY) -m tools.genproto

## Fail when the committed generated code differs from what `make proto` makes.
proto-check: $(STAMP)
	$(PY) -m tools.genproto --check

bench: $(STAMP)
	$(PY) -m bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
