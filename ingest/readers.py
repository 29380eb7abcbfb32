"""Read one source file into canonical columns, keeping every row and the raw text.

Nothing is dropped here: a value that cannot be parsed becomes missing and its row carries a
`parse_errors` message; validation then sends that row to quarantine. Whole-file problems
(missing, not text, not CSV, missing column, a compression bomb, a huge first line) raise `SourceFileError`
naming the file.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import dataclasses
import gzip
import io
import lzma
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
    "trades": {"ts": "ts", "symbol": "str", "price": "num", "amount": "num"},  # a trades source of `bars`
}
# columns a file must map (or set as constants) for each table
REQUIRED_COLUMNS = {
    "bars": ("ts", "symbol", "close"),
    "news_events": ("ts", "headline"),
    "macro_events": ("ts", "event_type"),
    "symbols": ("symbol",),
    "trades": ("ts", "symbol", "price"),
}
_TRUE, _FALSE = {"1", "true", "yes", "y", "t"}, {"0", "false", "no", "n", "f"}
# a compressed file (.gz, .bz2, .xz) may decompress to MAX_COMPRESSION_RATIO times its size (CSV exports compress
# 2-10x, the bundled files 2-5x), and always to DECOMPRESSED_FLOOR, but never past DECOMPRESSED_CAP: beyond, it is
# refused as a compression bomb
MAX_COMPRESSION_RATIO = 50
DECOMPRESSED_FLOOR = 32 * 2**20
DECOMPRESSED_CAP = 2 * 2**30
MAX_HEADER_CHARS = 2**20  # the first line (header) of a file; a longer one is no CSV header
MAX_COLUMNS = 4096  # fields of the first line (the widest LTSF set, traffic, has 863); pandas slows quadratically
_DECOMPRESS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


class SourceFileError(ValueError):
    """The file as a whole cannot be read; the message names the file and the problem."""


@dataclasses.dataclass
class ReadResult:
    spec: SourceSpec
    frame: pd.DataFrame  # canonical columns + source, source_row, parse_errors, _raw_idx
    raw: pd.DataFrame    # the file's rows as text, indexed by _raw_idx
    rows_read: int         # data rows in the file (a wide row counts once per symbol)


class _Capped(io.RawIOBase):
    """The decompressed bytes of `path`, refused once more than `limit` were read: counted while reading, never
    taken from the gzip trailer (its size field is mod 2**32 and can lie)."""

    def __init__(self, path: Path, stream, limit: int):
        self.path, self.stream, self.limit, self.seen = path, stream, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.stream.readinto(buffer)
        self.seen += n
        if self.seen > self.limit:
            raise SourceFileError(
                f"{self.path}: decompresses to more than {self.limit / 2**20:,.0f} MiB, over "
                f"{MAX_COMPRESSION_RATIO}x its compressed size (at least {DECOMPRESSED_FLOOR // 2**20} MiB, at most "
                f"{DECOMPRESSED_CAP // 2**30} GiB are read): a compression bomb? refusing to read further")
        return n

    def close(self) -> None:
        self.stream.close()
        super().close()


def open_data(path: Path):
    """`path` as a binary stream, decompressed by its suffix (.gz, .bz2, .xz) under the size limit above; every
    reader of a source file (catalog, registration, incoming folder, benchmark) opens it through here."""
    opener = _DECOMPRESS.get(path.suffix.lower())
    if opener is None:
        return open(path, "rb")
    limit = min(DECOMPRESSED_CAP, max(DECOMPRESSED_FLOOR, MAX_COMPRESSION_RATIO * path.stat().st_size))
    return io.BufferedReader(_Capped(path, opener(path, "rb"), limit))


@contextlib.contextmanager
def _reading(path: Path):
    """What a file that is not UTF-8 CSV text (or not the archive it claims) raises, as a SourceFileError."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise SourceFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise SourceFileError(f"{path}: not a valid CSV ({exc})") from None
    except (EOFError, OSError, lzma.LZMAError) as exc:  # gzip.BadGzipFile is an OSError
        raise SourceFileError(f"{path}: cannot be decompressed/read ({exc})") from None


