"""Where tradecast keeps its state, and the DuckDB warehouse's schema and plain helpers.

Plain Python (no Dagster): the Dagster resources (`resources.settings`, `resources.warehouse`) and the
serving process (`serving/`, which must not import Dagster) share this one definition of the home folder,
the schema and the lock-aware connection. DuckDB allows one writing process per file: `open_waiting`
waits (with backoff) while another process holds the lock, so a short write by the forecast service and a
Dagster run never fail each other.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.benchmark.specs import LATENCY_COLUMNS, RESULT_COLUMNS
from models.event_spec import FEATURE_COLUMNS as EVENT_FEATURE_COLUMNS

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def tradecast_home(home: str | None = None) -> Path:
    """$TRADECAST_HOME, else `<project>/var`; created on first use."""
    path = Path(home or os.environ.get("TRADECAST_HOME") or PROJECT_ROOT / "var").expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def warehouse_path(home: str | None = None) -> Path:
    return tradecast_home(home) / "warehouse.duckdb"


def model_name(asset_class: str, target: str) -> str:
    """The registered MLflow model of one (asset class, target)."""
    return f"nhits-{asset_class}-{target}"


def mlflow_uri(home: str | None = None) -> str:
    """The MLflow tracking and registry URI (sqlite under the home)."""
    from models.rehome import rehome

    root = tradecast_home(home)
    rehome(root)  # a moved or restored home: its artifact locations point at itself, not the original
    return f"sqlite:///{root / 'mlflow.db'}"


# a symbol may exist in two asset classes (a ticker and a coin): bars are keyed on the class too
BARS_KEY = ["asset_class", "symbol", "freq", "ts"]
_BARS_DDL = """
CREATE TABLE IF NOT EXISTS bars (
    ts TIMESTAMPTZ NOT NULL, symbol VARCHAR NOT NULL, asset_class VARCHAR NOT NULL, freq VARCHAR NOT NULL,
    open DOUBLE NOT NULL, high DOUBLE NOT NULL, low DOUBLE NOT NULL, close DOUBLE NOT NULL, volume DOUBLE,
    source VARCHAR NOT NULL, source_row BIGINT, PRIMARY KEY (asset_class, symbol, freq, ts));"""
DDL = _BARS_DDL + """
CREATE TABLE IF NOT EXISTS symbols (
    symbol VARCHAR NOT NULL, asset_class VARCHAR NOT NULL, sector VARCHAR, company VARCHAR,
    source VARCHAR NOT NULL, PRIMARY KEY (symbol, asset_class));
CREATE TABLE IF NOT EXISTS news_events (
    ts TIMESTAMPTZ NOT NULL, source VARCHAR NOT NULL, symbol VARCHAR, headline VARCHAR NOT NULL,
    sentiment DOUBLE NOT NULL, source_row BIGINT);
CREATE TABLE IF NOT EXISTS macro_events (
    ts TIMESTAMPTZ NOT NULL, source VARCHAR NOT NULL, event_type VARCHAR NOT NULL, scheduled BOOLEAN,
    press_conference BOOLEAN, policy_surprise DOUBLE, source_row BIGINT, PRIMARY KEY (source, ts, event_type));
