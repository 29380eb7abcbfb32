"""Storage errors name the file and the root cause, and a damaged warehouse is never written into (real DuckDB
files, a real file-size limit, real Dagster runs)."""

import os
import resource
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_job, warehouse_query


def _error_of(result) -> str:
    """The user's error of a failed run (the innermost error that is not Dagster's wrapper)."""
    errors = [e.event_specific_data.error for e in result.all_events if e.is_step_failure]
    assert errors, "the run did not fail"
    texts, err = [], errors[0]
    while err is not None:
        texts.append(err.message)
        err = err.cause
    return " | ".join(texts)


@pytest.mark.slow
@pytest.mark.fault('a DuckDB warehouse with garbage over half its blocks',
                   'error names the file and "damaged"; marked; the next run refuses before opening it for writing')
def test_a_damaged_warehouse_is_named_marked_and_never_written_into(home):
    assert run_job("ingest_job", "fx", max_rows=3000, assets=["market_bars"]).success
    path = home / "warehouse.duckdb"
    size = path.stat().st_size
    with open(path, "r+b") as fh:  # garbage over most blocks, the header intact
        fh.seek(size // 4)
        fh.write(os.urandom(size // 2))
    result = run_job("ingest_job", "fx", max_rows=3000, assets=["market_bars"], raise_on_error=False)
    message = _error_of(result)
    assert str(path) in message and "damaged" in message, message
    assert (home / "warehouse.duckdb.corrupt").exists()
    grown = path.stat().st_size
    again = run_job("ingest_job", "fx", max_rows=3000, assets=["market_bars"], raise_on_error=False)
    assert "marked damaged" in _error_of(again)
    assert path.stat().st_size == grown  # refused before opening it for writing


def _file_size_limit(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.slow
@pytest.mark.fault('`ulimit -f` during an ingest transaction',
                   '"File too large" and the file named (not "transaction is aborted"); committed rows unchanged')
def test_a_write_cut_by_a_file_size_limit_says_file_too_large_and_keeps_the_committed_rows(home):
    assert run_job("ingest_job", "fx", max_rows=2000, assets=["market_bars"]).success
    before = int(warehouse_query("SELECT count(*) AS n FROM bars").n.iloc[0])
    path = home / "warehouse.duckdb"
    code = "from pipelines.cli.runner import run_job; run_job('ingest_job', 'equities')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=os.environ.copy(), capture_output=True,
                         text=True, timeout=300, preexec_fn=_file_size_limit(path.stat().st_size + 64 * 1024))
    said = out.stdout + out.stderr
    assert out.returncode != 0
    assert "File too large" in said and str(path) in said, said[-3000:]
    assert "Current transaction is aborted" not in said
    assert int(warehouse_query("SELECT count(*) AS n FROM bars").n.iloc[0]) == before
