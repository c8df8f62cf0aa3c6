# `make run` and `make test` set up .venv themselves whenever it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test soak bench clean

# `run` installs only what running needs (a ~120 MB .venv); `test` adds the test tools (pytest, Playwright…: ~190 MB
# more). Measured on Python 3.11, December 2026.
RUN_STAMP  := $(VENV)/.run-stamp
TEST_STAMP := $(VENV)/.test-stamp

$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

# Ctrl-C is how the proxy is stopped: its status 130 is not an error of make's (issue 26).
run: $(RUN_STAMP)
	@trap true INT; $(BIN)/llm-sse-proxy --config config.yaml $(ARGS) || test $$? -eq 130

test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(ARGS)

# About 1,000 streams with random disconnects and upstream faults, then an overload; loopback only, ~60 s.
soak: $(TEST_STAMP)
	$(BIN)/python -m tests.soak $(ARGS)

# Side by side with the floor and LiteLLM, ~9 minutes (ARGS=--quick: ~4). See bench/run.py and README.md.
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(TEST_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info bench/.litellm-venv
