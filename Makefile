# The two commands of the README's quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench reliability mutants constraints clean dashboards

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Every install is held to constraints.txt: the versions the suite last passed with (`make constraints` moves them).
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@ $(VENV)/.installed

## Run the bridge on its embedded default: the Cerebras simulator -> a console table.
demo: $(VENV)/.installed
	$(BIN)/metrics-bridge run

## Install the test extras and the tools the tests drive (helm, Debian's prometheus), lint, then run pytest.
test: $(VENV)/.test-installed lint
	bash scripts/ci-deps.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## ruff's rules and formatting over every Python file ([tool.ruff]), mypy --strict on bridge/ ([tool.mypy]).
lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Regenerate dashboards/ (Grafana, Prometheus rules, Datadog) from bridge/dashboards; commit the result.
## The Helm chart reads the Grafana and rules files through its files/ symlinks: nothing to copy.
dashboards: $(VENV)/.test-installed
	$(BIN)/python -m bridge.dashboards dashboards

## Re-run the fault suite's scenarios and rewrite docs/reliability.md with their figures.
reliability: $(VENV)/.test-installed
	$(BIN)/python -m tests.faults.report

## Mutation testing (mutmut) of the modules where a wrong number is silent ([tool.mutmut] in pyproject.toml).
## Slow, so not in CI; scores and judged-equivalent survivors: docs/mutation.md. One module:
## make mutants MUTANTS='bridge.context*'. Survivors: .venv/bin/mutmut show <name>.
mutants: $(VENV)/.test-installed
	$(BIN)/pip install -q 'mutmut>=3.8,<4'
	$(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/mutmut results

## Benchmarks; results are recorded by hand in bench/RESULTS.md.
bench: $(VENV)/.installed
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

## Re-resolve the test extra in a scratch venv and pin the result in constraints.txt (keeping its header);
## then `make test`, and commit constraints.txt.
constraints:
	scratch=$$(mktemp -d) && $(PYTHON) -m venv $$scratch \
	  && $$scratch/bin/pip install -q --upgrade pip && $$scratch/bin/pip install -q -e '.[test]' \
	  && { grep '^#' constraints.txt; $$scratch/bin/pip freeze --exclude-editable; } > $$scratch/constraints.txt \
	  && mv $$scratch/constraints.txt constraints.txt; status=$$?; rm -rf $$scratch; exit $$status

clean:
	rm -rf $(VENV) .cache .pytest_cache .hypothesis .mypy_cache .ruff_cache build *.egg-info
