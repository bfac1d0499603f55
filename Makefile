# The project's commands. `make demo` runs the main job on the local stack; `make test` runs the tests.
# Both install what they need first (a virtualenv in .venv, the KCL jars, kinesis-mock).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo lobby test test-unit lint typecheck bench clean

$(STAMP): pyproject.toml devstack/node/package-lock.json
	bash .ci/install.sh
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

lobby: $(STAMP)
	bash scripts/lobby.sh

test: $(STAMP)
	$(BIN)/pytest -q

test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/processor_throughput.py
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python bench/batch_datasets.py
	$(BIN)/python bench/sims_training.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache out
