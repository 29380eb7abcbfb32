"""Trades (ts, symbol, price, amount) -> OHLCV bars of one frequency, aggregated in DuckDB SQL.

A bar starts at its `time_bucket`; open and close are the first and last trade by (ts, source row), so trades
with the same timestamp keep the order of the file; high and low are the extreme prices; volume is the sum of
the amounts (NULL when no trade of the bar has one). Each bar carries the source row (and raw index) of its
opening trade, unique per bar, and how many trades it holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ingest.catalog import freq_step

if TYPE_CHECKING:
    import pandas as pd

BAR_COLUMNS = ["ts", "symbol", "open", "high", "low", "close", "volume", "source_row", "_raw_idx", "trades"]

_TAGGED = """
    SELECT *, time_bucket(?::INTERVAL, ts) AS bar_ts,
           first(source_row) OVER (PARTITION BY symbol, time_bucket(?::INTERVAL, ts)
                                   ORDER BY ts, source_row) AS bar_row
    FROM trades"""
_BARS = f"""
    SELECT bar_ts AS ts, symbol, arg_min(price, (ts, source_row)) AS open, max(price) AS high,
           min(price) AS low, arg_max(price, (ts, source_row)) AS close, sum(amount) AS volume,
           min(bar_row) AS source_row, arg_min(_raw_idx, (ts, source_row)) AS _raw_idx, count(*) AS trades
    FROM ({_TAGGED}) GROUP BY symbol, bar_ts ORDER BY symbol, bar_ts"""


def aggregate(trades: pd.DataFrame, freq: str) -> tuple[pd.DataFrame, pd.Series]:
    """Bars of `freq` from the accepted trades of one source (ts, symbol, price, amount, source_row, _raw_idx),
    and for each trade (same index) the `source_row` of the bar it went into."""
    import duckdb
    import pandas as pd

    step = freq_step(freq).to_pytimedelta()
    staged = trades[["ts", "symbol", "price", "amount", "source_row", "_raw_idx"]].assign(_i=trades.index)
    with duckdb.connect() as con:  # in memory: nothing here touches the warehouse
        con.execute("SET TimeZone = 'UTC'")
        con.register("trades", staged)
        bars = con.execute(_BARS, [step, step]).df()
        bar_of = con.execute(f"SELECT _i, bar_row FROM ({_TAGGED})", [step, step]).df()
    bars["ts"] = bars["ts"].astype("datetime64[us, UTC]")
    bars["volume"] = bars["volume"].astype("float64")
    return bars[BAR_COLUMNS], pd.Series(bar_of["bar_row"].to_numpy(), index=bar_of["_i"].to_numpy()).sort_index()
