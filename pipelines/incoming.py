"""Files dropped into `$TRADECAST_HOME/incoming/` become catalog sources (the same registration as
`tradecast ingest`); used by `incoming_files_sensor`.

Where the asset class comes from, first match wins:
1. a sidecar `<file>.yaml` with the `tradecast ingest` options (`table`, `asset_class`, `freq`, `map`, `symbol`,
   `ts_format`, `timezone`, `name`, `trades`, `bar`): any format the catalog can read;
2. the folder: `incoming/<equities|crypto|fx>/file.csv` (bars) or `incoming/news/file.csv` (news_events);
3. the header: a `headline` column means news; for bars, the symbols already in the warehouse name the class.
Registered files move to `incoming/done/`; a file that cannot be used moves to `incoming/rejected/` with
`<file>.reason.txt` beside it saying why. Symbolic links (to a file or a folder), and files whose sidecar is one,
are never followed: the link itself is moved to `rejected/`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from domain.vocabulary import ASSET_CLASSES

SUFFIXES = (".csv", ".csv.gz", ".txt", ".txt.gz")
_OPTIONS = ("table", "asset_class", "freq", "map", "symbol", "ts_format", "timezone", "name", "trades", "bar")


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
        if (path / sub).is_symlink():  # files are moved there: never to wherever a link points
            raise ValueError(f"{path / sub} is a symbolic link: make it a plain folder inside {home}")
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def pending(root: Path) -> list[Path]:
    """Data files waiting in `incoming/` and its class folders (not done/, rejected/, hidden or partial files),
    and any symbolic link among them (to a folder too): links are listed, never followed."""
    found = []
    for folder, dirs, names in os.walk(root):  # followlinks=False: a linked folder is listed, not entered
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (here == root and d in ("done", "rejected")))
        found += [here / d for d in dirs if (here / d).is_symlink()]
        found += [here / n for n in names if not n.startswith(".")
                  and (n.endswith(SUFFIXES) or (here / n).is_symlink() and not n.endswith(".yaml"))]
    return sorted(found)


def file_key(root: Path, path: Path) -> str:
    stat = path.lstat()  # the link itself, not its target
    return f"{path.relative_to(root)}:{stat.st_size}:{int(stat.st_mtime_ns)}"


def _options(root: Path, path: Path, known_symbols: dict[str, str]) -> dict:
    import pandas as pd

    from ingest.catalog import check_name
    from ingest.files import read_yaml_mapping
    from ingest.readers import open_data, read_header

    sidecar = path.with_name(path.name + ".yaml")
    if sidecar.is_symlink():
        raise ValueError(f"{sidecar.name}: the sidecar is a symbolic link; links are not followed: put the options "
                         "file itself beside the data file")
    if sidecar.exists():
        opts = read_yaml_mapping(sidecar, label=sidecar.name, shape="`option: value` lines",
                                 hint=f"; use `option: value` lines: {list(_OPTIONS)}")
        unknown = sorted(set(opts) - set(_OPTIONS))
        if unknown:
            raise ValueError(f"{sidecar.name}: unknown option(s) {unknown}; use {list(_OPTIONS)}")
        wrong = sorted(k for k, v in opts.items() if v is not None and not isinstance(
            v, bool if k == "trades" else (str, int, float)))
        if wrong:
            raise ValueError(f"{sidecar.name}: option(s) {wrong} must be plain values (`trades`: true or false; the "
                             "others text), not lists or mappings")
        opts = {k: v if k == "trades" or v is None else str(v) for k, v in opts.items()}
        if opts.get("name") is not None:
            check_name(opts["name"], f"{sidecar.name}: name")
        return opts
    folder = path.relative_to(root).parts[0] if len(path.relative_to(root).parts) > 1 else None
    if folder == "news":
        return {"table": "news_events"}
    if folder in ASSET_CLASSES:
        return {"table": "bars", "asset_class": folder}
    if folder is not None:
        raise ValueError(f"unknown folder '{folder}': use incoming/<{'|'.join(ASSET_CLASSES)}>/ or incoming/news/")
    header = read_header(path)  # bounded, like every read of a source file: a bomb or a huge line is refused
    if "headline" in header:
        return {"table": "news_events"}
    if "symbol" in header:
        with open_data(path) as fh:
            symbols = pd.read_csv(fh, usecols=["symbol"], dtype=str)["symbol"].unique()
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
            if path.is_symlink():
                raise ValueError(f"{rel} is a symbolic link (to {os.readlink(path)}); links are not followed: copy "
                                 "the file itself into incoming/")
            if not path.is_file():  # opening a FIFO would wait for a writer: the sensor would hang
                raise ValueError(f"{rel} is not a regular file (a FIFO, socket or device): only plain files are read")
            opts = _options(root, path, known_symbols)
            spec = register_file(str(path), table=opts.get("table", "bars"), asset_class=opts.get("asset_class"),
                                 freq=opts.get("freq"), mapping=opts.get("map", ""), symbol=opts.get("symbol"),
                                 ts_format=opts.get("ts_format"), timezone=opts.get("timezone", "UTC"),
                                 name=opts.get("name"), trades=bool(opts.get("trades", False)), bar=opts.get("bar"),
                                 settings=settings)
        except (CatalogError, SourceFileError, ValueError, OSError) as exc:
            _move(path, root / "rejected", reason=str(exc))
            out.append(Outcome(rel, key, rejected=str(exc)))
            continue
        _move(path, root / "done")
        out.append(Outcome(rel, key, table=spec.table, asset_class=spec.asset_class, source=spec.name))
    return out


def _move(path: Path, target_dir: Path, reason: str | None = None) -> None:
    """Move `path` (a link: the link itself) and its sidecar into `target_dir`."""
    target = target_dir / path.name
    if os.path.lexists(target):  # keep earlier files of the same name
        target = target_dir / f"{path.stem}.{target.lstat().st_mtime_ns}{path.suffix}"
    shutil.move(str(path), str(target))  # a link moves as a link (its target stays where it is)
    sidecar = path.with_name(path.name + ".yaml")
    if os.path.lexists(sidecar):
        shutil.move(str(sidecar), str(target.with_name(target.name + ".yaml")))
    if reason is not None:
        target.with_name(target.name + ".reason.txt").write_text(reason + "\n")
