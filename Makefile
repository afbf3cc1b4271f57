# The two commands of the README:
#   make demo   installs everything, then runs the main job
#   make test   installs everything, then runs the test suite
VENV ?= .venv
BENCH_ARGS ?=
MUTATION_ARGS ?=
BIN := $(VENV)/bin

.PHONY: demo test setup lint bench clean mutation

setup:
	@VENV=$(VENV) bash scripts/setup.sh

demo: setup
	$(BIN)/miaudit reproduce

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/train_throughput.py $(BENCH_ARGS)

# Mutation testing of the modules whose numbers users read (docs/mutation.md): a seeded sample, about
# 25 minutes on 2 cores, so not part of CI. MUTATION_ARGS=--quick runs a few mutants per module.
mutation: setup
	$(BIN)/python scripts/mutation/run.py $(MUTATION_ARGS)

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
