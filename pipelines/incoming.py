"""Files dropped into `$TRADECAST_HOME/incoming/` become catalog sources (the same registration as
`tradecast ingest`); used by `incoming_files_sensor`.

Where the asset class comes from, first match wins:
1. a sidecar `<file>.yaml` with the `tradecast ingest` options (`table`, `asset_class`, `freq`, `map`, `symbol`,
   `ts_format`, `timezone`, `name`): any format the catalog can read;
2. the folder: `incoming/<equities|crypto|fx>/file.csv` (bars) or `incoming/news/file.csv` (news_events);
3. the header: a `headline` column means news; for bars, the symbols already in the warehouse name the class.
Registered files move to `incoming/done/`; a file that cannot be used moves to `incoming/rejected/` with
`<file>.reason.txt` beside it saying why.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

ASSET_CLASSES = ("equities", "crypto", "fx")
SUFFIXES = (".csv", ".csv.gz", ".txt", ".txt.gz")
_OPTIONS = ("table", "asset_class", "freq", "map", "symbol", "ts_format", "timezone", "name")


@dataclass(frozen=True)
class Outcome:
    file: str  # path relative to incoming/
    key: str  # name:size:mtime -- what the sensor's cursor remembers
    table: str | None = None  # bars | news_events when registered
    asset_class: str | None = None
    source: str | None = None
    rejected: str | None = None  # the reason, when rejected


def incoming_dir(home: Path) -> Path:
    path = home / "incoming"
    for sub in ("", "done", "rejected"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def pending(root: Path) -> list[Path]:
    """Data files waiting in `incoming/` and its class folders (not done/, rejected/, hidden or partial files)."""
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if not path.is_file() or rel[0] in ("done", "rejected") or any(p.startswith(".") for p in rel):
            continue
        if path.name.endswith(SUFFIXES):
            files.append(path)
    return files


def file_key(root: Path, path: Path) -> str:
    stat = path.stat()
    return f"{path.relative_to(root)}:{stat.st_size}:{int(stat.st_mtime_ns)}"


def _options(root: Path, path: Path, known_symbols: dict[str, str]) -> dict:
    import pandas as pd
    import yaml

    sidecar = path.with_name(path.name + ".yaml")
    if sidecar.exists():
        opts = yaml.safe_load(sidecar.read_text()) or {}
        unknown = sorted(set(opts) - set(_OPTIONS))
        if unknown:
            raise ValueError(f"{sidecar.name}: unknown option(s) {unknown}; use {list(_OPTIONS)}")
        return opts
    folder = path.relative_to(root).parts[0] if len(path.relative_to(root).parts) > 1 else None
    if folder == "news":
        return {"table": "news_events"}
    if folder in ASSET_CLASSES:
        return {"table": "bars", "asset_class": folder}
    if folder is not None:
        raise ValueError(f"unknown folder '{folder}': use incoming/<{'|'.join(ASSET_CLASSES)}>/ or incoming/news/")
    header = list(pd.read_csv(path, nrows=50, compression="infer").columns)
    if "headline" in header:
        return {"table": "news_events"}
    if "symbol" in header:
        symbols = pd.read_csv(path, usecols=["symbol"], compression="infer")["symbol"].astype(str).unique()
        classes = {known_symbols[s] for s in symbols if s in known_symbols}
        if len(classes) == 1:
            return {"table": "bars", "asset_class": classes.pop()}
    raise ValueError("cannot tell the asset class: put the file in incoming/<equities|crypto|fx>/ or add "
                     f"{path.name}.yaml with `asset_class:` (and any `tradecast ingest` option)")


def process(root: Path, known_symbols: dict[str, str], seen: set[str], settings=None) -> list[Outcome]:
    """Register every pending file not in ``seen``; move it to done/ or rejected/ (with a reason file)."""
    from ingest.catalog import CatalogError
    from ingest.readers import SourceFileError
    from pipelines.registration import register_file

    out = []
    for path in pending(root):
        key = file_key(root, path)
        rel = str(path.relative_to(root))
        if key in seen:
            continue
        try:
            opts = _options(root, path, known_symbols)
            spec = register_file(str(path), table=opts.get("table", "bars"), asset_class=opts.get("asset_class"),
                                 freq=opts.get("freq"), mapping=opts.get("map", ""), symbol=opts.get("symbol"),
                                 ts_format=opts.get("ts_format"), timezone=opts.get("timezone", "UTC"),
                                 name=opts.get("name"), settings=settings)
        except (CatalogError, SourceFileError, ValueError, OSError) as exc:
            _move(path, root / "rejected", reason=str(exc))
            out.append(Outcome(rel, key, rejected=str(exc)))
            continue
        _move(path, root / "done")
        out.append(Outcome(rel, key, table=spec.table, asset_class=spec.asset_class, source=spec.name))
    return out


def _move(path: Path, target_dir: Path, reason: str | None = None) -> None:
    target = target_dir / path.name
    if target.exists():  # keep earlier files of the same name
        target = target_dir / f"{path.stem}.{target.stat().st_mtime_ns}{path.suffix}"
    shutil.move(str(path), target)
    sidecar = path.with_name(path.name + ".yaml")
    if sidecar.exists():
        shutil.move(str(sidecar), target.with_name(target.name + ".yaml"))
    if reason is not None:
        target.with_name(target.name + ".reason.txt").write_text(reason + "\n")
