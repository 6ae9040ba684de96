# natter — every target a person or CI runs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS_CACHE ?= $(HOME)/.cache/natter
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

.PHONY: install
install: $(STAMP) ## Create .venv and install natter with its test tools (.venv/bin/natter)

.PHONY: up
up: install ## Run natter embedded (3-node NATS, 2 gateways, k8s/rooms); ARGS="--port 9090" passes flags
	$(BIN)/natter up $(ARGS)

.PHONY: system-deps
system-deps: ## Install Debian packages the tests need (chromium, iproute2) when missing
	@scripts/system-deps.sh

.PHONY: tools
tools: install system-deps envtest helm skaffold-schema ## Build or reuse helm and the envtest binaries (cached in ~/.cache/natter)
	@true

.PHONY: envtest
envtest: ## Build or reuse kube-apiserver + etcd (pinned); the last line is their directory
	@scripts/envtest.sh

.PHONY: helm
helm: ## Build or reuse helm (pinned, from its Go module); the last line is its path
	@TOOLS_CACHE=$(TOOLS_CACHE) scripts/helm.sh

.PHONY: skaffold-schema
skaffold-schema: ## Fetch or reuse skaffold's config JSON schema (from its Go module); the last line is its path
	@TOOLS_CACHE=$(TOOLS_CACHE) scripts/skaffold-schema.sh

.PHONY: test
test: tools lint ## Run the whole test suite (after ruff and mypy --strict)
	$(BIN)/pytest $(PYTEST_ARGS)

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

.PHONY: bench-setup
bench-setup: $(BENCH_STAMP) ## Install the bench extra, redis-server; build loadgen, Go peer, Centrifugo (cached)
	@bench/setup.sh

.PHONY: bench
bench: bench-setup ## Run the benchmark suite against the four peers; writes bench/REPORT.md (~25 min)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

.PHONY: bench-report
bench-report: $(BENCH_STAMP) ## Re-render bench/REPORT.md and plots from bench/results/latest.json
	$(BIN)/python -m bench.report

.PHONY: soak
soak: install ## Soak under repeated faults and print the figures; SOAK_ARGS="--minutes 10 --fault sigkill-leader"
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

.PHONY: lint
lint: install ## ruff and mypy --strict
	$(BIN)/ruff check src operator tests bench
	$(BIN)/ruff format --check src operator tests bench
	$(BIN)/mypy

.PHONY: clean
clean: ## Remove the virtual environment and local state
	rm -rf $(VENV) .natter .pytest_cache .mypy_cache .ruff_cache
