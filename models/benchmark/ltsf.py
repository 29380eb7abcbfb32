"""Read a benchmark file: the wide LTSF format (a date column and one numeric column per series, as in
ETT, Exchange, Weather, ECL) or the long format (``unique_id, ds, y``). Bad files raise :class:`LTSFError`
naming the file, the row (1-based line number, header = line 1) and the column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

LONG_COLUMNS = ("unique_id", "ds", "y")


class LTSFError(ValueError):
    """A benchmark CSV that cannot be used, with file / line / column in the message."""


def read_benchmark_csv(path: str | Path, *, date_col: str = "date", freq: str | None = None) -> pd.DataFrame:
    """Long frame ``unique_id, ds, y`` (sorted) from a wide or long CSV; ``attrs['freq']`` is the frequency
    (``freq`` or the one pandas infers from the dates)."""
    from ingest.readers import SourceFileError, open_data, read_header

    path = Path(path)
    try:  # read as every source file is: missing, a FIFO, a compression bomb or a huge first line is refused
        header = read_header(path)
        with open_data(path) as fh:
            raw = pd.read_csv(fh, dtype=str, keep_default_na=False)
    except SourceFileError as exc:
        raise LTSFError(str(exc)) from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError, EOFError, OSError) as exc:
        raise LTSFError(f"{path}: not a readable CSV ({exc})") from None
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:  # pandas would rename the second one 'A.1' and benchmark it as a series of its own
        raise LTSFError(f"{path}: column(s) {twice} appear more than once in the header")
    if raw.empty:
        raise LTSFError(f"{path}: no data rows")
    long = _from_long(path, raw) if set(LONG_COLUMNS) <= set(raw.columns) else _from_wide(path, raw, date_col)
    long = long.sort_values(["unique_id", "ds"], ignore_index=True)
    dup = long.duplicated(["unique_id", "ds"], keep=False)
    if dup.any():
        first = long[dup].iloc[0]
        raise LTSFError(f"{path}: duplicate timestamp {first.ds} for series {first.unique_id!r}")
    long.attrs["freq"] = freq or _infer_freq(path, long)
    return long


def _numbers(path: Path, values: pd.Series, column: str) -> np.ndarray:
    parsed = pd.to_numeric(values.str.strip().replace({"": None, "NaN": None, "nan": None}), errors="coerce")
    bad = parsed.isna() | ~np.isfinite(parsed.astype(float).fillna(0))
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise LTSFError(f"{path}: line {row + 2}, column {column!r}: not a finite number {values.iloc[row]!r}")
    return parsed.to_numpy(dtype=float)


def _dates(path: Path, values: pd.Series, column: str) -> pd.Series:
    parsed = pd.to_datetime(values.str.strip(), errors="coerce", utc=True, format="mixed")
    if parsed.isna().any():
        row = int(parsed.isna().to_numpy().nonzero()[0][0])
        raise LTSFError(f"{path}: line {row + 2}, column {column!r}: not a date {values.iloc[row]!r}")
    return parsed.dt.tz_localize(None)


def _from_wide(path: Path, raw: pd.DataFrame, date_col: str) -> pd.DataFrame:
    if date_col not in raw.columns:
        raise LTSFError(f"{path}: no date column {date_col!r} (columns: {list(raw.columns)[:8]}); pass --date-col, "
                        f"or use the long format {', '.join(LONG_COLUMNS)}")
    series = [c for c in raw.columns if c != date_col]
    if not series:
        raise LTSFError(f"{path}: no value columns besides {date_col!r}")
    ds = _dates(path, raw[date_col], date_col)
    parts = [pd.DataFrame({"unique_id": str(c), "ds": ds, "y": _numbers(path, raw[c], c)}) for c in series]
    return pd.concat(parts, ignore_index=True)


def _from_long(path: Path, raw: pd.DataFrame) -> pd.DataFrame:
    ids = raw["unique_id"].str.strip()
    if (ids == "").any():
        row = int((ids == "").to_numpy().nonzero()[0][0])
        raise LTSFError(f"{path}: line {row + 2}, column 'unique_id': empty")
    return pd.DataFrame({"unique_id": ids, "ds": _dates(path, raw["ds"], "ds"), "y": _numbers(path, raw["y"], "y")})


def _infer_freq(path: Path, long: pd.DataFrame) -> str:
    first = long[long["unique_id"] == long["unique_id"].iloc[0]]["ds"]
    if len(first) < 3:
        raise LTSFError(f"{path}: a series needs at least 3 rows to infer its frequency; pass --freq")
    freq = pd.infer_freq(first.iloc[: min(len(first), 500)])
    if freq is None:
        step = first.diff().mode().iloc[0]
        freq = pd.tseries.frequencies.to_offset(step).freqstr
    return freq
