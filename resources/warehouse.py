"""The DuckDB warehouse: schema, connections, and atomic replace-by-partition writes.

DuckDB has one writer per file: every asset that writes goes through `Warehouse.transaction()` and
is tagged with the `duckdb_writer` pool (limit 1 in the instance config), so writes are serialized
by Dagster rather than by luck. All SQL takes values as parameters.
"""


import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import dagster as dg

from resources.settings import Settings
from storage.duck import open_waiting, read_df, reading, storage_error

if TYPE_CHECKING:
    import duckdb
    import pandas as pd


class Warehouse(dg.ConfigurableResource):
    """The DuckDB file `$TRADECAST_HOME/warehouse.duckdb`."""

    settings: Settings

    lock_wait_s: float = 15.0  # another process (a sensor's read, a run's write) may hold the file briefly

    @property
    def path(self):
        return self.settings.warehouse_path

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator["duckdb.DuckDBPyConnection"]:
        con = open_waiting(self.path, read_only=read_only, lock_wait_s=self.lock_wait_s)
        try:
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator["duckdb.DuckDBPyConnection"]:
        """One atomic write: all of it lands, or (on any error) none of it."""
        import duckdb

        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(duckdb.Error):  # a failed rollback must not hide why the write failed
                    con.execute("ROLLBACK")
                if isinstance(exc, duckdb.Error):
                    raise storage_error(self.path, exc, "writing the warehouse") from exc
                raise

    def query(self, sql: str, params: list | None = None) -> "pd.DataFrame":
        with self.connect(read_only=True) as con, reading(self.path):
            return read_df(con, sql, params)
