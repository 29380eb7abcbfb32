"""Read the sources of one table (and asset class) and split their rows: the ingest entry point."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ingest.catalog import SourceSpec
from ingest.readers import ReadResult, read_source
from ingest.validate import QUARANTINE_COLUMNS, Split, split

if TYPE_CHECKING:
    import pandas as pd


@dataclasses.dataclass
class Loaded:
    table: str
    results: list[ReadResult]
    split: Split

    def reconciliation(self) -> "pd.DataFrame":
        """Per source: rows read, accepted, quarantined; read == accepted + quarantined always."""
        import pandas as pd

        counts = self.split.counts([r.spec.name for r in self.results])
        rows = [{"source": r.spec.name, "table_name": self.table, "asset_class": r.spec.asset_class,
                 "path": str(r.spec.path), "rows_read": r.rows_read,
                 "rows_accepted": counts[r.spec.name][0], "rows_quarantined": counts[r.spec.name][1]}
                for r in self.results]
        frame = pd.DataFrame(rows)
        broken = frame[frame.rows_read != frame.rows_accepted + frame.rows_quarantined]
        if len(broken):  # a bug, never bad input: refuse to write anything
            raise AssertionError(f"rows lost between read and write: {broken.to_dict('records')}")
        return frame


def load_sources(specs: list[SourceSpec], table: str, max_rows: int | None = None) -> Loaded:
    """Read every spec (catalog order = priority), add derived columns, validate, split."""
    import pandas as pd

    results = [read_source(s, max_rows=max_rows) for s in specs]
    parts = []
    for res in results:
        part = res.frame
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
    return Loaded(table=table, results=results, split=split(results, frame, table))