def read_header(path: Path) -> list[str]:
    """The fields of the first non-blank line, read without reading further: a missing, special or empty file, a
    first line over MAX_HEADER_CHARS or MAX_COLUMNS fields, or undecodable text is a SourceFileError naming it."""
    path = Path(path)
    if not path.exists():
        raise SourceFileError(f"{path}: file not found")
    if path.is_dir():
        raise SourceFileError(f"{path}: is a directory, not a file")
    if not path.is_file():  # opening a FIFO would wait for a writer
        raise SourceFileError(f"{path}: not a regular file (a FIFO, socket or device)")
    with _reading(path), open_data(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as fh:
        line = "\n"
        while line and not line.strip():  # blank lines before the header are skipped (as pandas does)
            line = fh.readline(MAX_HEADER_CHARS + 1)
    if not line:
        raise SourceFileError(f"{path}: file is empty (no header, no rows)")
    if len(line) > MAX_HEADER_CHARS:
        raise SourceFileError(f"{path}: the first line is longer than {MAX_HEADER_CHARS:,} characters: not a CSV "
                              "header (one huge line?)")
    fields = next(csv.reader([line]), [])
    if len(fields) > MAX_COLUMNS:
        raise SourceFileError(f"{path}: the first line has {len(fields):,} fields, more than {MAX_COLUMNS:,}: not a "
                              "table this reader takes")
    return fields


def _read_text_table(path: Path, header: bool, nrows: int | None = None) -> pd.DataFrame:
    """All cells as strings; a line with the wrong number of fields is kept and flagged."""
    import pandas as pd

    opts = {"dtype": str, "keep_default_na": False, "header": 0 if header else None, "nrows": nrows}
    try:
        with _reading(path), open_data(path) as fh:
            return pd.read_csv(fh, **opts)
    except pd.errors.ParserError:
        return _read_ragged(path, header).head(nrows)  # some lines have too many/few fields
    except pd.errors.EmptyDataError:
        raise SourceFileError(f"{path}: file is empty (no header, no rows)") from None


def _read_ragged(path: Path, header: bool) -> pd.DataFrame:
    """Slow path for files with ragged lines: such rows keep their text in `_ragged`. A quoted field that never
    closes is refused (it would swallow the rest of the file into one field)."""
    import pandas as pd

    with _reading(path), open_data(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, strict=True)
        try:
            rows = list(reader)
        except csv.Error as exc:
            raise SourceFileError(f"{path}: not a valid CSV at line {reader.line_num} ({exc}; a quote never "
                                  "closed?)") from None
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
    _check_unchanged(spec)
    _check_zones(spec)
    names = read_header(spec.path)  # before pandas: a huge first line or a bomb stops here
    if spec.header:
        _no_duplicate_columns(spec, names)
    raw = _read_text_table(spec.path, spec.header, max_rows)
    if (raw.shape[1] == 1 and spec.header and len(REQUIRED_COLUMNS[spec.row_table]) > 1
            and raw.columns[0] not in spec.columns.values()):
        raise SourceFileError(
            f"{spec.path}: found a single column {str(raw.columns[0])[:60]!r}: not a comma-separated file?")
    raw = raw.reset_index(drop=True)
    frame = _wide_to_long(spec, raw) if spec.layout == "wide" else _map_columns(spec, raw)
    frame = _parse(spec, frame, raw)  # row order is kept: the warehouse orders by ts on read
    return ReadResult(spec=spec, frame=frame.reset_index(drop=True), raw=raw, rows_read=len(frame))


def _no_duplicate_columns(spec: SourceSpec, names: list[str]) -> None:
    """A column the source reads must be named once in the header (pandas would silently take the first)."""
    twice = sorted({n for n in names if names.count(n) > 1} & {str(c) for c in spec.columns.values()})
    if twice:
        raise SourceFileError(f"{spec.path}: column(s) {twice} appear more than once in the header: which one is "
                              "meant? rename or remove the others")


def _check_zones(spec: SourceSpec) -> None:
    """Every time zone of the source must be one pandas knows (else it would fail mid-read with a KeyError)."""
    import pandas as pd

    for zone in {spec.timezone, *spec.timezone_by_symbol.values()}:
        try:
            pd.Timestamp(0).tz_localize(zone)
        except (KeyError, ValueError, TypeError, AttributeError):
            raise SourceFileError(f"{spec.path}: source '{spec.name}': unknown time zone {zone!r}; use an IANA name "
                                  "such as UTC, Europe/Berlin or America/New_York") from None


def _check_unchanged(spec: SourceSpec) -> None:
    """A registered copy must be the file that was registered (a truncated or edited copy is refused)."""
    if spec.sha256 is None or not spec.path.is_file():
        return
    from ingest.files import sha256_of

    if sha256_of(spec.path) != spec.sha256:
        raise SourceFileError(f"{spec.path}: the file changed since it was registered (SHA-256 differs: truncated "
                              f"or edited?); register it again with `tradecast ingest`")


def _map_columns(spec: SourceSpec, raw: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    wanted = TABLE_COLUMNS[spec.row_table]
    unknown = set(spec.columns) - set(wanted)
    if unknown:
        raise SourceFileError(f"{spec.path}: mapping names unknown column(s) {sorted(unknown)} for {spec.row_table}")
    cols = {c if spec.header else int(c) for c in spec.columns.values()}
    have = set(raw.columns)
    missing = sorted(str(c) for c in cols - have)
    if missing:
        raise SourceFileError(
            f"{spec.path}: missing required column(s) {missing}; the file has {[str(c) for c in raw.columns][:20]}")
    absent = [c for c in REQUIRED_COLUMNS[spec.row_table] if c not in spec.columns and c not in spec.constants]
    if absent:
        raise SourceFileError(f"{spec.path}: source '{spec.name}' maps no column to {absent} ({spec.row_table})")
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


def _wide_to_long(spec: SourceSpec, raw: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    symbols = list(spec.wide["symbols"])
    if raw.shape[1] != len(symbols):
        raise SourceFileError(
            f"{spec.path}: wide layout expects {len(symbols)} columns {symbols}, found {raw.shape[1]}")
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


def _parse(spec: SourceSpec, frame: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    errors = pd.Series("", index=frame.index, dtype=object)
    if "_ragged" in raw:
        ragged = raw["_ragged"].reindex(frame["_raw_idx"]).to_numpy()
        errors = errors.where(ragged == "", "row: " + pd.Series(ragged, index=frame.index))
    na = set(spec.na_values) | {"", "NaN", "nan", "NA", "N/A", "null", "NULL", "None"}
    for col, kind in TABLE_COLUMNS[spec.row_table].items():
        if col not in frame:
            frame[col] = None if kind != "num" else float("nan")
            continue
        text = frame[col].astype(object).where(frame[col].notna(), "").astype(str).str.strip()
        missing = text.isin(na)
        if kind == "num":
            parsed = pd.to_numeric(text.where(~missing), errors="coerce").astype("float64")
            infinite = parsed.abs() == float("inf")  # 'inf', '1e400': no price, volume or surprise
            bad = ~missing & parsed.isna()
            frame[col] = parsed.where(~infinite)
            errors = _add(errors, bad, col + ": not a number " + _quote(text))
            errors = _add(errors, infinite, col + ": not a finite number " + _quote(text))
        elif kind == "bool":
            low = text.str.lower()
            frame[col] = low.map(lambda v: True if v in _TRUE else (False if v in _FALSE else None)).astype(object)
            errors = _add(errors, ~missing & frame[col].isna(), col + ": not a boolean " + _quote(text))
        elif kind == "str":
            frame[col] = text.where(~missing, None).astype(object)
            errors = _add(errors, text.str.contains("\x00", regex=False), col + ": contains a NUL byte (corrupt data)")
        else:
            frame[col], dst = _parse_ts(spec, text.where(~missing), frame.get("symbol"))
            errors = _add(errors, dst != "", "ts: local time " + _quote(text) + " does not exist or is ambiguous in "
                          + dst + " (a daylight-saving change)")
            errors = _add(errors, ~missing & frame[col].isna() & (dst == ""),
                          "ts: not a valid timestamp " + _quote(text)
                          + (f" (format {spec.ts_format})" if spec.ts_format else ""))
    frame["scheduled"] = _scheduled(frame) if spec.table == "macro_events" else frame.get("scheduled")
    frame["source"] = spec.name
    frame["parse_errors"] = errors.str.lstrip("; ")
    return frame


def _quote(text: pd.Series) -> pd.Series:
    return "'" + text.str.slice(0, 60) + "'"


def _add(errors: pd.Series, mask: pd.Series, message: pd.Series) -> pd.Series:
    return errors.where(~mask, errors + "; " + message)


def _scheduled(frame: pd.DataFrame) -> pd.Series:
    """scheduled = the file's own flag; else false where the file flags the row `unscheduled`; else unknown (None).
    "Not unscheduled" is not "scheduled": the MP1 file's Unscheduled=0 rows include open-market-operation days and
    an unscheduled meeting, and a feature read as known in advance must not take them for scheduled meetings."""
    sched = frame["scheduled"].astype(object)
    from_unsched = frame["unscheduled"].map(lambda v: False if v is True else None).astype(object)
    return sched.where(sched.notna(), from_unsched)


def _parse_ts(spec: SourceSpec, text: pd.Series, symbols: pd.Series | None) -> tuple[pd.Series, pd.Series]:
    """Timestamps to UTC: epoch s/ms, explicit offsets kept, naive values read in the source's zone; and per row
    the zone in which a naive value does not exist or is ambiguous (a daylight-saving change), else ''."""
    import pandas as pd

    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
    dst = pd.Series("", index=text.index, dtype=object)
    if spec.ts_format == "epoch":
        num = pd.to_numeric(text, errors="coerce")
        ms = num.abs() >= 1e11  # 1e11 s is year 5138; anything larger is milliseconds
        secs = num.where(~ms, num / 1000.0)
        return pd.to_datetime(secs, unit="s", utc=True, errors="coerce").astype("datetime64[us, UTC]"), dst
    fmt = spec.ts_format or "ISO8601"
    aware = text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True, na=False)
    if aware.any():
        out[aware] = pd.to_datetime(text[aware], format=fmt, utc=True, errors="coerce")
    naive = ~aware & text.notna()
    if naive.any():
        local = pd.to_datetime(text[naive], format=fmt, errors="coerce")
        if spec.default_time:
            local = local + pd.Timedelta(
                spec.default_time if spec.default_time.count(":") == 2 else spec.default_time + ":00")
        zones = pd.Series(spec.timezone, index=local.index)
        if spec.timezone_by_symbol and symbols is not None:
            zones = symbols[naive].map(spec.timezone_by_symbol).fillna(spec.timezone)
        for zone in zones.unique():
            sel = zones.index[zones == zone]
            zoned = local[sel].dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
            out[sel] = zoned.dt.tz_convert("UTC")
            dst[sel[(local[sel].notna() & zoned.isna()).to_numpy()]] = zone
    return out, dst
