"""The sources catalog (`data/sources.yaml`): what each file is and how to read it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from domain.vocabulary import ASSET_CLASSES

TABLES = ("bars", "news_events", "macro_events", "symbols")
KINDS = ("bars", "trades")  # what the rows of a bars source are: bars, or trades aggregated into `freq` bars
NAME_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"  # a source name: also the file name of a registered copy
# spellings pandas 3 rejects or deprecates ('30T', '4H', '1d'), mapped to the ones it reads
_UNIT_SPELLINGS = {"T": "min", "H": "h", "d": "D", "S": "s", "w": "W"}


class CatalogError(ValueError):
    """A catalog entry is malformed; the message names the catalog file and the entry."""


def freq_step(value: Any) -> Any:
    """The length (a pandas Timedelta) of one bar of frequency `value`: '30T', '30min', '4H', '1D', 'D', '60min',
    or a Timedelta. A bar frequency is a whole number of minutes from 1 minute to 1 day; anything else
    (sub-minute, longer than a day, a fraction of a minute, not a duration) is a CatalogError naming the value."""
    import re

    import pandas as pd

    text = str(value).strip()
    match = re.fullmatch(r"(\d*\.?\d*)\s*([A-Za-z]+)", text)
    if match:
        text = (match[1] or "1") + _UNIT_SPELLINGS.get(match[2], match[2])
    try:
        step = value if isinstance(value, pd.Timedelta) else pd.to_timedelta(text)
    except (ValueError, TypeError, OverflowError):
        step = pd.NaT
    if step is pd.NaT or not pd.Timedelta("1min") <= step <= pd.Timedelta("1D") or step % pd.Timedelta("1min"):
        raise CatalogError(f"freq must be a whole number of minutes from 1min to 1d (e.g. 1min, 15min, 30min, 4h, "
                           f"1d); got {value!r}")
    return step


def canonical_freq(value: Any) -> str:
    """The canonical spelling of a bar frequency (see `freq_step`): 'Nmin' below an hour or off the hour,
    'Nh' for whole hours below a day, '1d' for a day. '30T' -> '30min', '4H' -> '4h', '60min' -> '1h', 'D' -> '1d'."""
    minutes = int(freq_step(value).total_seconds()) // 60
    if minutes == 1440:
        return "1d"
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}min"


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
    kind: str | None = None  # bars sources only: None/'bars' = one row per bar, 'trades' = one row per trade
    sha256: str | None = None  # of the file as registered (`tradecast ingest`): a changed file is refused
    notes: str = ""

    @property
    def row_table(self) -> str:
        """What one row of the file is: 'trades' for a trades source, else its table."""
        return "trades" if self.kind == "trades" else self.table

    def to_dict(self) -> dict[str, Any]:
        """The entry as it would be written to a catalog file (path as a string)."""
        out = dataclasses.asdict(self)
        out["path"] = str(self.path)
        out["na_values"] = list(self.na_values)
        out["required"] = list(self.required)
        return {k: v for k, v in out.items() if v not in (None, {}, [], "")}


_FIELDS = {f.name for f in dataclasses.fields(SourceSpec)}


def check_name(name: Any, where: str = "source") -> str:
    """`name` if it is a safe source name (lowercase letters, digits, '_' or '-', at most 64, no path parts)."""
    import re

    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise CatalogError(f"{where}: source name {name!r} is not allowed: use 1-64 lowercase letters, digits, '_' "
                           "or '-', starting with a letter or digit (no '/', '..', spaces or absolute paths)")
    return name


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
    check_name(entry["name"], where)
    if entry["table"] not in TABLES:
        raise CatalogError(f"{here}: table '{entry['table']}' is not one of {TABLES}")
    if entry["table"] in ("bars", "symbols") and entry.get("asset_class") not in ASSET_CLASSES:
        raise CatalogError(f"{here}: asset_class must be one of {ASSET_CLASSES}, got {entry.get('asset_class')!r}")
    if entry["table"] == "bars":
        try:
            entry = {**entry, "freq": canonical_freq(entry.get("freq"))}  # stored as data, canonically spelled
        except CatalogError as exc:
            raise CatalogError(f"{here}: {exc}") from None
    if entry.get("layout", "long") not in ("long", "wide"):
        raise CatalogError(f"{here}: layout must be 'long' or 'wide'")
    if entry.get("kind") is not None and (entry["kind"] not in KINDS or entry["table"] != "bars"):
        raise CatalogError(f"{here}: kind must be one of {KINDS}, for a bars source only; got {entry['kind']!r}")
    if entry.get("kind") == "trades" and entry.get("layout", "long") != "long":
        raise CatalogError(f"{here}: a trades source has one trade per row (layout long)")
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
    from ingest.files import read_yaml_mapping

    path = Path(path)
    try:
        doc = read_yaml_mapping(path, label=f"catalog {path}", shape="a top-level 'sources:' list", error=CatalogError)
    except FileNotFoundError:
        raise CatalogError(f"catalog {path}: file not found") from None
    entries = doc.get("sources")
    if not isinstance(entries, list):
        raise CatalogError(f"catalog {path}: expected a top-level 'sources:' list")
    specs = [spec_from_dict(e, path.parent, where=f"catalog {path}") for e in entries]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CatalogError(f"catalog {path}: duplicate source names {dupes}")
    return specs


def load_catalogs(paths: list[Path]) -> list[SourceSpec]:
    """Several catalog files in priority order; a source name in two of them is refused, naming both files."""
    seen: dict[str, Path] = {}
    specs = []
    for path in paths:
        for spec in load_catalog(path):
            if spec.name in seen:
                raise name_clash(spec.name, seen[spec.name], Path(path))
            seen[spec.name] = Path(path)
            specs.append(spec)
    return specs


def name_clash(name: str, first: Path, second: Path) -> CatalogError:
    return CatalogError(f"source name '{name}' is in both {first} and {second}: source names must be unique "
                        f"across catalogs; rename the entry you added (tradecast ingest --name <other name>)")


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
