"""Read one source file into canonical columns, keeping every row and the raw text.

Nothing is dropped here: a value that cannot be parsed becomes missing and its row carries a
`parse_errors` message; validation then sends that row to quarantine. Whole-file problems
(missing, not text, not CSV, missing column) raise `SourceFileError` naming the file.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.catalog import SourceSpec

if TYPE_CHECKING:
    import pandas as pd

# canonical columns per table: name -> kind
TABLE_COLUMNS: dict[str, dict[str, str]] = {
    "bars": {"ts": "ts", "symbol": "str", "open": "num", "high": "num", "low": "num",
             "close": "num", "volume": "num"},
    "news_events": {"ts": "ts", "symbol": "str", "headline": "str"},
    "macro_events": {"ts": "ts", "event_type": "str", "scheduled": "bool", "unscheduled": "bool",
                     "press_conference": "bool", "policy_surprise": "num"},
    "symbols": {"symbol": "str", "sector": "str", "company": "str"},
}
# columns a file must map (or set as constants) for each table
REQUIRED_COLUMNS = {
    "bars": ("ts", "symbol", "close"),
    "news_events": ("ts", "headline"),
    "macro_events": ("ts", "event_type"),
    "symbols": ("symbol",),
}
_TRUE, _FALSE = {"1", "true", "yes", "y", "t"}, {"0", "false", "no", "n", "f"}


class SourceFileError(ValueError):
    """The file as a whole cannot be read; the message names the file and the problem."""


@dataclasses.dataclass
class ReadResult:
    spec: SourceSpec
    frame: "pd.DataFrame"  # canonical columns + source, source_row, parse_errors, _raw_idx
    raw: "pd.DataFrame"    # the file's rows as text, indexed by _raw_idx
    rows_read: int         # data rows in the file (a wide row counts once per symbol)


def _read_text_table(path: Path, header: bool, nrows: int | None = None) -> "pd.DataFrame":
    """All cells as strings; a line with the wrong number of fields is kept and flagged."""
    import pandas as pd

    if not path.exists():
        raise SourceFileError(f"{path}: file not found")
    if path.is_dir():
        raise SourceFileError(f"{path}: is a directory, not a file")
    opts = dict(dtype=str, keep_default_na=False, header=0 if header else None, compression="infer", nrows=nrows)
    try:
        return pd.read_csv(path, **opts)
    except pd.errors.ParserError:
        return _read_ragged(path, header).head(nrows)  # some lines have too many/few fields
    except UnicodeDecodeError as exc:
        raise SourceFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except pd.errors.EmptyDataError:
        raise SourceFileError(f"{path}: file is empty (no header, no rows)") from None
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        raise SourceFileError(f"{path}: cannot be decompressed/read ({exc})") from None


def _read_ragged(path: Path, header: bool) -> "pd.DataFrame":
    """Slow path for files with ragged lines: such rows keep their text in `_ragged`."""
    import pandas as pd

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise SourceFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise SourceFileError(f"{path}: not a valid CSV ({exc})") from None
    if not rows:
        raise SourceFileError(f"{path}: file is empty (no header, no rows)")
    names = rows.pop(0) if header else [str(i) for i in range(len(rows[0]))]
    width = len(names)
    good, ragged = [], []
    for r in rows:
        good.append(r if len(r) == width else [""] * width)
        ragged.append("" if len(r) == width else f"expected {width} fields, found {len(r)}: {','.join(r)[:200]}")
    frame = pd.DataFrame(good, columns=names if header else list(range(width)), dtype=str)
    frame["_ragged"] = ragged
    return frame


def read_source(spec: SourceSpec, max_rows: int | None = None) -> ReadResult:
    """Read `spec.path` into the canonical columns of `spec.table`."""
    import pandas as pd

    raw = _read_text_table(spec.path, spec.header, max_rows)
    if raw.shape[1] == 1 and spec.header and len(REQUIRED_COLUMNS[spec.table]) > 1 and raw.columns[0] not in spec.columns.values():
        raise SourceFileError(
            f"{spec.path}: found a single column {str(raw.columns[0])[:60]!r}: not a comma-separated file?")
    raw = raw.reset_index(drop=True)
    frame = _wide_to_long(spec, raw) if spec.layout == "wide" else _map_columns(spec, raw)
    frame = _parse(spec, frame, raw)  # row order is kept: the warehouse orders by ts on read
    return ReadResult(spec=spec, frame=frame.reset_index(drop=True), raw=raw, rows_read=len(frame))


def _map_columns(spec: SourceSpec, raw: "pd.DataFrame") -> "pd.DataFrame":
    import pandas as pd

    wanted = TABLE_COLUMNS[spec.table]
    unknown = set(spec.columns) - set(wanted)
    if unknown:
        raise SourceFileError(f"{spec.path}: mapping names unknown column(s) {sorted(unknown)} for table {spec.table}")
    cols = {c if spec.header else int(c) for c in spec.columns.values()}
    have = set(raw.columns)
    missing = sorted(str(c) for c in cols - have)
    if missing:
        raise SourceFileError(
            f"{spec.path}: missing required column(s) {missing}; the file has {[str(c) for c in raw.columns][:20]}")
    absent = [c for c in REQUIRED_COLUMNS[spec.table] if c not in spec.columns and c not in spec.constants]
    if absent:
        raise SourceFileError(f"{spec.path}: source '{spec.name}' maps no column to {absent} (table {spec.table})")
    out = pd.DataFrame(index=raw.index)
    for canon in wanted:
        if canon in spec.columns:
            col = spec.columns[canon] if spec.header else int(spec.columns[canon])
            out[canon] = raw[col]
        elif canon in spec.constants:
            out[canon] = str(spec.constants[canon])
    out["_raw_idx"] = raw.index
    out["source_row"] = raw.index + 1
    return out


def _wide_to_long(spec: SourceSpec, raw: "pd.DataFrame") -> "pd.DataFrame":
    import pandas as pd

    symbols = list(spec.wide["symbols"])
    if raw.shape[1] != len(symbols):
        raise SourceFileError(f"{spec.path}: wide layout expects {len(symbols)} columns {symbols}, found {raw.shape[1]}")
    dates = pd.bdate_range(spec.wide["start"], periods=len(raw)) if spec.wide["index_freq"] == "B" else \
        pd.date_range(spec.wide["start"], periods=len(raw), freq=spec.wide["index_freq"])
    value = spec.wide.get("value", "close")
    parts = []
    for i, sym in enumerate(symbols):
        part = pd.DataFrame({"ts": dates.strftime("%Y-%m-%d %H:%M:%S"), "symbol": sym, value: raw.iloc[:, i].values})
        part["_raw_idx"] = raw.index
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    for col in ("open", "high", "low", "close"):
        out[col] = out[value]
    out["volume"] = ""
    out["source_row"] = out["_raw_idx"] + 1
    return out


def _parse(spec: SourceSpec, frame: "pd.DataFrame", raw: "pd.DataFrame") -> "pd.DataFrame":
    import pandas as pd

    errors = pd.Series("", index=frame.index, dtype=object)
    if "_ragged" in raw:
        ragged = raw["_ragged"].reindex(frame["_raw_idx"]).to_numpy()
        errors = errors.where(ragged == "", "row: " + pd.Series(ragged, index=frame.index))
    na = set(spec.na_values) | {"", "NaN", "nan", "NA", "N/A", "null", "NULL", "None"}
    for col, kind in TABLE_COLUMNS[spec.table].items():
        if col not in frame:
            frame[col] = None if kind != "num" else float("nan")
            continue
        text = frame[col].astype(object).where(frame[col].notna(), "").astype(str).str.strip()
        missing = text.isin(na)
        if kind == "num":
            parsed = pd.to_numeric(text.where(~missing), errors="coerce")
            bad = ~missing & parsed.isna()
            frame[col] = parsed.astype("float64")
            errors = _add(errors, bad, col + ": not a number " + _quote(text))
        elif kind == "bool":
            low = text.str.lower()
            frame[col] = low.map(lambda v: True if v in _TRUE else (False if v in _FALSE else None)).astype(object)
            errors = _add(errors, ~missing & frame[col].isna(), col + ": not a boolean " + _quote(text))
        elif kind == "str":
            frame[col] = text.where(~missing, None).astype(object)
        else:
            frame[col] = _parse_ts(spec, text.where(~missing), frame.get("symbol"))
            errors = _add(errors, ~missing & frame[col].isna(),
                          "ts: not a valid timestamp " + _quote(text) + (f" (format {spec.ts_format})" if spec.ts_format else ""))
    frame["scheduled"] = _scheduled(frame) if spec.table == "macro_events" else frame.get("scheduled")
    frame["source"] = spec.name
    frame["parse_errors"] = errors.str.lstrip("; ")
    return frame


def _quote(text: "pd.Series") -> "pd.Series":
    return "'" + text.str.slice(0, 60) + "'"


def _add(errors: "pd.Series", mask: "pd.Series", message: "pd.Series") -> "pd.Series":
    return errors.where(~mask, errors + "; " + message)


def _scheduled(frame: "pd.DataFrame") -> "pd.Series":
    """scheduled = the file's flag, else the negation of its `unscheduled` flag."""
    sched = frame["scheduled"].astype(object)
    from_unsched = frame["unscheduled"].map(lambda v: None if v is None else (not v))
    return sched.where(sched.notna(), from_unsched)


