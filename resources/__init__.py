"""Dagster resources: settings (TRADECAST_HOME), the DuckDB warehouse, the model registry."""

from resources.registry import ModelRegistry
from resources.settings import Settings
from resources.warehouse import Warehouse

__all__ = ["ModelRegistry", "Settings", "Warehouse"]
