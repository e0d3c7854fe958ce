# Reportgrid. On a fresh machine with only python3 and make, every target bootstraps what it
# needs into .venv (uv installs it; uv itself is installed into .tools/ with pip if missing).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SYSTEM_UV := $(shell command -v uv 2>/dev/null)
UV := $(if $(SYSTEM_UV),$(SYSTEM_UV),.tools/bin/uv)
export UV_PYTHON_DOWNLOADS := never
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Python may cache compiled bytecode (__pycache__, git-ignored) even where the environment
# says not to: the suite starts hundreds of Python processes (moto, edges, workers, CLIs),
# and without the cache each one compiles botocore, grpc and the CDK from source again.
unexport PYTHONDONTWRITEBYTECODE
SYNCED := $(VENV)/.synced
# The five distributions (see pyproject.toml), the CDK app and the tools around them.
PACKAGES := client core edge workers devstack
CHECKED := $(wildcard $(PACKAGES) cdk app.py tests proto/generate.py bench)

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

$(SYNCED): pyproject.toml $(PACKAGES:%=%/pyproject.toml) uv.lock | $(UV)
	$(UV) sync --frozen --all-groups
	@touch $@

.PHONY: venv
venv: $(SYNCED) ## install everything into .venv

.PHONY: lock
lock: | $(UV) ## re-resolve uv.lock after editing pyproject.toml
	$(UV) lock

.PHONY: proto
proto: $(SYNCED) ## regenerate client/reportgrid/v1 and core/reportgrid/task from proto/
	$(BIN)/python proto/generate.py --clean

.PHONY: lint
lint: $(SYNCED) ## ruff lint + format check, and the generated sync SDK is current
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)
	$(BIN)/python client/unasync.py --check

.PHONY: fmt
fmt: $(SYNCED) ## regenerate the sync SDK, apply ruff fixes and formatting
	$(BIN)/python client/unasync.py
	$(BIN)/ruff check --fix $(CHECKED)
	$(BIN)/ruff format $(CHECKED)

.PHONY: typecheck
typecheck: $(SYNCED) ## mypy (strict on the service code)
	$(BIN)/mypy $(PACKAGES) cdk app.py bench

# Two pytest workers (pytest-xdist): most tests wait on real processes (moto, Redis, edges,
# workers), so two run side by side even on a 2-core machine; 6.5 min instead of 10 on one
# busy with other work. The session fixtures (synth, image trees) are built once under a
# file lock. TEST_WORKERS=0 runs them one at a time.
# --dist loadfile: a module's tests on one worker, so its module fixtures (a local region,
# a synth) start once, not once per worker: 9.6 min instead of 12.8 here.
TEST_WORKERS ?= 2

.PHONY: test
test: lint typecheck ## lint, type check and the whole test suite
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

.PHONY: test-faults
test-faults: $(SYNCED) ## only the fault and bad-input scenarios, with their figures
	$(BIN)/pytest tests/faults -s

.PHONY: dev
dev: $(SYNCED) ## run a whole region locally (moto server, redis, edge, workers)
	$(BIN)/reportgrid-dev $(ARGS)

.PHONY: synth
synth: $(SYNCED) ## synthesize the CDK app into cdk.out/ (no AWS credentials needed)
	$(BIN)/python app.py

.PHONY: drift
drift: $(SYNCED) ## compare every deployed stack with this checkout (cdk diff; needs AWS credentials)
	npx aws-cdk@2 diff --fail $(if $(STACKS),$(STACKS),'**')

.PHONY: bench
bench: $(SYNCED) ## the load harness; writes bench/results and docs/PERFORMANCE.md
	$(BIN)/python -m bench $(ARGS)

.PHONY: bench-smoke
bench-smoke: $(SYNCED) ## a short load run (under 30 s)
	$(BIN)/python -m bench --smoke $(ARGS)

.PHONY: clean
clean: ## remove build outputs and local state
	rm -rf $(VENV) .tools cdk.out .reportgrid .mypy_cache .ruff_cache .pytest_cache