def _parse_ts(spec: SourceSpec, text: "pd.Series", symbols: "pd.Series | None") -> "pd.Series":
    """Timestamps to UTC: epoch s/ms, explicit offsets kept, naive values read in the source's zone."""
    import pandas as pd

    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
    if spec.ts_format == "epoch":
        num = pd.to_numeric(text, errors="coerce")
        ms = num.abs() >= 1e11  # 1e11 s is year 5138; anything larger is milliseconds
        secs = num.where(~ms, num / 1000.0)
        return pd.to_datetime(secs, unit="s", utc=True, errors="coerce").astype("datetime64[us, UTC]")
    fmt = spec.ts_format or "ISO8601"
    aware = text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True, na=False)
    if aware.any():
        out[aware] = pd.to_datetime(text[aware], format=fmt, utc=True, errors="coerce")
    naive = ~aware & text.notna()
    if naive.any():
        local = pd.to_datetime(text[naive], format=fmt, errors="coerce")
        if spec.default_time:
            local = local + pd.Timedelta(spec.default_time if spec.default_time.count(":") == 2 else spec.default_time + ":00")
        zones = pd.Series(spec.timezone, index=local.index)
        if spec.timezone_by_symbol and symbols is not None:
            zones = symbols[naive].map(spec.timezone_by_symbol).fillna(spec.timezone)
        for zone in zones.unique():
            sel = zones.index[zones == zone]
            out[sel] = local[sel].dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    return out
