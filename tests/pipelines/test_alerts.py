"""Alerts on a real instance and DuckDB file: the freshness checks of `market_bars` and `forecasts` (with Dagster's
freshness sensor) and the run-failure sensor writing alerts.jsonl and POSTing its webhook."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pytest

from tests.conftest import BAD, CANONICAL, run_job, write_catalog

BARS_FRESH = dg.AssetCheckKey(dg.AssetKey("market_bars"), "check_market_bars_fresh")
FORECASTS_FRESH = dg.AssetCheckKey(dg.AssetKey("forecasts"), "check_forecasts_fresh")


def _instance() -> dg.DagsterInstance:
    from pipelines.instance import ensure_dagster_home

    ensure_dagster_home()
    return dg.DagsterInstance.get()


def _latest(key: dg.AssetCheckKey):
    """The check's latest completed evaluation, as the UI shows it."""
    with _instance() as instance:
        record = instance.event_log_storage.get_asset_check_summary_records([key])[key]
    return record.last_completed_check_execution_record.event.asset_check_evaluation


def _check_only(check) -> dg.AssetCheckEvaluation:
    """A run of just ``check`` (what `freshness_checks_sensor` launches), on the real definitions' resources."""
    from assets.forecasts import forecasts
    from assets.market_bars import market_bars
    from pipelines.definitions import defs

    with _instance() as instance:
        result = dg.materialize([market_bars, forecasts, check], selection=dg.AssetSelection.checks(check),
                                instance=instance, resources=defs.resources)
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def _requested(sensor) -> set[dg.AssetCheckKey]:
    with _instance() as instance, dg.build_sensor_context(instance=instance) as context:
        request = sensor(context)
    return set(request.asset_check_keys) if isinstance(request, dg.RunRequest) else set()


@pytest.fixture
def tiny_crypto(home, tmp_path, monkeypatch):
    """A catalog holding one 40-day crypto file."""
    rows = ["ts,symbol,open,high,low,close,volume"] + [
        f"2024-01-{d:02d},AAA,{100 + d},{101 + d},{99 + d},{100.5 + d},10" for d in range(1, 32)] + [
        f"2024-02-{d:02d},AAA,{131 + d},{132 + d},{130 + d},{131.5 + d},10" for d in range(1, 10)]
    (tmp_path / "tiny.csv").write_text("\n".join(rows) + "\n")
    entry = {"name": "tiny", "path": str(tmp_path / "tiny.csv"), "table": "bars", "asset_class": "crypto",
             "freq": "1d", "columns": dict(CANONICAL)}
    monkeypatch.setenv("TRADECAST_CATALOG", str(write_catalog(tmp_path / "catalog.yaml", [entry])))
    return home


def test_stale_market_bars_fail_their_freshness_check_naming_the_partition(tiny_crypto, monkeypatch):
    from pipelines.cli.runner import run_job as cli_run_job
    from pipelines.sensors import freshness_checks_sensor

    monkeypatch.setenv("TRADECAST_MARKET_BARS_MAX_AGE", "8s")
    rows = cli_run_job("ingest_job", "crypto", echo=lambda _: None)  # the check comes along: `make run`'s table
    assert ("check_market_bars_fresh", "crypto", "passed") in rows
    fresh = _latest(BARS_FRESH)
    assert fresh.passed and fresh.metadata["stale_partitions"].value == {}
    assert fresh.metadata["never_materialized"].value == ["equities", "fx"]  # listed, not failed

    # Dagster's freshness sensor drives our checks through their fresh_until metadata: not before it passed...
    assert _requested(freshness_checks_sensor) == {FORECASTS_FRESH}  # forecasts' check never ran: requested
    time.sleep(max(0.0, fresh.metadata["dagster/fresh_until_timestamp"].value - time.time()) + 0.2)
    assert _requested(freshness_checks_sensor) == {BARS_FRESH, FORECASTS_FRESH}  # ...then it is due again

    from assets.freshness import check_market_bars_fresh

    stale = _check_only(check_market_bars_fresh)
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.ERROR
    assert list(stale.metadata["stale_partitions"].value) == ["crypto"]
    assert "crypto" in stale.description and "STALE" in stale.metadata["partitions"].value
    assert not _latest(BARS_FRESH).passed  # what the UI shows: red

    # a stale partition is reported by the CLI, but does not fail the command of a run that succeeded
    monkeypatch.setenv("TRADECAST_MARKET_BARS_MAX_AGE", "1ms")
    rows = cli_run_job("ingest_job", "crypto", echo=lambda _: None)
    assert ("check_market_bars_fresh", "crypto", "FAILED (ERROR)") in rows

    monkeypatch.delenv("TRADECAST_MARKET_BARS_MAX_AGE")  # the default window, 26h: fresh again
    again = _check_only(check_market_bars_fresh)
    assert again.passed and again.metadata["window"].value == "1d 2h"


