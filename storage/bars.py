"""The `bars` table of one asset class: read in series order, and written as one partition with its reference
symbols and the per-frequency summary the asset page shows."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import pandas as pd

from storage.queries import Query, write_loaded

if TYPE_CHECKING:
    from ingest.load import Loaded


def read_bars(query: Query, asset_class: str) -> pd.DataFrame:
    """Every stored bar of the class, ordered by symbol, freq and ts (empty when none is loaded)."""
    return query("SELECT * FROM bars WHERE asset_class = ? ORDER BY symbol, freq, ts", [asset_class])


class BarsWritten(NamedTuple):
    recon: pd.DataFrame  # per bar source: rows read, accepted, quarantined, stored (`write_loaded`)
    recon_refs: pd.DataFrame | None  # per reference (symbols) source; None when the class has none
    summary: pd.DataFrame  # per freq: bars, symbols, first_ts, last_ts of the class now stored


def write_bars(con, bars: Loaded, refs: Loaded, asset_class: str, run_id: str) -> BarsWritten:
    """Replace the class's partition of `bars` and `symbols` (inside the caller's transaction): the loaded bars,
    the loaded reference rows, and a bare `symbols` row (source 'bars') for every bar symbol without one."""
    scope = {"asset_class": asset_class}
    recon = write_loaded(con, bars, scope, run_id)
    con.execute("DELETE FROM symbols WHERE asset_class = ?", [asset_class])
    recon_refs = write_loaded(con, refs, scope, run_id) if refs.results else None
    con.execute("""INSERT INTO symbols SELECT DISTINCT symbol, asset_class, NULL, NULL, 'bars' FROM bars
                   WHERE asset_class = ? AND symbol NOT IN (SELECT symbol FROM symbols WHERE asset_class = ?)""",
                [asset_class, asset_class])
    summary = con.execute("""SELECT freq, count(*) AS bars, count(DISTINCT symbol) AS symbols,
                                    min(ts) AS first_ts, max(ts) AS last_ts
                             FROM bars WHERE asset_class = ? GROUP BY freq ORDER BY freq""", [asset_class]).df()
    return BarsWritten(recon, recon_refs, summary)
