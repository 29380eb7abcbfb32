"""A moved or restored `$TRADECAST_HOME` works on its own: re-root MLflow's stored artifact locations.

MLflow's sqlite store keeps absolute artifact locations (the experiment's ``file:///…/mlartifacts``, every run's
artifact URI, every model version's storage location). A home copied elsewhere would therefore read, and write,
the original's artifacts. Before the store is used, `rehome` looks for locations under another home's
``mlartifacts/`` and rewrites that prefix to this home's, in one sqlite transaction. Only the project's own
``mlartifacts/`` prefix is touched; a remote store (`MLFLOW_TRACKING_URI` = a server) is not ours to rewrite.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

# the text columns of MLflow's sqlite schema that hold artifact locations (MLflow 2 and 3)
LOCATION_COLUMNS = {
    "experiments": ("artifact_location",),
    "runs": ("artifact_uri",),
    "model_versions": ("source", "storage_location"),
    "logged_models": ("artifact_location",),
}
_done: set[str] = set()


def artifacts_dir(home: Path) -> Path:
    return home / "mlartifacts"


def _old_roots(con: sqlite3.Connection, here: str) -> set[str]:
    """Every ``…/mlartifacts`` prefix of a stored experiment location that is not this home's."""
    roots = set()
    for (location,) in con.execute("SELECT artifact_location FROM experiments"):
        path = str(location or "")
        path = path[len("file://"):] if path.startswith("file://") else path
        if path.endswith("/mlartifacts") and path != here:
            roots.add(path)
    return roots


def rehome(home: Path) -> list[str]:
    """Rewrite another home's artifact prefix in ``home/mlflow.db`` to ``home/mlartifacts``; returns the old
    prefixes rewritten (empty when the store is new or already rooted here). Runs once per home and process."""
    db = home / "mlflow.db"
    here = artifacts_dir(home).resolve().as_posix()
    if here in _done or not db.exists():
        return []
    con = sqlite3.connect(db, timeout=30)
    try:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "experiments" not in tables:
            return []
        old_roots = _old_roots(con, here)
        with con:  # one transaction: every location moves, or none
            for old in sorted(old_roots):
                for table, columns in LOCATION_COLUMNS.items():
                    if table not in tables:
                        continue
                    have = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
                    for col in (c for c in columns if c in have):
                        for prefix, new in ((f"file://{old}", f"file://{here}"), (old, here)):
                            con.execute(f"UPDATE {table} SET {col} = ? || substr({col}, ?) WHERE {col} = ? OR "
                                        f"{col} LIKE ? ESCAPE '\\'", [new, len(prefix) + 1, prefix,
                                                                       _like_prefix(prefix)])
    finally:
        con.close()
    _done.add(here)
    return sorted(old_roots)


def _like_prefix(prefix: str) -> str:
    """``prefix/…`` as a LIKE pattern (``\\`` escapes LIKE's wildcards in the path)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
