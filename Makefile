# `make run` and `make test` set up .venv themselves whenever it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: run test soak bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/llm-sse-proxy --config config.yaml $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

# About 1,000 streams with random disconnects and upstream faults, then an overload; loopback only, ~60 s.
soak: $(STAMP)
	$(BIN)/python -m tests.soak $(ARGS)

# Side by side with the floor and LiteLLM, ~9 minutes (ARGS=--quick: ~4). See bench/run.py and README.md.
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info bench/.litellm-venv
