# tradecast — every target installs what it needs into .venv first (a fresh clone needs only Python 3.11 and PyPI).
# The install is reproducible: uv (pinned, from PyPI, in .tools/) syncs .venv to the committed uv.lock.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_STAMP := $(TOOLS)/.uv-$(UV_VERSION)
# uv: sync into .venv with the Python found above (its real executable: a pyenv shim is a script, and uv would
# rebuild .venv on every sync), never a Python downloaded by uv
UV_ENV = UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(VENV) UV_PYTHON_DOWNLOADS=never \
	UV_PYTHON=$$($(PYTHON) -c 'import sys; print(sys.executable)')
export TRADECAST_HOME ?= $(CURDIR)/var
PORT ?= 3000
SERVE_PORT ?= 8000

.PHONY: setup lock lint chromium promtool run train-full test chaos quality bench bench-events bench-serve bench-scale bench-trading tune gpu-check ray-stop serve ui clean

$(UV_STAMP):
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet 'uv==$(UV_VERSION)'
	@rm -f $(TOOLS)/.uv-* && touch $(UV_STAMP)

# --locked: a uv.lock that no longer matches pyproject.toml stops here (run `make lock`, commit both)
$(STAMP): pyproject.toml uv.lock $(UV_STAMP)
	$(UV_ENV) $(UV) sync --locked --extra dev
	@touch $(STAMP)

setup: $(STAMP)  ## the virtualenv .venv, exactly as uv.lock says (the project editable, with its dev tools)

lock: $(UV_STAMP)  ## re-resolve uv.lock after a change to pyproject.toml's dependencies (then commit both)
	$(UV_ENV) $(UV) lock

lint: setup  ## ruff over the whole tree (config: [tool.ruff] in pyproject.toml)
	$(BIN)/ruff check .

run: setup  ## the whole pipeline on the bundled data, then a summary
	$(BIN)/tradecast run

train-full: setup  ## the pipeline with the full training profile (1500 steps, early stopping)
	$(BIN)/tradecast run --profile full

chromium:  ## Debian's chromium for tests/pipelines/test_ui_browser.py (Playwright's own browser download is not used)
	@test -x /usr/bin/chromium || { SUDO=$$([ "$$(id -u)" = 0 ] || command -v sudo); \
		$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

promtool:  ## Debian's prometheus package for promtool (tests/serving/test_alert_rules.py checks serving/prometheus/alerts.yml)
	@test -x /usr/bin/promtool || { SUDO=$$([ "$$(id -u)" = 0 ] || command -v sudo); \
		$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus; }

test: setup chromium promtool  ## lint, then the test suite (fails when no test ran)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

chaos: setup  ## the whole fault suite (kills, races, corrupt inputs, fuzz, load with failures) -> benchmarks/results/chaos-<cpu|cuda>.{md,json}
	TRADECAST_CHAOS_FULL=1 TRADECAST_CHAOS_REPORT=benchmarks/results/chaos-$$($(BIN)/python -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')").md \
		$(BIN)/python -m pytest tests -m fault

quality: setup  ## every model on the same windows, QLIKE/MASE/CRPS, the gate's DM p-values -> benchmarks/results/quality-<cpu|cuda>.{json,md}
	$(BIN)/tradecast quality --profile full

bench: setup  ## the benchmark comparison, full profile -> benchmarks/results/full-<cpu|cuda>.{json,md}
	$(BIN)/tradecast bench --profile full

bench-events: setup  ## plain vs event-aware NHITS (ablation none/news/fomc/all, 3 seeds) -> benchmarks/results/events-<cpu|cuda>.{json,md}
	$(BIN)/tradecast bench-events

bench-scale: setup  ## what Ray buys: search trials/hour 1 vs 2 slots, six trainings serial vs on Ray, DDP 1 vs 2 processes, default vs searched NHITS at the gate -> benchmarks/results/scale-<cpu|cuda>.{json,md} (run `make run` first)
	$(BIN)/tradecast bench-scale

tune: setup  ## the real search: tune_job per partition (nhits_search on Ray Tune, 16 trials; nhits_model with the best config, full profile; the gate)
	$(BIN)/tradecast tune

gpu-check: setup  ## GPU readiness (CUDA machine): bf16 NHITS training smoke -> gpu-train-cuda.*, the full benchmark -> full-cuda.*, the serving benchmark on ONNX Runtime CUDA/TensorRT -> serve-cuda.* (benchmarks/results); without CUDA it prints the plan and runs nothing
	$(BIN)/tradecast gpu-check

ray-stop: setup  ## stop this home's local Ray head (the first training or search starts it; it is shared by every run)
	$(BIN)/tradecast ray-stop

bench-serve: setup  ## serving latency: every inference path, HTTP under load, replay -> benchmarks/results/serve-<cpu|cuda>.{json,md}
	$(BIN)/tradecast bench-serve

bench-trading: setup  ## bar -> intent latency (1 symbol, 500-symbol tick), MCP latency, backtest table -> benchmarks/results/trading-cpu.{json,md} (run `make run` first)
	$(BIN)/tradecast bench-trading

serve: setup  ## the forecast service for crypto close on http://127.0.0.1:$(SERVE_PORT) (run `make run` first)
	$(BIN)/tradecast serve --asset-class crypto --target close --port $(SERVE_PORT)

ui: setup  ## Dagster UI + daemon on http://127.0.0.1:$(PORT), same instance as the CLI runs
	DAGSTER_HOME=$$($(BIN)/python -m pipelines.instance) $(BIN)/dagster dev -h 127.0.0.1 -p $(PORT) -w workspace.yaml

clean:  ## remove runtime state (the warehouse, MLflow, Dagster runs, the local Ray head) — not the venv nor .tools
	-@test -x $(BIN)/tradecast && $(BIN)/tradecast ray-stop
	rm -rf "$(TRADECAST_HOME)"
