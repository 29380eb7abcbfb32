"""Where tradecast keeps its state and finds its data: one resource, resolved at run time."""


import os
from pathlib import Path

import dagster as dg

from storage.home import PROJECT_ROOT, tradecast_home


class Settings(dg.ConfigurableResource):
    """All runtime state lives under `home` (default $TRADECAST_HOME or ./var)."""

    home: str | None = None
    catalog: str | None = None  # sources catalog; default data/sources.yaml (or $TRADECAST_CATALOG)

    @property
    def root(self) -> Path:
        return tradecast_home(self.home)

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def catalog_path(self) -> Path:
        return Path(self.catalog or os.environ.get("TRADECAST_CATALOG") or PROJECT_ROOT / "data" / "sources.yaml")

    @property
    def user_catalog_path(self) -> Path:
        """Sources registered with `tradecast ingest FILE` (their files are copied beside it)."""
        return self.root / "sources" / "sources.yaml"
