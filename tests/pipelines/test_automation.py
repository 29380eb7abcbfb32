"""Schedules, the incoming-files sensor and the drift sensor on a real instance and DuckDB file."""

import datetime as dt
import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, run_job, warehouse_query, write_catalog


def _resources():
    from resources import Settings, Warehouse

    settings = Settings()
    return {"settings": settings, "warehouse": Warehouse(settings=settings)}


def _evaluate(sensor, cursor=None):
    from pipelines.instance import ensure_dagster_home

    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance, \
            dg.build_sensor_context(instance=instance, cursor=cursor, resources=_resources()) as context:
        return sensor(context)


def test_retrain_schedules_request_one_run_per_target_with_a_stable_run_key():
    from pipelines.definitions import defs

    when = dt.datetime(2026, 11, 25, 21, 30, tzinfo=dt.UTC)
    schedule = defs.resolve_schedule_def("equities_retrain_schedule")
    assert schedule.cron_schedule == "30 21 * * 1-5" and schedule.job_name == "retrain_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING

    def context():
        return dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def())

    first = schedule.evaluate_tick(context()).run_requests
    again = schedule.evaluate_tick(context()).run_requests
    assert sorted(str(r.partition_key) for r in first) == sorted(
        str(dg.MultiPartitionKey({"asset_class": "equities", "target": t})) for t in ("close", "volatility"))
    assert [r.run_key for r in first] == [r.run_key for r in again]
    assert all(when.isoformat() in r.run_key for r in first)
    crypto = defs.resolve_schedule_def("crypto_retrain_schedule")
    assert crypto.cron_schedule == "15 */6 * * *"  # four times a day: crypto trades around the clock
    assert len(crypto.evaluate_tick(context()).run_requests) == 2
    bench = defs.resolve_schedule_def("weekly_benchmark_schedule")
    requests = bench.evaluate_tick(context()).run_requests
    assert sorted(r.partition_key for r in requests) == ["crypto", "equities", "fx"]
    assert bench.job_name == "benchmark_job"


@pytest.fixture
def fx_slice(home, tmp_path, monkeypatch):
    """A catalog holding only the bundled daily exchange-rate file; its first 1100 days are loaded."""
    entries = yaml.safe_load((ROOT / "data" / "sources.yaml").read_text())["sources"]
    entry = next(e for e in entries if e["name"] == "fx_daily_lstnet")
    entry["path"] = str(ROOT / "data" / entry["path"])
    monkeypatch.setenv("TRADECAST_CATALOG", str(write_catalog(tmp_path / "catalog.yaml", [entry])))
    assert run_job("ingest_job", "fx", max_rows=1100, assets=["market_bars"]).success
    return home


def _shifted_file(path, symbols=("AUDUSD", "GBPUSD", "CADUSD", "CHFUSD"), days=250, scale=5.0):
    """250 new business days for 4 of the 8 pairs, whose real daily returns are made 5x larger."""
    bars = warehouse_query("SELECT symbol, ts, close FROM bars ORDER BY symbol, ts")
    rows = []
    for symbol in symbols:
        part = bars[bars.symbol == symbol]
        returns = np.diff(np.log(part.close.to_numpy()))[-days:] * scale
        close = part.close.iloc[-1] * np.exp(np.cumsum(returns))
        stamps = pd.bdate_range(part.ts.iloc[-1].tz_convert(None) + pd.offsets.BDay(1), periods=len(close))
        rows.append(pd.DataFrame({"ts": stamps.strftime("%Y-%m-%d"), "symbol": symbol, "open": close, "high": close,
                                  "low": close, "close": close, "volume": 0}))
    pd.concat(rows).to_csv(path, index=False)
    return path


def _materialize_drift():
    from assets.drift_metrics import drift_metrics
    from pipelines.definitions import defs
    from pipelines.instance import ensure_dagster_home

    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize([drift_metrics], partition_key="fx", instance=instance, resources=defs.resources)
    [mat] = result.asset_materializations_for_node("drift_metrics")
    return mat.metadata


@pytest.mark.slow
def test_incoming_file_is_ingested_once_and_drift_triggers_retraining_once(fx_slice):
    from pipelines.sensors import drift_sensor, incoming_files_sensor

    # unchanged data: drift computed, nothing drifted enough -> the drift sensor skips and says why
    meta = _materialize_drift()
    assert meta["drifted"].value is False
    skipped = _evaluate(drift_sensor)
    assert isinstance(skipped, dg.SkipReason) and "fx: no drift" in skipped.skip_message

    # a shifted slice arrives through incoming/fx/
    incoming = fx_slice / "incoming" / "fx"
    incoming.mkdir(parents=True)
    _shifted_file(incoming / "shifted.csv")
    result = _evaluate(incoming_files_sensor)
    [request] = result.run_requests
    assert request.job_name == "ingest_job" and request.partition_key == "fx"
    assert (fx_slice / "incoming" / "done" / "shifted.csv").exists() and not (incoming / "shifted.csv").exists()
    again = _evaluate(incoming_files_sensor, cursor=result.cursor)
    assert isinstance(again, dg.SkipReason)  # ingested once
    assert run_job("ingest_job", "fx", max_rows=1100, assets=["market_bars"]).success  # the requested run (same slice)
    counts = warehouse_query("SELECT source, count(*) AS n FROM bars GROUP BY source ORDER BY source")
    assert dict(zip(counts.source, counts.n, strict=True)) == {"fx_daily_lstnet": 1100 * 8, "user_shifted": 4 * 250}

    meta = _materialize_drift()
    assert meta["drifted"].value is True and "symbol features drifted" in meta["verdict"].value
    first = _evaluate(drift_sensor)
    keys = sorted(str(r.partition_key) for r in first.run_requests)
    assert keys == sorted(str(dg.MultiPartitionKey({"asset_class": "fx", "target": t}))
                          for t in ("close", "volatility"))
    assert all(r.job_name in (None, "retrain_job") for r in first.run_requests)
    second = _evaluate(drift_sensor)  # same drift, same watermark -> same run keys: the daemon runs them once
    assert [r.run_key for r in first.run_requests] == [r.run_key for r in second.run_requests]
    rows = warehouse_query("SELECT * FROM drift_metrics WHERE class_drifted ORDER BY psi DESC")
    shifted = rows[rows.symbol.isin(["AUDUSD", "GBPUSD", "CADUSD", "CHFUSD"])]
    assert len(shifted) == 8 and shifted.drifted.sum() >= 5  # half of the current window is the shifted slice
    assert rows.iloc[0].symbol in {"AUDUSD", "GBPUSD", "CADUSD", "CHFUSD"}  # the largest shift is a shifted pair
    assert rows.watermark.nunique() == 1


def test_incoming_sensor_rejects_an_unusable_file_with_a_reason(home):
    from pipelines.sensors import incoming_files_sensor

    root = home / "incoming"
    (root / "crypto").mkdir(parents=True)
    (root / "crypto" / "broken.csv").write_text("when,what\n1,2\n")
    (root / "mystery.csv").write_text("ts,symbol,close\n2024-01-01,NEWCOIN,1\n")
    result = _evaluate(incoming_files_sensor)
    assert not result.run_requests
    reason = (root / "rejected" / "broken.csv.reason.txt").read_text()
    assert "no column for" in reason and "broken.csv" in reason
    assert "cannot tell the asset class" in (root / "rejected" / "mystery.csv.reason.txt").read_text()
    assert json.loads(result.cursor) and not list((root / "crypto").iterdir())
    assert isinstance(_evaluate(incoming_files_sensor, cursor=result.cursor), dg.SkipReason)
