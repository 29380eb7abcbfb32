"""The Dagster instance under $TRADECAST_HOME/dagster_home, shared by the CLI and `make ui`."""

from __future__ import annotations

import os
from pathlib import Path

from resources.settings import tradecast_home

DAGSTER_YAML = """\
# written by tradecast (pipelines/instance.py); edit freely, it is not overwritten
telemetry:
  enabled: false
concurrency:
  pools:
    # DuckDB has a single writer: assets that write it share the `duckdb_writer` pool
    default_limit: 1
    granularity: op
"""


def ensure_dagster_home(home: str | None = None) -> Path:
    """Create `dagster_home/` (and its dagster.yaml) under TRADECAST_HOME; point DAGSTER_HOME at it."""
    path = tradecast_home(home) / "dagster_home"
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(path)
    return path


if __name__ == "__main__":  # `python -m pipelines.instance` prints the path (used by `make ui`)
    print(ensure_dagster_home())
