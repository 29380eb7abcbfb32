"""`tradecast ingest FILE`: turn a one-off file into a catalog entry under $TRADECAST_HOME/sources/."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.catalog import (
    CatalogError,
    SourceSpec,
    canonical_freq,
    check_name,
    load_catalog,
    name_clash,
    spec_from_dict,
)
from ingest.files import atomic_copy, atomic_write_text, locked
from ingest.readers import (
    REQUIRED_COLUMNS,
    TABLE_COLUMNS,
    SourceFileError,
    read_header,
    read_source,
)
from resources.settings import Settings

_OFF_GRID_SHARE = 0.01  # at most this share of the gaps may be no whole multiple of the detected step
_DST_SLACK_S = 3600  # daily stamps at local midnight move by an hour across a DST change: still daily


def parse_mapping(text: str, table: str) -> dict[str, str]:
    """'ts=Date,close=Close' -> {'ts': 'Date', 'close': 'Close'} (canonical names checked)."""
    mapping = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        canon, sep, column = part.partition("=")
        if not sep or not canon.strip() or not column.strip():
            raise CatalogError(f"--map: '{part}' is not canonical=column")
        if canon.strip() not in TABLE_COLUMNS[table]:
            raise CatalogError(f"--map: '{canon.strip()}' is not a column of {table}; use {list(TABLE_COLUMNS[table])}")
        mapping[canon.strip()] = column.strip()
    return mapping


def infer_freq(spec: SourceSpec, given: str | None = None) -> str:
    """The file's bar frequency, canonically spelled: the most common positive step between consecutive timestamps
    of a symbol (all symbols pooled). Gaps (nights, weekends, holidays) must be whole multiples of it (at most 1%
    may not be); a step that is no bar frequency (sub-minute, over a day, not whole minutes) or irregular spacing is
    refused, naming the file and the spacing. `given` (the user's --freq) must equal the detected step: a file is
    never relabelled (a file with fewer than two timestamps per symbol takes `given` as it is)."""
    import pandas as pd

    frame = read_source(spec).frame.dropna(subset=["ts"]).sort_values(["symbol", "ts"], kind="stable")
    gaps = frame.groupby("symbol", dropna=False)["ts"].diff()
    positive = gaps > pd.Timedelta(0)  # a repeated timestamp is a duplicate row, not a spacing
    gaps, frame = gaps[positive], frame[positive]
    if gaps.empty:
        if given:
            return canonical_freq(given)
        raise SourceFileError(f"{spec.path}: cannot infer the bar frequency (fewer than two timestamps per symbol); "
                              "pass --freq")
    counts = gaps.value_counts()
    step = counts[counts == counts.max()].index.min()
    try:
        freq = canonical_freq(step)
    except CatalogError:
        raise SourceFileError(f"{spec.path}: detected spacing {_span(step)}: bars must be a whole number of minutes "
                              "from 1min to 1d; resample the file to such bars first") from None
    rest = gaps % step
    off = pd.concat([rest, step - rest], axis=1).min(axis=1).dt.total_seconds()
    bad = off > (_DST_SLACK_S if step >= pd.Timedelta("1D") else 0)
    if bad.sum() > _OFF_GRID_SHARE * len(gaps):
        first = bad.idxmax()
        raise SourceFileError(
            f"{spec.path}: irregular spacing: most common step {freq}, but {int(bad.sum())} of {len(gaps)} gaps are "
            f"not multiples of it (e.g. {_span(gaps[first])} at row {frame.at[first, 'source_row']}, symbol "
            f"{frame.at[first, 'symbol']}); resample the file to regular bars first")
    if given and canonical_freq(given) != freq:
        raise SourceFileError(f"{spec.path}: --freq {given} contradicts the file, whose detected spacing is {freq} "
                              f"(most common step between bars); pass --freq {freq} or leave --freq out")
    return freq


def _span(step) -> str:
    """A Timedelta in the largest whole unit: 45s, 7min, 90min, 3d."""
    seconds = step.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return str(step)


def register_file(file: str, *, table: str = "bars", asset_class: str | None = None, freq: str | None = None,
                  mapping: str = "", symbol: str | None = None, ts_format: str | None = None,
                  timezone: str = "UTC", name: str | None = None, trades: bool = False, bar: str | None = None,
                  settings: Settings | None = None) -> SourceSpec:
    """Check FILE, copy it under the user catalog and add (or replace) its entry; returns the spec.

    `trades=True`: FILE holds trades (ts, symbol, price, amount), aggregated into OHLCV bars of frequency `bar`.
    Nothing is written before every check passed, and only inside $TRADECAST_HOME/sources/."""
    settings = settings or Settings()
    src = Path(file).expanduser().resolve()
    header = read_header(src)  # bounded; says what is wrong: not found, a directory or FIFO, a huge line, a bomb
    if table == "bars" and not asset_class:
        raise CatalogError("--asset-class is required for a bar file (equities, crypto or fx)")
    bar = _trades_bar(table, freq, trades, bar)
    name = check_name(name or _default_name(src), "tradecast ingest --name")
    bundled = settings.catalog_path
    if bundled.exists() and name in {s.name for s in load_catalog(bundled)}:
        raise name_clash(name, bundled, settings.user_catalog_path)
    rows = "trades" if trades else table
    columns = {c: c for c in TABLE_COLUMNS[rows] if c in header}
    columns.update(parse_mapping(mapping, rows))
    entry = {"name": name, "path": str(src), "table": table, "columns": columns, "timezone": timezone,
             "notes": f"registered by `tradecast ingest` from {src}"}
    if table == "bars":
        entry.update(asset_class=asset_class, freq=bar or freq or "1d")
    if trades:
        entry["kind"] = "trades"
    if symbol:
        entry["constants"] = {"symbol": symbol}
        columns.pop("symbol", None)
    if ts_format:
        entry["ts_format"] = ts_format
    missing = [c for c in REQUIRED_COLUMNS[rows] if c not in columns and c not in entry.get("constants", {})]
    if missing:
        hint = " (a file of trades? add --trades --bar 1min)" if rows == "bars" and "price" in header else ""
        raise SourceFileError(f"{src}: no column for {missing}; the file has {header}. Use --map "
                              f"{','.join(f'{c}=<column>' for c in missing)}"
                              + (" or --symbol" if "symbol" in missing else "") + hint)
    spec = spec_from_dict(entry, src.parent, where="tradecast ingest")
    if table == "bars" and not trades:  # trades are not bars: their spacing says nothing of the bar frequency
        entry["freq"] = infer_freq(spec, given=freq)
    else:
        read_source(spec)  # a file that cannot be read fails here, before anything is registered
    return _store(settings, src, entry)


def _trades_bar(table: str, freq: str | None, trades: bool, bar: str | None) -> str | None:
    """The canonical bar frequency of a trades file (`--bar`); None for any other file."""
    if not trades:
        if bar:
            raise CatalogError("--bar is the bar size built from a trades file: add --trades (a bar file takes --freq)")
        return None
    if table != "bars":
        raise CatalogError(f"--trades builds bars: it cannot be used with --table {table}")
    if freq:
        raise CatalogError("--freq is for bar files; give the bars built from trades with --bar (e.g. --bar 1min)")
    if not bar:
        raise CatalogError("--trades needs --bar, the bar frequency to build (e.g. --bar 1min)")
    try:
        return canonical_freq(bar)
    except CatalogError as exc:
        raise CatalogError(f"--bar: {exc}") from None


def _default_name(src: Path) -> str:
    """user_<file stem>, reduced to a valid source name."""
    return ("user_" + re.sub(r"[^a-z0-9_]+", "_", src.name.split(".")[0].lower()).strip("_"))[:64]


def _inside(path: Path, folder: Path) -> Path:
    """`path` if it resolves (links followed) inside `folder`; a registered source never writes elsewhere."""
    if not path.resolve().is_relative_to(folder):
        raise CatalogError(f"{path}: resolves to {path.resolve()}, outside {folder}: refusing to write there")
    return path


def _store(settings: Settings, src: Path, entry: dict) -> SourceSpec:
    import yaml

    sources = settings.root / "sources"  # the root is resolved: a linked sources/ or files/ points elsewhere
    catalog = _inside(settings.user_catalog_path, sources)
    files = sources / "files"
    suffix = "".join(s for s in src.suffixes[-2:] if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", s))
    target = _inside(files / (check_name(entry["name"]) + suffix), files)
    _read_user_catalog(catalog)  # unreadable: refused before the copy replaces the registered file of this name
    try:  # the copy appears whole or not at all, and the catalog is changed by one process at a time
        _, digest = atomic_copy(src, target)
        entry = {**entry, "path": str(target.relative_to(catalog.parent)), "sha256": digest}
        with locked(catalog):
            doc = _read_user_catalog(catalog)
            entries = [e for e in doc.get("sources", []) if e.get("name") != entry["name"]]
            atomic_write_text(catalog, yaml.safe_dump({"sources": [entry, *entries]}, sort_keys=False))
    except OSError as exc:
        raise SourceFileError(f"cannot register {src}: {exc.strerror or exc} ({exc.filename or target}); "
                              "nothing was registered") from None
    return spec_from_dict(entry, catalog.parent, where=str(catalog))


def _read_user_catalog(catalog: Path) -> dict:
    from ingest.files import read_yaml_mapping

    if not catalog.exists():
        return {}
    return read_yaml_mapping(catalog, label=str(catalog), shape="a top-level 'sources:' list", error=CatalogError,
                             hint="; fix or remove it (it lists your registered files), nothing was changed")
