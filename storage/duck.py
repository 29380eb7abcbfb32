"""The DuckDB warehouse file: lock-aware connections, damage detection, and appends/replaces by column name.

DuckDB allows one writing process per file: `open_waiting` waits (with backoff) while another process holds the
lock, so a short write by the forecast service and a Dagster run never fail each other. A damaged file is marked
(`<file>.corrupt`) and never opened for writing again."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.schema import BARS_DDL, BARS_KEY, COLUMNS, DDL

if TYPE_CHECKING:
    import duckdb
    import pandas as pd


class StorageError(RuntimeError):
    """The warehouse cannot be opened or written; the message names the file and the root cause."""


def _marker(path) -> Path:
    return Path(f"{path}.corrupt")


def _is_corruption(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "corrupt" in text or "checksum" in text or "not a valid duckdb database" in text


def storage_error(path, exc: BaseException, doing: str) -> StorageError:
    """A `StorageError` naming ``path`` and the root cause; a corrupt file is marked so nothing writes into it."""
    cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if _is_corruption(exc):
        _marker(path).write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S')} while {doing}: {cause}\n")
        return StorageError(f"{path}: the DuckDB warehouse is damaged ({cause}). Nothing more is written into it: "
                            f"restore it from a backup (or move it aside for a fresh load), then delete "
                            f"{_marker(path)}")
    return StorageError(f"{path}: {doing} failed: {cause}")


@contextlib.contextmanager
def reading(path):
    """Reads of the DuckDB file ``path``: a damaged block that a query (not the open) runs into is a `StorageError`
    naming the file, and the file is marked, as when the open finds it."""
    import duckdb

    try:
        yield
    except duckdb.Error as exc:
        if not _is_corruption(exc):
            raise
        raise storage_error(path, exc, "reading the warehouse") from exc


def connect(path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection with the schema in place and timestamps shown in UTC. A file that failed to open cleanly, or
    was found damaged before (marker ``<file>.corrupt``), is never opened for writing."""
    import duckdb

    if not read_only and _marker(path).exists():
        raise StorageError(f"{path}: marked damaged ({_marker(path).read_text().strip()}); restore it from a backup "
                           f"(or move it aside), then delete {_marker(path)}")
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise  # another process writes: `open_waiting` waits for it
        raise storage_error(path, exc, "opening the warehouse") from exc
    except duckdb.Error as exc:
        raise storage_error(path, exc, "opening the warehouse") from exc
    con.execute("SET TimeZone = 'UTC'")
    if not read_only:
        try:
            con.execute(DDL)
            _rekey_bars(con)
        except duckdb.Error as exc:
            con.close()
            raise storage_error(path, exc, "preparing the schema") from exc
    return con


def _rekey_bars(con) -> None:
    """A warehouse made before `bars` was keyed on asset_class keeps its old primary key (the DDL only creates
    missing tables): rebuild the table with BARS_KEY once, rows unchanged, in one transaction."""
    keys = con.execute("""SELECT constraint_column_names FROM duckdb_constraints()
                          WHERE database_name = current_database() AND schema_name = current_schema()
                            AND table_name = 'bars' AND constraint_type = 'PRIMARY KEY'""").fetchall()
    # fetchall, not fetchone: DuckDB 2 refuses `register` on a connection with an unfinished result
    if not keys or list(keys[0][0]) == BARS_KEY:
        return
    cols = ", ".join(COLUMNS["bars"])
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(BARS_DDL.replace("EXISTS bars", "EXISTS bars_rekeyed"))
        con.execute(f"INSERT INTO bars_rekeyed ({cols}) SELECT {cols} FROM bars")
        con.execute("DROP TABLE bars")
        con.execute("ALTER TABLE bars_rekeyed RENAME TO bars")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def insert_frame(con, table: str, frame: pd.DataFrame) -> int:
    """Append `frame`'s columns for `table` (by name, so column order never matters)."""
    cols = COLUMNS[table]
    if frame.empty:  # nothing to append (a class without sources has no columns to select either)
        return 0
    con.register("_staged", frame[cols])
    try:
        con.execute(f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(cols)} FROM _staged")
    except BaseException:
        with contextlib.suppress(Exception):  # an aborted transaction refuses this too: keep the real error
            con.unregister("_staged")
        raise
    con.unregister("_staged")
    return len(frame)


def replace_where(con, table: str, frame: pd.DataFrame, where: dict[str, Any]) -> int:
    """Delete the rows matching `where` (column = value, NULL-safe) then insert `frame`."""
    clause = " AND ".join(f"{col} IS NOT DISTINCT FROM ?" for col in where) or "TRUE"
    con.execute(f"DELETE FROM {table} WHERE {clause}", list(where.values()))
    return insert_frame(con, table, frame)


def read_df(con, sql: str, params: list | None = None) -> pd.DataFrame:
    return con.execute(sql, params or []).df()


def open_waiting(path, read_only: bool = False, lock_wait_s: float = 15.0) -> duckdb.DuckDBPyConnection:
    """`connect`, waiting (with backoff, up to `lock_wait_s`) while another process holds the file lock."""
    import duckdb

    if read_only and not Path(path).exists():
        connect(path, read_only=False).close()  # create the schema once so readers never fail on a fresh home
    deadline, delay = time.monotonic() + lock_wait_s, 0.05
    while True:
        try:
            return connect(path, read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
