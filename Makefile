# Two entry points: `make run` (the default campaign) and `make test` (the test suite).
# Both create .venv on first use: torch 2.13.0 first (an unpinned torch pulls CUDA builds of
# several GB), then alkappa with its dependencies.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
CONFIG ?= config/config.yaml
# pytest workers; test files stay whole on one worker (the pipeline file shares one campaign)
TEST_WORKERS ?= 2

.PHONY: setup run stop unlock test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# alkappa run: a lock left by a killed run is removed first (only if no Snakemake runs
# here); Ctrl-C or SIGTERM stop Snakemake and its jobs within seconds and leave no lock
run: setup
	$(BIN)/alkappa run --cores $(CORES) --configfile $(CONFIG)

# stop the run of this directory from another terminal (as Ctrl-C would)
stop:
	$(BIN)/alkappa stop

# remove the lock of a run that was killed hard (refused while one runs here)
unlock:
	$(BIN)/alkappa unlock

test: setup
	$(BIN)/ruff check src tests benchmarks validation workflow
	$(BIN)/ruff format --check src tests benchmarks validation workflow
	$(BIN)/python -m pytest -v --durations=15 -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf results results-test .snakemake