def test_forecasts_freshness_judges_each_class_and_target(home, monkeypatch):
    from assets.freshness import check_forecasts_fresh

    empty = _check_only(check_forecasts_fresh)  # a fresh install: nothing to be late with
    assert empty.passed and len(empty.metadata["never_materialized"].value) == 6
    with _instance() as instance:  # a materialization recorded by the instance (as an external run would)
        instance.report_runless_asset_event(dg.AssetMaterialization("forecasts", partition="fx|close"))
    assert _check_only(check_forecasts_fresh).passed  # within the default 8 days
    monkeypatch.setenv("TRADECAST_FORECASTS_MAX_AGE", "1ms")
    missed = _check_only(check_forecasts_fresh)
    assert not missed.passed and list(missed.metadata["stale_partitions"].value) == ["fx|close"]
    assert "crypto|close" in missed.metadata["never_materialized"].value


def test_a_mistyped_window_is_an_error_not_a_pass(home, monkeypatch):
    from resources import Settings

    assert Settings(forecasts_max_age="36h").forecasts_window.total_seconds() == 36 * 3600
    monkeypatch.setenv("TRADECAST_MARKET_BARS_MAX_AGE", "26 hours")
    with pytest.raises(ValueError, match="TRADECAST_MARKET_BARS_MAX_AGE.*'26 hours' is not a duration"):
        _ = Settings().market_bars_window


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/t0ken", _Hook.received
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failed_run_writes_one_alert_and_posts_it(home, tmp_path, monkeypatch, webhook):
    from pipelines.definitions import defs
    from pipelines.sensors import run_failure_sensor
    from resources import Settings
    from storage.alerts import alerts_path, post_webhook, read_alerts

    def tick(cursor):
        """One evaluation as the daemon does it: the runs that failed since ``cursor``, from the event log."""
        with _instance() as instance, dg.build_sensor_context(
                instance=instance, cursor=cursor, resources={"settings": Settings()},
                repository_def=defs.get_repository_def()) as context:
            return run_failure_sensor.evaluate_tick(context).cursor

    url, received = webhook
    monkeypatch.setenv("TRADECAST_ALERT_WEBHOOK", url)
    before = tick(None)  # the first tick only marks where the event log stands
    entries = [{"name": "broken", "path": str(BAD / "latin1_encoding.csv"), "table": "bars", "asset_class": "fx",
                "freq": "1d", "columns": {c: c for c in ("ts", "symbol", "close")}}]
    monkeypatch.setenv("TRADECAST_CATALOG", str(write_catalog(tmp_path / "catalog.yaml", entries)))
    result = run_job("ingest_job", "fx", raise_on_error=False)
    assert not result.success and read_alerts() == []

    after = tick(before)
    [alert] = read_alerts()
    assert alerts_path() == home.resolve() / "alerts" / "alerts.jsonl"
    assert alert["run_id"] == result.run_id and alert["job"] == "ingest_job" and alert["partition"] == "fx"
    assert alert["steps"] == ["market_bars"] and "latin1_encoding.csv: not UTF-8 text" in alert["error"]
    assert alert["time"] and alert["kind"] == "run_failure"
    assert received == [alert]  # the same record, POSTed as JSON
    tick(after)
    assert len(read_alerts()) == 1  # a failure alerts once

    monkeypatch.setenv("TRADECAST_ALERT_WEBHOOK", f"http://127.0.0.1:{_closed_port()}/hooks/t0ken")
    tick(before)  # the same failure again: an unreachable webhook is logged, never raised; the alert is on disk
    assert [a["run_id"] for a in read_alerts()] == [result.run_id] * 2 and len(received) == 1
    problem = post_webhook(f"http://127.0.0.1:{_closed_port()}/hooks/t0ken", alert, timeout_s=2)
    assert problem and "127.0.0.1" in problem and "t0ken" not in problem  # a URL's token never reaches a log


def test_the_sensor_reads_a_run_status_context_too(home, tmp_path, monkeypatch):
    """Dagster's documented unit-test entry point (`build_run_status_sensor_context`) for a failed run."""
    from pipelines.sensors import run_failure_sensor
    from resources import Settings
    from storage.alerts import read_alerts

    @dg.asset
    def exploding():
        raise RuntimeError("the feed returned garbage")

    with _instance() as instance:
        result = dg.materialize([exploding], instance=instance, raise_on_error=False)
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_sensor", dagster_event=result.get_run_failure_event(),
            dagster_instance=instance, dagster_run=result.dagster_run,
            resources={"settings": Settings()}).for_run_failure()
        run_failure_sensor(context)
    [alert] = read_alerts()
    assert alert["run_id"] == result.run_id and alert["steps"] == ["exploding"]
    assert alert["error"] == "RuntimeError: the feed returned garbage"
