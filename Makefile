# `make up` starts the whole network, `make test` runs the tests; both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# UP_ARGS passes flags on, e.g. make up UP_ARGS="--rpc-port 0 --dashboard-port 0" (reef up --help).
up: $(STAMP)
	$(BIN)/reef up $(UP_ARGS)

# The whole suite, then the end-to-end tests again on anvil (issue 14: they pass on both chains);
# PYTEST_ARGS narrows the first run and skips the second. Most tests wait on real processes
# (enclaves, chains, snarkjs), so one worker per core (at most 4) halves the wall time on CI's
# two cores; a test file stays on one worker, so its module fixtures start once. The slowest
# durations are printed to keep an eye on CI's 25-minute budget. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= auto
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile)
test: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) --durations 15 $(PYTEST_ARGS)
	$(if $(PYTEST_ARGS),,$(BIN)/python -m pytest $(XDIST) tests/e2e --chain anvil)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src/reef

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
