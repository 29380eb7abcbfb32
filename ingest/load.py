"""Read the sources of one table (and asset class) and split their rows: the ingest entry point."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ingest.catalog import SourceSpec
from ingest.readers import ReadResult, read_source
from ingest.validate import QUARANTINE_COLUMNS, Split, quarantine_rows, split

if TYPE_CHECKING:
    import pandas as pd


@dataclasses.dataclass
class Loaded:
    table: str
    results: list[ReadResult]
    split: Split

    def reconciliation(self) -> pd.DataFrame:
        """Per source: rows read, accepted, quarantined; read == accepted + quarantined always.

        The rows of a trades source are trades: accepted = the trades in its stored bars, and
        `rows_stored` = those bars (for every other source rows_stored = rows_accepted)."""
        import pandas as pd

        counts = self.split.counts([r.spec.name for r in self.results])
        rows = []
        for r in self.results:
            stored, quarantined = counts[r.spec.name]
            accepted = stored
            if r.spec.kind == "trades":
                accepted = int(self.split.accepted.loc[self.split.accepted["source"] == r.spec.name, "trades"].sum())
            rows.append({"source": r.spec.name, "table_name": self.table, "asset_class": r.spec.asset_class,
                         "path": str(r.spec.path), "kind": r.spec.row_table, "rows_read": r.rows_read,
                         "rows_accepted": accepted, "rows_quarantined": quarantined, "rows_stored": stored})
        frame = pd.DataFrame(rows, columns=["source", "table_name", "asset_class", "path", "kind", "rows_read",
                                            "rows_accepted", "rows_quarantined", "rows_stored"])
        broken = frame[frame.rows_read != frame.rows_accepted + frame.rows_quarantined]
        if len(broken):  # a bug, never bad input: refuse to write anything
            raise AssertionError(f"rows lost between read and write: {broken.to_dict('records')}")
        return frame


@dataclasses.dataclass
class _Trades:
    """One trades source on its way into bars: its read, its trade split, and each accepted trade's bar."""

    result: ReadResult
    split: Split
    bar_of: pd.Series  # accepted trade index -> source_row of its bar


def load_sources(specs: list[SourceSpec], table: str, max_rows: int | None = None) -> Loaded:
    """Read every spec (catalog order = priority), add derived columns, validate, split.

    A trades source is validated trade by trade first (bad trades go to quarantine), its accepted trades
    become bars (ingest/trades.py), and those bars are then checked and deduplicated with every other source's."""
    import pandas as pd

    from ingest.trades import aggregate

    results = [read_source(s, max_rows=max_rows) for s in specs]
    parts, trades = [], {}
    for res in results:
        part = res.frame
        if res.spec.kind == "trades":
            own = split([res], part, table, rows="trades")
            accepted = part.loc[own.accepted.index]  # same index: keeps _raw_idx for the raw text
            bars, bar_of = aggregate(accepted, res.spec.freq)
            trades[res.spec.name] = _Trades(res, own, bar_of)
            part = bars.assign(source=res.spec.name, parse_errors="")
        if table in ("bars", "symbols"):
            part = part.assign(asset_class=res.spec.asset_class)
        if table == "bars":
            part = part.assign(freq=res.spec.freq)
        parts.append(part)
    if not parts:
        return Loaded(table=table, results=[], split=Split(pd.DataFrame(), pd.DataFrame(columns=QUARANTINE_COLUMNS)))
    frame = pd.concat(parts, ignore_index=True)
    if table == "news_events" and len(frame):
        from ingest.sentiment import score

        frame["sentiment"] = score(frame["headline"])
    out = split(results, frame, table)
    if trades:
        out = _trades_quarantined(out, trades, table)
    return Loaded(table=table, results=results, split=out)


def _trades_quarantined(out: Split, trades: dict[str, _Trades], table: str) -> Split:
    """Quarantine holds trades for a trades source: its bad trades, and every trade of a bar that was
    quarantined (e.g. a duplicate key kept from another source), each with its own raw line."""
    import pandas as pd

    q = out.quarantined
    parts = [q[~q["source"].isin(list(trades))]]
    for name, t in trades.items():
        bars = q[q["source"] == name]
        members = t.bar_of[t.bar_of.isin(bars["source_row"])]
        why = bars.set_index("source_row")["reasons"]
        reasons = pd.Series(f"its {t.result.spec.freq} bar was quarantined: " + why.loc[members].to_numpy(),
                            index=members.index)
        parts += [t.split.quarantined, quarantine_rows([t.result], t.result.frame.loc[members.index], reasons, table)]
    parts = [p for p in parts if len(p)]
    quarantined = pd.concat(parts, ignore_index=True) if parts else q.iloc[0:0]
    return Split(accepted=out.accepted, quarantined=quarantined)
