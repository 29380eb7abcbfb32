"""`tradecast ingest FILE`: turn a one-off file into a catalog entry under $TRADECAST_HOME/sources/."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ingest.catalog import FREQS, CatalogError, SourceSpec, spec_from_dict
from ingest.readers import REQUIRED_COLUMNS, TABLE_COLUMNS, SourceFileError, read_source
from resources.settings import Settings

_FREQ_SECONDS = {"1min": 60, "5min": 300, "1h": 3600, "1d": 86400}


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


def infer_freq(spec: SourceSpec) -> str:
    """The catalog frequency closest to the median spacing of each symbol's timestamps."""
    frame = read_source(spec).frame.dropna(subset=["ts"]).sort_values(["symbol", "ts"])
    step = frame.groupby("symbol", dropna=False)["ts"].diff().median()
    if step != step or step is None:  # NaT: fewer than two timestamps per symbol
        raise SourceFileError(f"{spec.path}: cannot infer the bar frequency (too few timestamps); pass --freq")
    seconds = step.total_seconds()
    return min(FREQS, key=lambda f: abs(_FREQ_SECONDS[f] - seconds) / _FREQ_SECONDS[f])


def register_file(file: str, *, table: str = "bars", asset_class: str | None = None, freq: str | None = None,
                  mapping: str = "", symbol: str | None = None, ts_format: str | None = None,
                  timezone: str = "UTC", name: str | None = None, settings: Settings | None = None) -> SourceSpec:
    """Check FILE, copy it under the user catalog and add (or replace) its entry; returns the spec."""
    import pandas as pd

    settings = settings or Settings()
    src = Path(file).expanduser().resolve()
    if not src.is_file():
        raise SourceFileError(f"{src}: file not found")
    if table == "bars" and not asset_class:
        raise CatalogError("--asset-class is required for a bar file (equities, crypto or fx)")
    name = name or "user_" + re.sub(r"[^A-Za-z0-9_]+", "_", src.name.split(".")[0]).strip("_").lower()
    try:
        header = list(pd.read_csv(src, nrows=0, compression="infer").columns)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a file problem for the user
        raise SourceFileError(f"{src}: cannot read a CSV header ({type(exc).__name__}: {exc})") from None
    columns = {c: c for c in TABLE_COLUMNS[table] if c in header}
    columns.update(parse_mapping(mapping, table))
    entry = {"name": name, "path": str(src), "table": table, "columns": columns, "timezone": timezone,
             "notes": f"registered by `tradecast ingest` from {src}"}
    if table == "bars":
        entry.update(asset_class=asset_class, freq=freq or "1d")
    if symbol:
        entry["constants"] = {"symbol": symbol}
        columns.pop("symbol", None)
    if ts_format:
        entry["ts_format"] = ts_format
    missing = [c for c in REQUIRED_COLUMNS[table] if c not in columns and c not in entry.get("constants", {})]
    if missing:
        raise SourceFileError(f"{src}: no column for {missing}; the file has {header}. Use --map "
                              f"{','.join(f'{c}=<column>' for c in missing)}" + (" or --symbol" if "symbol" in missing else ""))
    spec = spec_from_dict(entry, src.parent, where="tradecast ingest")
    if table == "bars" and not freq:
        entry["freq"] = infer_freq(spec)
    else:
        read_source(spec)  # a file that cannot be read fails here, before anything is registered
    return _store(settings, src, entry)


def _store(settings: Settings, src: Path, entry: dict) -> SourceSpec:
    import yaml

    catalog = settings.user_catalog_path
    files = catalog.parent / "files"
    files.mkdir(parents=True, exist_ok=True)
    target = files / (entry["name"] + "".join(src.suffixes[-2:]))
    shutil.copyfile(src, target)
    entry = {**entry, "path": str(target.relative_to(catalog.parent))}
    doc = yaml.safe_load(catalog.read_text()) if catalog.exists() else None
    entries = [e for e in (doc or {}).get("sources", []) if e.get("name") != entry["name"]]
    catalog.write_text(yaml.safe_dump({"sources": [entry, *entries]}, sort_keys=False))
    return spec_from_dict(entry, catalog.parent, where=str(catalog))
