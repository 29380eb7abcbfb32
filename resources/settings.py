"""Where tradecast keeps its state and finds its data: one resource, resolved at run time."""

import datetime as dt
import os
import re
from pathlib import Path

import dagster as dg

from storage.home import PROJECT_ROOT, tradecast_home


class Settings(dg.ConfigurableResource):
    """All runtime state lives under `home` (default $TRADECAST_HOME or ./var)."""

    home: str | None = None
    catalog: str | None = None  # sources catalog; default data/sources.yaml (or $TRADECAST_CATALOG)
    # freshness windows (assets/freshness.py), a number and a unit (ms, s, m, h, d, w): a partition last
    # materialized longer ago is stale. Bars: a day and a bit (a daily feed may be late); forecasts: 8 days, a
    # week of retrains missed plus a day's slack (the schedules retrain at least every weekday).
    market_bars_max_age: str | None = None  # default $TRADECAST_MARKET_BARS_MAX_AGE or 26h
    forecasts_max_age: str | None = None  # default $TRADECAST_FORECASTS_MAX_AGE or 8d

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

    @property
    def market_bars_window(self) -> dt.timedelta:
        return duration(self.market_bars_max_age or os.environ.get("TRADECAST_MARKET_BARS_MAX_AGE") or "26h",
                        "market_bars_max_age ($TRADECAST_MARKET_BARS_MAX_AGE)")

    @property
    def forecasts_window(self) -> dt.timedelta:
        return duration(self.forecasts_max_age or os.environ.get("TRADECAST_FORECASTS_MAX_AGE") or "8d",
                        "forecasts_max_age ($TRADECAST_FORECASTS_MAX_AGE)")


UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str, what: str) -> dt.timedelta:
    """``26h``, ``8d``, ``90m``, ``1.5h``, ``10ms``: a positive number and a unit; anything else is a ValueError
    naming ``what``, so a mistyped window fails the check loudly instead of passing it."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{what}: {text!r} is not a duration like 26h, 8d, 90m or 30s")
    return dt.timedelta(seconds=float(match.group(1)) * UNITS[match.group(2)])
