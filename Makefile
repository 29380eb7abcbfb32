# tradecast — every target installs what it needs into .venv first (a fresh clone needs only Python 3.11).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TRADECAST_HOME ?= $(CURDIR)/var
PORT ?= 3000
SERVE_PORT ?= 8000

.PHONY: setup chromium run train-full test chaos bench bench-events bench-serve serve ui clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)  ## the virtualenv with the project and its dev tools

run: setup  ## the whole pipeline on the bundled data, then a summary
	$(BIN)/tradecast run

train-full: setup  ## the pipeline with the full training profile (1500 steps, early stopping)
	$(BIN)/tradecast run --profile full

chromium:  ## Debian's chromium for tests/test_ui_browser.py (Playwright's own browser download is not used)
	@test -x /usr/bin/chromium || { SUDO=$$([ "$$(id -u)" = 0 ] || command -v sudo); \
		$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

test: setup chromium  ## the test suite (fails when no test ran)
	$(BIN)/python -m pytest

chaos: setup  ## the whole fault suite (kills, races, corrupt inputs, fuzz, load with failures) -> benchmarks/results/chaos-<cpu|cuda>.{md,json}
	TRADECAST_CHAOS_FULL=1 TRADECAST_CHAOS_REPORT=benchmarks/results/chaos-$$($(BIN)/python -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')").md \
		$(BIN)/python -m pytest tests -m fault

bench: setup  ## the benchmark comparison, full profile -> benchmarks/results/full-<cpu|cuda>.{json,md}
	$(BIN)/tradecast bench --profile full

bench-events: setup  ## plain vs event-aware NHITS (ablation none/news/fomc/all, 3 seeds) -> benchmarks/results/events-<cpu|cuda>.{json,md}
	$(BIN)/tradecast bench-events

bench-serve: setup  ## serving latency: every inference path, HTTP under load, replay -> benchmarks/results/serve-<cpu|cuda>.{json,md}
	$(BIN)/tradecast bench-serve

serve: setup  ## the forecast service for crypto close on http://127.0.0.1:$(SERVE_PORT) (run `make run` first)
	$(BIN)/tradecast serve --asset-class crypto --target close --port $(SERVE_PORT)

ui: setup  ## Dagster UI + daemon on http://127.0.0.1:$(PORT), same instance as the CLI runs
	DAGSTER_HOME=$$($(BIN)/python -m pipelines.instance) $(BIN)/dagster dev -h 127.0.0.1 -p $(PORT) -w workspace.yaml

clean:  ## remove runtime state (the warehouse, MLflow, Dagster runs) — not the venv
	rm -rf "$(TRADECAST_HOME)"
