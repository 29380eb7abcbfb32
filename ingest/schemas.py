"""Pandera schemas for the warehouse tables (one per table, built on demand: pandera is lazy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain.vocabulary import ASSET_CLASSES
from ingest.catalog import CatalogError, canonical_freq

if TYPE_CHECKING:
    import pandas as pd
    import pandera.pandas as pa

# the keys each table is unique on (also its DuckDB primary key); trades (rows of a trades source) have none
KEYS = {
    "bars": ["asset_class", "symbol", "freq", "ts"],
    "news_events": ["source", "ts", "symbol", "headline"],
    "macro_events": ["source", "ts", "event_type"],
    "symbols": ["symbol", "asset_class"],
}
_TOL = 1e-9  # relative tolerance for high/low against open/close (float noise in exports)


def _not_future(now: pd.Timestamp):
    import pandera.pandas as pa

    return pa.Check(lambda s: s <= now, name="ts_not_in_future", error=f"timestamp after {now:%Y-%m-%d %H:%M} UTC")


def _canonical_freq():
    import pandera.pandas as pa

    def spelled(v) -> bool:
        try:
            return canonical_freq(v) == v
        except CatalogError:
            return False

    def check(s):
        return s.map({v: spelled(v) for v in s.dropna().unique()})  # few distinct values, many rows

    return pa.Check(check, name="canonical_freq",
                    error="freq must be a canonical bar frequency (Nmin, Nh or 1d; whole minutes from 1min to 1d)")


def _ohlc_checks():
    import pandera.pandas as pa

    def high_ok(df):
        ok = df["high"] * (1 + _TOL) >= df[["open", "close"]].max(axis=1)
        return ok | df[["open", "high", "close"]].isna().any(axis=1)

    def low_ok(df):
        ok = df["low"] * (1 - _TOL) <= df[["open", "close"]].min(axis=1)
        return ok | df[["open", "low", "close"]].isna().any(axis=1)

    return [pa.Check(high_ok, name="high_ge_max_open_close", error="high < max(open, close)"),
            pa.Check(low_ok, name="low_le_min_open_close", error="low > min(open, close)")]


def schema_for(table: str, now: pd.Timestamp | None = None, unique: bool = True) -> pa.DataFrameSchema:
    """The schema of `table`; `unique=False` leaves out the key check (first pass of `validate`)."""
    import pandas as pd
    import pandera.pandas as pa

    now = now or pd.Timestamp.now(tz="UTC")
    ts = pa.Column(pd.DatetimeTZDtype("us", "UTC"), nullable=False, checks=_not_future(now))
    text = lambda nullable=False, n=64: pa.Column(  # noqa: E731  (object or str dtype: both fine)
        None, nullable=nullable, checks=pa.Check.str_length(1, n))
    price = pa.Column(float, nullable=False, checks=pa.Check.gt(0, error="price must be > 0"))
    columns = {
        "bars": {
            "ts": ts, "symbol": text(), "asset_class": pa.Column(None, pa.Check.isin(ASSET_CLASSES)),
            "freq": pa.Column(None, _canonical_freq()),
            "open": price, "high": price, "low": price, "close": price,
            "volume": pa.Column(float, nullable=True, checks=pa.Check.ge(0, error="volume must be >= 0")),
        },
        "news_events": {
            "ts": ts, "source": text(), "symbol": text(nullable=True), "headline": text(n=20_000),
            "sentiment": pa.Column(float, nullable=False, checks=pa.Check.in_range(-1.0, 1.0)),
        },
        "macro_events": {
            "ts": ts, "source": text(), "event_type": text(n=120),
            "policy_surprise": pa.Column(float, nullable=True, checks=pa.Check.in_range(-5.0, 5.0)),
        },
        "symbols": {"symbol": text(), "asset_class": pa.Column(None, pa.Check.isin(ASSET_CLASSES)),
                    "sector": text(nullable=True, n=120), "company": text(nullable=True, n=200)},
        "trades": {  # the rows of a trades source, before they are aggregated into bars (ingest/trades.py)
            "ts": ts, "symbol": text(), "price": price,
            "amount": pa.Column(float, nullable=True, checks=pa.Check.ge(0, error="amount must be >= 0")),
        },
    }[table]
    return pa.DataFrameSchema(
        columns,
        checks=_ohlc_checks() if table == "bars" else None,
        unique=KEYS.get(table) if unique else None,
        report_duplicates="exclude_first",
        name=table,
    )
