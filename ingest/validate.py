"""Split rows into accepted and quarantined, with every reason a row failed."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ingest.schemas import KEYS, schema_for

if TYPE_CHECKING:
    import pandas as pd

    from ingest.readers import ReadResult

MAX_RAW_CHARS = 4096  # of one quarantined row's raw text; a longer one is cut, with a marker and its length
QUARANTINE_COLUMNS = ["table_name", "source", "source_file", "source_row", "asset_class", "reasons", "raw"]


def cap_raw(text: str, limit: int = MAX_RAW_CHARS) -> str:
    """The raw row as kept in `quarantine.raw`: whole up to `limit` characters, else a JSON object with its first
    `limit` characters, `"truncated": true` and the original length (a 20 MB line is not stored whole)."""
    import json

    if len(text) <= limit:
        return text
    return json.dumps({"truncated": True, "original_length": len(text), "head": text[:limit]})


class SchemaMismatch(ValueError):
    """The frame as a whole does not fit the schema (a column is missing or of the wrong type)."""


@dataclasses.dataclass
class Split:
    accepted: pd.DataFrame
    quarantined: pd.DataFrame  # QUARANTINE_COLUMNS

    def counts(self, sources: list[str]) -> dict[str, tuple[int, int]]:
        """source -> (accepted, quarantined)."""
        acc = self.accepted["source"].value_counts() if "source" in self.accepted else {}
        qua = self.quarantined["source"].value_counts() if "source" in self.quarantined else {}
        return {s: (int(acc.get(s, 0)), int(qua.get(s, 0))) for s in sources}


def row_failures(frame: pd.DataFrame, schema) -> pd.Series:
    """Reason text per failing row index ('column: check (value)'); whole-frame failures raise."""
    import pandas as pd
    import pandera.errors as pe

    try:
        schema.validate(frame, lazy=True)
        return pd.Series(dtype=object)
    except pe.SchemaErrors as exc:
        cases = exc.failure_cases
    frame_level = cases[cases["index"].isna()]
    if len(frame_level):
        first = frame_level.iloc[0]
        raise SchemaMismatch(f"{schema.name}: {first['column']} failed {first['check']}: {first['failure_case']}")
    whole_row = cases["schema_context"] == "DataFrameSchema"  # wide checks list every column: one line
    cases = pd.concat([cases[~whole_row],
                       cases[whole_row].drop_duplicates(["index", "check"]).assign(column="row", failure_case="")])
    column = cases["column"].astype(object).where(cases["column"].notna(), "row").astype(str)
    check = cases["check"].astype(object).where(cases["check"].notna(), "check").astype(str)
    value = cases["failure_case"].astype(object).map(lambda v: f" ({str(v)[:60]})" if str(v) != "" else "")
    text = column + ": " + check + value
    return text.groupby(cases["index"].astype("int64")).agg("; ".join)


def split(results: list[ReadResult], frame: pd.DataFrame, table: str, rows: str | None = None) -> Split:
    """Validate `frame` (rows of `results`, in priority order) and split it; quarantined rows are filed under
    `table`. `rows` names the schema when the rows are not yet rows of `table` (the trades of a bars source).

    Pass 1 checks every row against the schema without the key check; pass 2 checks the rows that
    passed with the full schema, so a duplicate only loses to a row that is itself accepted.
    """
    rows = rows or table
    frame = frame.reset_index(drop=True)
    reasons = frame["parse_errors"].astype(object).copy()
    for res in results:
        if res.spec.row_table != rows:  # a source's required columns are those of the rows it was read as
            continue
        for col in res.spec.required:
            miss = (frame["source"] == res.spec.name) & frame[col].isna()
            reasons[miss] = reasons[miss] + f"; {col}: required for source {res.spec.name}"
    fails = row_failures(frame, schema_for(rows, unique=False))
    reasons.loc[fails.index] = reasons.loc[fails.index] + "; " + fails
    ok = reasons.str.strip("; ") == ""
    dupes = row_failures(frame[ok], schema_for(rows))
    if len(dupes):
        reasons.loc[dupes.index] = _duplicate_reasons(frame, ok, dupes.index, KEYS[rows])
    reasons = reasons.str.strip("; ")
    bad = reasons != ""
    quarantined = quarantine_rows(results, frame[bad], reasons[bad], table)
    return Split(accepted=frame[~bad].drop(columns=["parse_errors", "_raw_idx"]), quarantined=quarantined)


def _duplicate_reasons(frame, ok, dupe_index, keys) -> pd.Series:
    """'duplicate key (k1, k2): kept <source> row <n>' for rows that repeat an accepted key."""
    import pandas as pd

    clean = frame[ok]
    first = clean.drop_duplicates(keys, keep="first")
    first = pd.DataFrame({**{k: first[k] for k in keys},
                          "kept": first["source"] + " row " + first["source_row"].astype(str)})
    dup = clean.loc[dupe_index, keys].reset_index().merge(first, on=keys, how="left").set_index("index")
    return "duplicate key (" + ", ".join(keys) + "): kept " + dup["kept"]


def quarantine_rows(results, bad: pd.DataFrame, reasons: pd.Series, table: str) -> pd.DataFrame:
    """QUARANTINE_COLUMNS for the `bad` rows (source, source_row, _raw_idx) of `results`: reasons and raw text."""
    import pandas as pd

    parts = []
    for res in results:
        rows = bad[bad["source"] == res.spec.name]
        if rows.empty:
            continue
        raw = res.raw.drop(columns=["_ragged"], errors="ignore").loc[rows["_raw_idx"]]
        raw.columns = [str(c) for c in raw.columns]
        parts.append(pd.DataFrame({
            "table_name": table,
            "source": res.spec.name,
            "source_file": str(res.spec.path),
            "source_row": rows["source_row"].to_numpy(),
            "asset_class": res.spec.asset_class,
            "reasons": reasons[rows.index].to_numpy(),
            "raw": [cap_raw(line) for line in raw.to_json(orient="records", lines=True).splitlines()],
        }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=QUARANTINE_COLUMNS)
