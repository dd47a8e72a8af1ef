# The two commands of the README's quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench reliability clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

## Run the bridge on its embedded default: the Cerebras simulator -> a console table.
demo: $(VENV)/.installed
	$(BIN)/metrics-bridge run

## Install the test extras and the tools the tests drive (helm, Debian's prometheus), then run pytest.
test: $(VENV)/.test-installed
	bash scripts/ci-deps.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Re-run the fault suite's scenarios and rewrite docs/reliability.md with their figures.
reliability: $(VENV)/.test-installed
	$(BIN)/python -m tests.faults.report

## Benchmarks; results are recorded by hand in bench/RESULTS.md.
bench: $(VENV)/.installed
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .cache .pytest_cache .hypothesis build *.egg-info
