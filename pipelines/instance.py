"""The Dagster instance under $TRADECAST_HOME/dagster_home, shared by the CLI and `make ui`."""

from __future__ import annotations

import os
from pathlib import Path

from storage.home import tradecast_home

# the daemon (`make ui`) fails runs whose worker died and frees the slots that finished runs still hold; runs of
# the `tradecast` CLI execute in its own process and are looked after by `pipelines.run_guard` instead
RUN_MONITORING = """\
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 30
  free_slots_after_run_end_seconds: 30
"""

DAGSTER_YAML = """\
# written by tradecast (pipelines/instance.py); edit freely, it is not overwritten
telemetry:
  enabled: false
concurrency:
  pools:
    # DuckDB has a single writer: assets that write it share the `duckdb_writer` pool
    default_limit: 1
    granularity: op
""" + RUN_MONITORING


STORES = ("history/runs.db", "history/runs/index.db", "schedules/schedules.db")  # the instance's sqlite storage


def ensure_dagster_home(home: str | None = None) -> Path:
    """Create `dagster_home/` (its dagster.yaml and the instance's storage) under TRADECAST_HOME; point DAGSTER_HOME
    at it. One process at a time: two first commands at once would race on the storage's schema (one crashed)."""
    from ingest.files import atomic_write_text, locked

    path = tradecast_home(home) / "dagster_home"
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    os.environ["DAGSTER_HOME"] = str(path)
    with locked(config):
        if not config.exists():
            atomic_write_text(config, DAGSTER_YAML)
        elif "run_monitoring:" not in config.read_text():  # an instance from before run monitoring: add just that
            atomic_write_text(config, config.read_text().rstrip("\n") + "\n" + RUN_MONITORING)
        if not all((path / store).exists() for store in STORES):
            import dagster as dg

            dg.DagsterInstance.get().dispose()  # creates the storage
    return path


if __name__ == "__main__":  # `python -m pipelines.instance` prints the path (used by `make ui`)
    print(ensure_dagster_home())