CREATE TABLE IF NOT EXISTS quarantine (
    table_name VARCHAR NOT NULL, source VARCHAR NOT NULL, source_file VARCHAR NOT NULL, source_row BIGINT,
    asset_class VARCHAR, reasons VARCHAR NOT NULL, raw VARCHAR, run_id VARCHAR, quarantined_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS source_loads (
    source VARCHAR PRIMARY KEY, table_name VARCHAR NOT NULL, asset_class VARCHAR, path VARCHAR,
    rows_read BIGINT NOT NULL, rows_accepted BIGINT NOT NULL, rows_quarantined BIGINT NOT NULL,
    run_id VARCHAR, loaded_at TIMESTAMPTZ NOT NULL);
ALTER TABLE source_loads ADD COLUMN IF NOT EXISTS kind VARCHAR;
ALTER TABLE source_loads ADD COLUMN IF NOT EXISTS rows_stored BIGINT;
CREATE TABLE IF NOT EXISTS training_frames (
    asset_class VARCHAR NOT NULL, target VARCHAR NOT NULL, unique_id VARCHAR NOT NULL, ds TIMESTAMP NOT NULL,
    y DOUBLE NOT NULL, PRIMARY KEY (asset_class, target, unique_id, ds));
CREATE TABLE IF NOT EXISTS model_evaluations (
    model_name VARCHAR NOT NULL, version VARCHAR NOT NULL, asset_class VARCHAR NOT NULL, target VARCHAR NOT NULL,
    model VARCHAR NOT NULL, mse DOUBLE, mae DOUBLE, mase DOUBLE, coverage_80 DOUBLE, n_windows BIGINT,
    n_series BIGINT, h INTEGER, step INTEGER, train_end TIMESTAMP, test_start TIMESTAMP, run_id VARCHAR,
    evaluated_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS model_promotions (
    decided_at TIMESTAMPTZ NOT NULL, model_name VARCHAR NOT NULL, asset_class VARCHAR NOT NULL,
    target VARCHAR NOT NULL, version VARCHAR NOT NULL, model_kind VARCHAR NOT NULL, decision VARCHAR NOT NULL,
    reason VARCHAR NOT NULL, challenger_mase DOUBLE, champion_version VARCHAR, champion_mase DOUBLE,
    best_baseline VARCHAR, best_baseline_mase DOUBLE, run_id VARCHAR);
CREATE TABLE IF NOT EXISTS forecasts (
    asset_class VARCHAR NOT NULL, target VARCHAR NOT NULL, symbol VARCHAR NOT NULL, ds TIMESTAMP NOT NULL,
    step INTEGER NOT NULL, yhat DOUBLE, lo DOUBLE, hi DOUBLE, model_name VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL, model_kind VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS benchmark_results (
    bench_id VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL, profile VARCHAR NOT NULL, device VARCHAR,
    device_name VARCHAR, seed INTEGER, dataset VARCHAR NOT NULL, asset_class VARCHAR, target VARCHAR,
    protocol VARCHAR, notes VARCHAR, h INTEGER, input_size INTEGER, freq VARCHAR, n_series INTEGER,
    n_windows_protocol INTEGER,
    step_size INTEGER, train_rows BIGINT, max_steps INTEGER, batch_size INTEGER, model VARCHAR NOT NULL,
    kind VARCHAR NOT NULL, mse DOUBLE, mae DOUBLE, mase DOUBLE, n_windows INTEGER, naive_mase_same_windows DOUBLE,
    params BIGINT, steps_done INTEGER, train_seconds DOUBLE, seconds_per_step DOUBLE, eval_seconds DOUBLE,
    throughput_wps DOUBLE, peak_memory_mb DOUBLE, memory_kind VARCHAR, capped BOOLEAN, cap_note VARCHAR,
    mlflow_run_id VARCHAR, PRIMARY KEY (bench_id, dataset, model));
ALTER TABLE benchmark_results ADD COLUMN IF NOT EXISTS peak_rss_mb DOUBLE;
CREATE TABLE IF NOT EXISTS drift_metrics (
    computed_at TIMESTAMPTZ NOT NULL, asset_class VARCHAR NOT NULL, symbol VARCHAR NOT NULL, feature VARCHAR NOT NULL,
    psi DOUBLE, ks DOUBLE, perf_ratio DOUBLE, n_ref BIGINT, n_cur BIGINT, ref_end TIMESTAMP, drifted BOOLEAN,
    reason VARCHAR, watermark TIMESTAMPTZ NOT NULL, class_drifted BOOLEAN NOT NULL, verdict VARCHAR, run_id VARCHAR);
CREATE TABLE IF NOT EXISTS event_features (
    asset_class VARCHAR NOT NULL, symbol VARCHAR NOT NULL, ds TIMESTAMP NOT NULL, freq VARCHAR NOT NULL,
    news_logn_short DOUBLE NOT NULL, news_logn_long DOUBLE NOT NULL, news_sent_mean_short DOUBLE NOT NULL,
    news_sent_mean_long DOUBLE NOT NULL, news_sent_min_short DOUBLE NOT NULL, news_sent_min_long DOUBLE NOT NULL,
    news_sent_max_short DOUBLE NOT NULL, news_sent_max_long DOUBLE NOT NULL, news_age DOUBLE NOT NULL,
    mkt_logn_short DOUBLE NOT NULL, mkt_logn_long DOUBLE NOT NULL, mkt_sent_mean_short DOUBLE NOT NULL,
    mkt_sent_mean_long DOUBLE NOT NULL, fomc_surprise DOUBLE NOT NULL, fomc_day DOUBLE NOT NULL,
    PRIMARY KEY (asset_class, symbol, ds));
CREATE TABLE IF NOT EXISTS live_metrics (
    recorded_at TIMESTAMPTZ NOT NULL, asset_class VARCHAR NOT NULL, target VARCHAR NOT NULL,
    model_name VARCHAR NOT NULL, model_version VARCHAR NOT NULL, model_kind VARCHAR NOT NULL, arm VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL, origin_ts TIMESTAMPTZ NOT NULL, step INTEGER NOT NULL, ts TIMESTAMPTZ NOT NULL,
    yhat DOUBLE NOT NULL, y DOUBLE NOT NULL, abs_error DOUBLE NOT NULL, scale DOUBLE);
CREATE TABLE IF NOT EXISTS benchmark_latency (
    bench_id VARCHAR NOT NULL, dataset VARCHAR NOT NULL, model VARCHAR NOT NULL, path VARCHAR NOT NULL,
    batch INTEGER NOT NULL, p50_ms DOUBLE, p95_ms DOUBLE, repeats INTEGER, windows_per_s DOUBLE, skipped VARCHAR,
    PRIMARY KEY (bench_id, dataset, model, path, batch));
"""
# columns written per table, in DDL order
COLUMNS = {
    "bars": ["ts", "symbol", "asset_class", "freq", "open", "high", "low", "close", "volume", "source", "source_row"],
    "symbols": ["symbol", "asset_class", "sector", "company", "source"],
    "news_events": ["ts", "source", "symbol", "headline", "sentiment", "source_row"],
    "macro_events": ["ts", "source", "event_type", "scheduled", "press_conference", "policy_surprise", "source_row"],
    "quarantine": ["table_name", "source", "source_file", "source_row", "asset_class", "reasons", "raw", "run_id",
                   "quarantined_at"],
    "source_loads": ["source", "table_name", "asset_class", "path", "rows_read", "rows_accepted",
                     "rows_quarantined", "run_id", "loaded_at", "kind", "rows_stored"],
    "training_frames": ["asset_class", "target", "unique_id", "ds", "y"],
    "model_evaluations": ["model_name", "version", "asset_class", "target", "model", "mse", "mae", "mase",
                          "coverage_80", "n_windows", "n_series", "h", "step", "train_end", "test_start", "run_id",
                          "evaluated_at"],
    "model_promotions": ["decided_at", "model_name", "asset_class", "target", "version", "model_kind", "decision",
                         "reason", "challenger_mase", "champion_version", "champion_mase", "best_baseline",
                         "best_baseline_mase", "run_id"],
    "forecasts": ["asset_class", "target", "symbol", "ds", "step", "yhat", "lo", "hi", "model_name",
                  "model_version", "model_kind", "created_at"],
    "benchmark_results": ["bench_id", "created_at", *RESULT_COLUMNS, "mlflow_run_id"],
    "drift_metrics": ["computed_at", "asset_class", "symbol", "feature", "psi", "ks", "perf_ratio", "n_ref", "n_cur",
                      "ref_end", "drifted", "reason", "watermark", "class_drifted", "verdict", "run_id"],
    "benchmark_latency": ["bench_id", *LATENCY_COLUMNS],
    "live_metrics": ["recorded_at", "asset_class", "target", "model_name", "model_version", "model_kind", "arm",
                     "symbol", "origin_ts", "step", "ts", "yhat", "y", "abs_error", "scale"],
    "event_features": ["asset_class", "symbol", "ds", "freq", *EVENT_FEATURE_COLUMNS],
}


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
                            f"restore it from a backup (or move it aside for a fresh load), then delete {_marker(path)}")
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


def connect(path, read_only: bool = False) -> "duckdb.DuckDBPyConnection":
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
        con.execute(_BARS_DDL.replace("EXISTS bars", "EXISTS bars_rekeyed"))
        con.execute(f"INSERT INTO bars_rekeyed ({cols}) SELECT {cols} FROM bars")
        con.execute("DROP TABLE bars")
        con.execute("ALTER TABLE bars_rekeyed RENAME TO bars")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def insert_frame(con, table: str, frame: "pd.DataFrame") -> int:
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


def replace_where(con, table: str, frame: "pd.DataFrame", where: dict[str, Any]) -> int:
    """Delete the rows matching `where` (column = value, NULL-safe) then insert `frame`."""
    clause = " AND ".join(f"{col} IS NOT DISTINCT FROM ?" for col in where) or "TRUE"
    con.execute(f"DELETE FROM {table} WHERE {clause}", list(where.values()))
    return insert_frame(con, table, frame)


def read_df(con, sql: str, params: list | None = None) -> "pd.DataFrame":
    return con.execute(sql, params or []).df()


def open_waiting(path, read_only: bool = False, lock_wait_s: float = 15.0) -> "duckdb.DuckDBPyConnection":
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
