# unlearn-proxy: `make serve` and `make test` set everything up on a fresh machine.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
CONFIG ?=
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install dev serve test test-fast bench bench-smoke bench-weights bench-scope mutation clean postgres

# llama-cpp-python compiles llama.cpp. A native build (-march=native) emits AMX tile
# instructions on hosts whose CPU lists AMX, and a VM that does not grant AMX state kills the
# process with SIGILL on the first generation: build for AVX2/FMA/F16C instead, never from a
# wheel cached with other flags.
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
endif
LLAMA_CPP ?= llama-cpp-python==0.3.36

# torch is installed first and pinned: pip takes the CPU build from local disk; an unpinned
# torch would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --quiet --no-cache-dir "$(LLAMA_CPP)"
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(PIP) install --quiet -e ".[dev]"
	touch $@

$(VENV)/.mutation-installed: $(VENV)/.dev-installed
	$(PIP) install --quiet -e ".[mutation]"
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed

serve: $(VENV)/.installed
	$(VENV)/bin/unlearn-proxy serve $(if $(CONFIG),--config $(CONFIG))

# The suite runs on TEST_WORKERS processes (pytest-xdist), each test file on one worker: most
# tests wait on servers and subprocesses, so two workers on two cores finish well ahead of one.
TEST_WORKERS ?= 2

# The replica tests start a real PostgreSQL server from Debian's package (benchmarks/postgres_server.py).
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { echo "installing Debian's postgresql package for the replica tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

test: $(VENV)/.dev-installed postgres
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: $(VENV)/.dev-installed
	$(PY) -m pytest -m "not slow"

bench: $(VENV)/.dev-installed
	$(VENV)/bin/unlearn-proxy bench --config benchmarks/configs/default.yaml

bench-weights: $(VENV)/.dev-installed
	$(VENV)/bin/unlearn-proxy bench --config benchmarks/configs/weights.yaml

bench-smoke: $(VENV)/.dev-installed
	$(VENV)/bin/unlearn-proxy bench --config benchmarks/configs/smoke.yaml

# Scope precision (issue 17): detect mode, RWKU targets 1-40 and TOFU forget01/05/10 paraphrased
# questions against an oracle model; writes benchmarks/results/scope/report.{md,html}.
bench-scope: $(VENV)/.dev-installed
	$(VENV)/bin/unlearn-proxy bench --config benchmarks/configs/scope.yaml

# Mutation testing of the safety-critical modules (over an hour on 2 cores from scratch; not
# part of test):
# writes benchmarks/results/mutation.md.
mutation: $(VENV)/.mutation-installed
	$(PY) -m benchmarks.mutation

clean:
	rm -rf $(VENV) .pytest_cache .unlearn-proxy mutants
