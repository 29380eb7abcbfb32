"""Where tradecast keeps its state: the home folder (`$TRADECAST_HOME`, default `<project>/var`), the warehouse file
and the MLflow store under it. Plain Python: Dagster's `Settings` resource and the serving process share it."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def tradecast_home(home: str | None = None) -> Path:
    """$TRADECAST_HOME, else `<project>/var`; created on first use."""
    path = Path(home or os.environ.get("TRADECAST_HOME") or PROJECT_ROOT / "var").expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def warehouse_path(home: str | None = None) -> Path:
    return tradecast_home(home) / "warehouse.duckdb"


def mlflow_uri(home: str | None = None) -> str:
    """The MLflow tracking and registry URI (sqlite under the home)."""
    from storage.rehome import rehome

    root = tradecast_home(home)
    rehome(root)  # a moved or restored home: its artifact locations point at itself, not the original
    return f"sqlite:///{root / 'mlflow.db'}"
