"""Materialize the ingest assets on slices of the bundled data into a real DuckDB file and a real
Dagster instance (temporary TRADECAST_HOME): counts reconcile, re-runs are idempotent, writes atomic."""

import duckdb
import pytest

from tests.conftest import BAD, ROOT, run_job, warehouse_query, write_catalog

COUNTS = """SELECT (SELECT count(*) FROM bars) AS bars, (SELECT count(*) FROM quarantine) AS quarantine,
                   (SELECT count(*) FROM symbols) AS symbols, (SELECT count(*) FROM source_loads) AS loads"""


def _checks(result):
    return {c.asset_check_key.name: c.passed for c in result.get_asset_check_evaluations()}


@pytest.mark.parametrize("asset_class", ["equities", "crypto", "fx"])
def test_market_bars_partition_loads_a_slice_and_reconciles(home, asset_class):
    result = run_job("ingest_job", asset_class, max_rows=1500, assets=["market_bars"])
    assert result.success
    assert _checks(result)["check_market_bars_counts_reconcile"] is True
    assert _checks(result)["check_market_bars_ohlc_consistent"] is True
    loads = warehouse_query("SELECT * FROM source_loads WHERE table_name = 'bars'")
    assert set(loads.asset_class) == {asset_class} and (loads.rows_read > 0).all()
    assert (loads.rows_read == loads.rows_accepted + loads.rows_quarantined).all()
    stored = warehouse_query("SELECT asset_class, count(*) AS n FROM bars GROUP BY ALL")
    assert list(stored.asset_class) == [asset_class] and stored.n[0] == loads.rows_accepted.sum()
    meta = result.asset_materializations_for_node("market_bars")[0].metadata
    assert meta["rows_read"].value == loads.rows_read.sum()
    assert meta["dagster/row_count"].value == stored.n[0]


def test_rematerializing_a_partition_is_idempotent_and_leaves_other_partitions_alone(home):
    run_job("ingest_job", "fx", max_rows=800, assets=["market_bars"])
    run_job("ingest_job", "crypto", max_rows=800, assets=["market_bars"])
    first = warehouse_query(COUNTS)
    run_job("ingest_job", "fx", max_rows=800, assets=["market_bars"])
    assert warehouse_query(COUNTS).equals(first)
    per_class = warehouse_query("SELECT asset_class, count(*) AS n FROM bars GROUP BY ALL ORDER BY 1")
    assert list(per_class.asset_class) == ["crypto", "fx"]


def test_events_job_loads_news_and_macro_events_and_the_quarantine_summary(home):
    result = run_job("events_job", max_rows=1200, assets=["news_events", "macro_events"])
    checks = _checks(result)
    assert checks["check_news_events_counts_reconcile"] and checks["check_macro_events_counts_reconcile"]
    assert checks["check_news_events_sentiment_range"]
    news = warehouse_query("SELECT source, count(*) AS n, min(sentiment) AS lo, max(sentiment) AS hi, "
                           "count(symbol) AS with_symbol FROM news_events GROUP BY ALL ORDER BY 1")
    assert list(news.source) == ["analyst_ratings", "reddit_worldnews", "stocknet_tweets"]
    assert (news.lo >= -1).all() and (news.hi <= 1).all() and news.lo.min() < 0 < news.hi.max()
    assert news.set_index("source").with_symbol["reddit_worldnews"] == 0  # market-wide headlines
    macro = warehouse_query("SELECT event_type, count(policy_surprise) AS known FROM macro_events GROUP BY ALL")
    assert "FOMC Meeting" in set(macro.event_type)
    summary = result.asset_materializations_for_node("quarantine")[0].metadata
    assert "dagster/row_count" in summary


def test_crafted_file_reconciles_and_its_bad_rows_are_in_quarantine(home, tmp_path, monkeypatch):
    entries = [{"name": name.split(".")[0], "path": str(BAD / name), "table": "bars", "asset_class": "crypto",
                "freq": "1d", "columns": {c: c for c in ("ts", "symbol", "open", "high", "low", "close", "volume")}}
               for name in ("ohlc_violations.csv", "bad_numbers.csv", "duplicate_keys.csv", "sql_injection_symbol.csv")]
    monkeypatch.setenv("TRADECAST_CATALOG", str(write_catalog(tmp_path / "catalog.yaml", entries)))
    result = run_job("ingest_job", "crypto")
    assert _checks(result)["check_market_bars_counts_reconcile"]
    loads = warehouse_query("SELECT source, rows_read, rows_accepted, rows_quarantined FROM source_loads ORDER BY 1")
    # the first source in the catalog wins a key: AAA 2024-01-01 is kept from ohlc_violations row 1, while
    # duplicate_keys' AAA 2024-01-02 is accepted since ohlc_violations' row for that key was itself rejected
    assert loads.values.tolist() == [["bad_numbers", 4, 0, 4], ["duplicate_keys", 4, 2, 2],
                                     ["ohlc_violations", 6, 1, 5], ["sql_injection_symbol", 2, 2, 0]]
    reasons = warehouse_query("SELECT reasons FROM quarantine WHERE source = 'duplicate_keys' ORDER BY source_row")
    assert reasons.reasons.str.contains("kept ohlc_violations row 1").sum() == 2
    symbols = set(warehouse_query("SELECT symbol FROM bars").symbol)
    assert {"x'; DROP TABLE bars;--", 'Robert"); DROP TABLE symbols;--'} <= symbols
    assert warehouse_query("SELECT count(*) AS n FROM symbols").n[0] >= 2  # the table survived


def test_unreadable_file_fails_the_run_naming_the_file_and_writes_nothing(home, tmp_path, monkeypatch):
    entries = [{"name": "ok", "path": str(ROOT / "tests/data/bad/duplicate_keys.csv"), "table": "bars",
                "asset_class": "fx", "freq": "1d", "columns": {c: c for c in ("ts", "symbol", "close")}},
               {"name": "broken", "path": str(BAD / "latin1_encoding.csv"), "table": "bars", "asset_class": "fx",
                "freq": "1d", "columns": {c: c for c in ("ts", "symbol", "close")}}]
    monkeypatch.setenv("TRADECAST_CATALOG", str(write_catalog(tmp_path / "catalog.yaml", entries)))
    with pytest.raises(Exception, match="latin1_encoding.csv: not UTF-8 text"):
        run_job("ingest_job", "fx")
    assert warehouse_query("SELECT count(*) AS n FROM bars").n[0] == 0


def test_a_failed_write_rolls_back_the_whole_partition(home):
    from resources import Settings, Warehouse

    run_job("ingest_job", "fx", max_rows=300, assets=["market_bars"])
    before = warehouse_query(COUNTS)
    from storage.duck import StorageError

    warehouse = Warehouse(settings=Settings())
    with (pytest.raises(StorageError, match="warehouse.duckdb: writing the warehouse failed: Constraint") as err,
          warehouse.transaction() as con):
        con.execute("DELETE FROM bars WHERE asset_class = 'fx'")
        con.execute("INSERT INTO bars SELECT * FROM bars LIMIT 0")
        con.execute("INSERT INTO quarantine SELECT * FROM quarantine")
        con.execute("INSERT INTO source_loads SELECT * FROM source_loads")  # primary key clash
    assert isinstance(err.value.__cause__, duckdb.ConstraintException)  # the root cause, kept
    assert warehouse_query(COUNTS).equals(before)
