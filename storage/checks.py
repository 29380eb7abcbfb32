"""The warehouse queries the ingest asset checks run: counts reconciliation (read = accepted + quarantined, and
both match the tables), OHLC consistency, gaps between bars, per-series coverage and the sentiment range. Each
takes ``query`` (``(sql, params) -> DataFrame``, e.g. `resources.Warehouse.query`) and returns what the check
judges; the pass/fail rule beside it."""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from ingest.gaps import max_gap
from storage.queries import Query
from storage.schema import COLUMNS

MIN_SERIES_BARS = 30  # a series with fewer bars is thin
MAX_BEHIND = "90D"  # a series that stops longer before the latest bar of its frequency is stale


def reconcile(query: Query, tables: list[str], asset_class: str | None = None) -> pd.DataFrame:
    """Per source: the load record (`source_loads`) of each of ``tables`` next to what the table and `quarantine`
    actually hold, with ``ok`` = rows read = accepted + quarantined, stored rows all in the table and quarantined
    rows all in `quarantine`. ``asset_class`` None: every class."""
    unknown = [t for t in tables if t not in COLUMNS]
    if unknown:  # the names go into the SQL text: only the warehouse's own tables
        raise ValueError(f"not warehouse tables: {unknown}")
    where, params = ("AND l.asset_class = ?", [asset_class]) if asset_class else ("", [])
    parts = [query(
        f"""SELECT l.source, l.table_name, l.rows_read, l.rows_accepted, l.rows_quarantined,
                   coalesce(l.rows_stored, l.rows_accepted) AS rows_stored,
                   (SELECT count(*) FROM {table} t WHERE t.source = l.source) AS stored,
                   (SELECT count(*) FROM quarantine q WHERE q.source = l.source
                       AND q.table_name = l.table_name) AS in_quarantine
            FROM source_loads l WHERE l.table_name = ? {where} ORDER BY l.source""", [table, *params])
        for table in tables]
    frame = pd.concat(parts, ignore_index=True)
    frame["ok"] = ((frame.rows_read == frame.rows_accepted + frame.rows_quarantined)
                   & (frame.rows_stored == frame.stored) & (frame.rows_quarantined == frame.in_quarantine))
    return frame


def ohlc_violations(query: Query, asset_class: str, limit: int = 20) -> pd.DataFrame:
    """Up to ``limit`` bars of the class with a price <= 0, or low above / high below open or close (1e-9 relative
    tolerance); empty when every bar is consistent."""
    return query(
        f"""SELECT symbol, freq, ts, open, high, low, close FROM bars WHERE asset_class = ? AND
           (least(open, high, low, close) <= 0 OR high < greatest(open, close) * (1 - 1e-9)
            OR low > least(open, close) * (1 + 1e-9)) LIMIT {int(limit)}""", [asset_class])


class Gaps(NamedTuple):
    series: pd.DataFrame  # per (symbol, freq): max_gap, gap_after (the bar before it), bars
    large: pd.DataFrame  # the series whose largest gap exceeds `ingest.gaps.max_gap`, largest first


def large_gaps(query: Query, asset_class: str) -> Gaps:
    """The largest gap between consecutive bars of every series of the class, and those larger than normal for
    the class and frequency (weekends and holidays allowed)."""
    series = query(
        """SELECT symbol, freq, max(gap) AS max_gap, arg_max(prev_ts, gap) AS gap_after, count(*) AS bars FROM (
             SELECT symbol, freq, ts, lag(ts) OVER w AS prev_ts, ts - lag(ts) OVER w AS gap
             FROM bars WHERE asset_class = ? WINDOW w AS (PARTITION BY symbol, freq ORDER BY ts))
           GROUP BY symbol, freq ORDER BY symbol, freq""", [asset_class])
    limit = series.freq.map(lambda f: max_gap(asset_class, f))
    large = series[pd.to_timedelta(series.max_gap) > limit].sort_values("max_gap", ascending=False)
    return Gaps(series, large)


class Coverage(NamedTuple):
    series: pd.DataFrame  # per (symbol, freq): bars, first_ts, last_ts, behind_latest
    thin_or_stale: pd.DataFrame  # fewer than MIN_SERIES_BARS bars, or ending over MAX_BEHIND before the latest


def coverage(query: Query, asset_class: str) -> Coverage:
    """Bars per series of the class and how far each ends before the latest bar of its frequency; the thin
    (< ``MIN_SERIES_BARS`` bars) or stale (more than ``MAX_BEHIND`` behind) ones."""
    series = query(
        """SELECT symbol, freq, count(*) AS bars, min(ts) AS first_ts, max(ts) AS last_ts,
                  max(max(ts)) OVER (PARTITION BY freq) - max(ts) AS behind_latest
           FROM bars WHERE asset_class = ? GROUP BY symbol, freq ORDER BY symbol""", [asset_class])
    thin = series[(series.bars < MIN_SERIES_BARS)
                  | (pd.to_timedelta(series.behind_latest) > pd.Timedelta(MAX_BEHIND))]
    return Coverage(series, thin)


def sentiment_violations(query: Query) -> int:
    """Stored news events with no sentiment, one outside [-1, 1], or an empty headline."""
    bad = query("""SELECT count(*) AS n FROM news_events WHERE sentiment IS NULL OR sentiment < -1
                   OR sentiment > 1 OR coalesce(length(headline), 0) = 0""", []).n.iloc[0]
    return int(bad)
