# TinyLarge — `make help` lists the targets (generated from the `##` comments).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# the Debian packages the tests use for real: one list, in scripts/system-deps.sh
SYSTEM_DEPS := scripts/system-deps.sh
SYSTEM_DEPS_STAMP := $(VENV)/.system-deps
#: Flower, installed without its typer cap (see $(STAMP)); its other requirements are pyproject's `fl` extra
FLWR_VERSION := 1.42.0

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,fl]'
	@# Flower goes in with --no-deps: its own dependencies are the `fl` extra (pyproject.toml; a test keeps
	@# it equal to flwr's metadata), all but its typer<0.21 cap, which clashes with amqtt 0.12's typer>=0.24
	@# (no release pair of the two overlaps: every flwr to 1.42 and the 1.43 nightlies cap it; amqtt 0.11
	@# pins typer==0.15.4, hence click<8.2, against transformers' click>=8.4.2; amqtt 0.10 needs PyYAML<6).
	@# Flower's SuperLink, SuperNodes and `flwr run` run on amqtt's typer (tests/shared/integration/
	@# test_federated_flower.py), and since flwr is not among TinyLarge's requirements, installing a plug-in
	@# domain next to it re-resolves nothing of Flower's: no resolver error either way.
	$(BIN)/python -m pip install -q --no-deps flwr==$(FLWR_VERSION)
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install TinyLarge with its dependencies

demo-%: $(STAMP) ## run a domain end to end, e.g. make demo-healthcare (trains models first if missing)
	$(BIN)/tinylarge demo $*

train-%: $(STAMP) ## train a domain's tiny and large models, e.g. make train-healthcare
	$(BIN)/tinylarge train $*

system-deps: ## install the Debian packages the tests use if missing (as root or with sudo -n), else name them
	@$(SYSTEM_DEPS) --stamp $(SYSTEM_DEPS_STAMP) ensure

test: system-deps $(STAMP) ## run the test suite (everything but the `slow` marker); installs what it needs first
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: system-deps $(STAMP) ## run every test, the slow ones included
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff over the whole tree
	$(BIN)/ruff check .

integration-report: $(STAMP) ## every integration strategy x domain -> out/integration/report.json, a table, PNGs
	$(BIN)/python -m shared.integration.report $(INTEGRATION_ARGS)

loop-%: $(STAMP) ## closed loop: the transformer teaches the tiny model, signed rollout, fleet metric before/after
	$(BIN)/tinylarge loop $*

bench: $(STAMP) ## pipeline benchmark (raw rate, saturated, paced at half, CPU by stage) -> out/bench/pipeline.json (BENCH_ARGS=--quick: CI's short run -> pipeline-quick.json); fails on any loss, duplicate or dead letter
	$(BIN)/python -m bench.pipeline $(BENCH_ARGS)

bench-faults: $(STAMP) ## fault-injection reliability report -> out/bench/faults.json (BENCH_FAULTS_ARGS=--quick: CI's short run -> faults-quick.json); fails on a broken promise or any dead letter
	$(BIN)/python -m bench.faults $(BENCH_FAULTS_ARGS)

bench-scale: $(STAMP) ## scale-out benchmark: 1/2/4 workers on 1 and 3 NATS nodes, PostgreSQL -> out/bench/scale.json + PNG (BENCH_SCALE_ARGS=--quick: CI's short run); fails on any loss, duplicate or reorder
	$(BIN)/python -m bench.scale $(BENCH_SCALE_ARGS)

demo-scale: $(STAMP) ## every domain through a local NATS cluster + PostgreSQL, a worker and a node killed -9 mid-run -> out/demo-scale/summary.json (DEMO_SCALE_ARGS=--quick: CI's short run); fails on any loss, duplicate or reorder
	$(BIN)/python -m shared.cluster.demo $(DEMO_SCALE_ARGS)

firmware-report: $(STAMP) ## parity and footprint of the compiled firmware -> out/firmware/report.json (FIRMWARE_REPORT_ARGS=--quick: 100 parity inputs)
	$(BIN)/python -m bench.firmware_report $(FIRMWARE_REPORT_ARGS)

results: $(STAMP) ## docs/results.md from the JSON the commands above wrote (out/, models/); README's marked figures from it
	$(BIN)/python -m bench.results

clean: ## remove build outputs (keeps .venv and trained models)
	rm -rf build out .pytest_cache

distclean: clean ## remove everything generated, .venv and trained models too
	rm -rf $(VENV) models

.PHONY: help venv system-deps test test-all lint integration-report bench bench-faults bench-scale demo-scale firmware-report results clean distclean
