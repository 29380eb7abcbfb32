"""The sources catalog (`data/sources.yaml`): what each file is and how to read it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

TABLES = ("bars", "news_events", "macro_events", "symbols")
ASSET_CLASSES = ("equities", "crypto", "fx")
FREQS = ("1min", "5min", "1h", "1d")


class CatalogError(ValueError):
    """A catalog entry is malformed; the message names the catalog file and the entry."""


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """One file and how to turn it into rows of a warehouse table."""

    name: str
    path: Path
    table: str
    asset_class: str | None = None
    freq: str | None = None
    columns: dict[str, Any] = dataclasses.field(default_factory=dict)
    constants: dict[str, Any] = dataclasses.field(default_factory=dict)
    header: bool = True
    layout: str = "long"
    wide: dict[str, Any] = dataclasses.field(default_factory=dict)
    timezone: str = "UTC"
    timezone_by_symbol: dict[str, str] = dataclasses.field(default_factory=dict)
    ts_format: str | None = None
    default_time: str | None = None
    na_values: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    order: str | None = None
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The entry as it would be written to a catalog file (path as a string)."""
        out = dataclasses.asdict(self)
        out["path"] = str(self.path)
        out["na_values"] = list(self.na_values)
        out["required"] = list(self.required)
        return {k: v for k, v in out.items() if v not in (None, {}, [], "")}


_FIELDS = {f.name for f in dataclasses.fields(SourceSpec)}


def spec_from_dict(entry: dict[str, Any], base_dir: Path, where: str = "catalog") -> SourceSpec:
    """Build and check one entry; relative paths resolve against `base_dir`."""
    name = entry.get("name") or "<unnamed>"
    here = f"{where}: source '{name}'"
    unknown = set(entry) - _FIELDS
    if unknown:
        raise CatalogError(f"{here}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_FIELDS)}")
    for key in ("name", "path", "table"):
        if not entry.get(key):
            raise CatalogError(f"{here}: field '{key}' is required")
    if entry["table"] not in TABLES:
        raise CatalogError(f"{here}: table '{entry['table']}' is not one of {TABLES}")
    if entry["table"] in ("bars", "symbols") and entry.get("asset_class") not in ASSET_CLASSES:
        raise CatalogError(f"{here}: asset_class must be one of {ASSET_CLASSES}, got {entry.get('asset_class')!r}")
    if entry["table"] == "bars" and entry.get("freq") not in FREQS:
        raise CatalogError(f"{here}: freq must be one of {FREQS}, got {entry.get('freq')!r}")
    if entry.get("layout", "long") not in ("long", "wide"):
        raise CatalogError(f"{here}: layout must be 'long' or 'wide'")
    if entry.get("layout") == "wide" and not {"symbols", "start", "index_freq"} <= set(entry.get("wide", {})):
        raise CatalogError(f"{here}: a wide layout needs wide.symbols, wide.start and wide.index_freq")
    values = dict(entry)
    path = Path(values.pop("path"))
    values["path"] = path if path.is_absolute() else (base_dir / path)
    values["na_values"] = tuple(str(v) for v in values.get("na_values", ()))
    values["required"] = tuple(values.get("required", ()))
    return SourceSpec(**values)


def load_catalog(path: str | Path) -> list[SourceSpec]:
    """Read a catalog file; a missing file gives an empty catalog only if `path` is optional."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise CatalogError(f"catalog {path}: file not found") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"catalog {path}: not valid YAML: {exc}") from None
    entries = doc.get("sources") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise CatalogError(f"catalog {path}: expected a top-level 'sources:' list")
    specs = [spec_from_dict(e, path.parent, where=f"catalog {path}") for e in entries]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CatalogError(f"catalog {path}: duplicate source names {dupes}")
    return specs


def select(specs: list[SourceSpec], table: str, asset_class: str | None = None,
           names: list[str] | None = None) -> list[SourceSpec]:
    """Specs for one table (and asset class), in catalog order; `names` narrows further."""
    out = [s for s in specs if s.table == table and (asset_class is None or s.asset_class == asset_class)]
    if names:
        missing = sorted(set(names) - {s.name for s in out})
        if missing:
            raise CatalogError(f"no {table} source named {missing} for asset class {asset_class!r}")
        out = [s for s in out if s.name in names]
    return out
