"""`tradecast mcp`: the real server as a subprocess (stdio, and streamable HTTP on 127.0.0.1) through the SDK's own
client, over a real DuckDB warehouse and a real MLflow registry under the test's TRADECAST_HOME."""

import json
import os
import socket
import subprocess
import sys
import time

import anyio
import pandas as pd
import pytest

from domain.vocabulary import model_name
from tests.conftest import ROOT

NAME = "nhits-crypto-close"
T0 = pd.Timestamp("2024-03-01 00:00")
NOW = pd.Timestamp("2024-03-02 12:00", tz="UTC")
SESSION_S = 120  # every subprocess session is bounded: a hung server fails the test, never the suite


def _forecast_rows(symbol, asset_class, version, created_at, yhat0, n=3, target="close"):
    return pd.DataFrame({
        "asset_class": asset_class, "target": target, "symbol": symbol,
        "ds": [T0 + pd.Timedelta(minutes=5 * (i + 1)) for i in range(n)], "step": list(range(1, n + 1)),
        "yhat": [yhat0 + i for i in range(n)], "lo": [float("nan")] + [yhat0 + i - 1 for i in range(1, n)],
        "hi": [yhat0 + i + 1 for i in range(n)], "model_name": model_name(asset_class, target),
        "model_version": version, "model_kind": "nhits", "created_at": created_at})


def _signal_rows():
    from storage.schema import COLUMNS

    def row(strategy, source, day, position):
        period = {"period": "next" if day == 3 else "test"} if "period" in COLUMNS["signals"] else {}
        return {**period, "asset_class": "crypto", "strategy": strategy, "source": source, "symbol": "BTCUSDT",
                "ds": T0 + pd.Timedelta(minutes=5 * day), "cutoff": T0 + pd.Timedelta(minutes=5 * (day - 1)),
                "vol_hat": 0.001 * day, "mu": 0.0002 * day, "position": position,
                "vol_model": "nhits-crypto-volatility", "vol_version": "3", "close_model": NAME, "close_version": "2",
                "params": json.dumps({"target_vol": 0.1, "leverage_cap": 2.0}), "run_id": "r1", "created_at": NOW}

    return pd.DataFrame([row("vol_target", "champion", 1, 0.5), row("vol_target", "champion", 2, 0.75),
                         row("vol_target", "champion", 3, 1.25), row("direction", "champion", 3, -1.0),
                         row("vol_target", "naive", 9, 9.0)])  # another source, later: never the champion's signal


def _backtest_rows():
    base = {"asset_class": "crypto", "start_ds": T0, "end_ds": T0 + pd.Timedelta(days=1), "n_bars": 288,
            "n_symbols": 3, "ann_vol": 0.1, "sortino": 1.5, "max_drawdown": -0.05, "turnover": 12.0, "hit_rate": 0.52,
            "total_return": 0.01, "cost_drag": 0.002, "cost_bps": 1.0, "slippage_bps": 1.0, "vol_version": "3",
            "close_version": "2", "mlflow_run_id": None, "run_id": "r1", "computed_at": NOW}
    return pd.DataFrame([{**base, "strategy": "vol_target", "source": "champion", "ann_return": 0.12, "sharpe": 1.2},
                         {**base, "strategy": "vol_target", "source": "naive", "ann_return": 0.05,
                          "sharpe": float("nan")}])


def _evaluation_rows(version):
    base = {"model_name": NAME, "version": version, "asset_class": "crypto", "target": "close", "mse": 1.0,
            "coverage_80": None, "n_series": 3, "h": 3, "step": 3, "train_end": T0, "test_start": T0, "run_id": "r1",
            "qlike": None, "mse_var": None, "crps": None, "interval_width": None, "n_points": 90, "model_family": None}
    earlier = NOW - pd.Timedelta(1, "h")
    return pd.DataFrame([
        {**base, "model": "window_mean", "mase": 9.99, "mae": 9.0, "n_windows": 2, "evaluated_at": earlier},
        {**base, "model": "window_mean", "mase": 0.8765, "mae": 1.5, "n_windows": 4, "evaluated_at": NOW},
        {**base, "model": "naive", "mase": 1.0, "mae": 1.7, "n_windows": 4, "evaluated_at": NOW}])


def _promotion_rows(version):
    from storage.schema import COLUMNS

    def row(decided_at, decision, reason):
        return {**dict.fromkeys(COLUMNS["model_promotions"]), "decided_at": decided_at, "model_name": NAME,
                "asset_class": "crypto", "target": "close", "version": version, "model_kind": "baseline",
                "decision": decision, "reason": reason, "metric": "mase", "challenger_score": 0.8765,
                "best_baseline": "window_mean", "best_baseline_score": 0.8765, "p_value_baseline": 0.03}

    return pd.DataFrame([row(NOW - pd.Timedelta(1, "h"), "refused", "older decision"),
                         row(NOW, "bootstrap", "best servable baseline of the first evaluation")])


def _write(tables: dict) -> None:
    from resources import Settings, Warehouse
    from storage.duck import insert_frame

    with Warehouse(settings=Settings()).transaction() as con:
        for table, frame in tables.items():
            insert_frame(con, table, frame)


def _register_baseline(home) -> str:
    """A real baseline-kind version with alias `champion`, registered the way `nhits_model` bootstraps one."""
    from domain.vocabulary import BASELINE_KIND, CHAMPION
    from storage.registry import Registry

    registry = Registry(home)
    params = {"name": "window_mean", "h": 3, "input_size": 12, "season_length": 3, "freq": "5min"}
    version = registry.log_version(NAME, kind=BASELINE_KIND, baseline=params, params=params, metrics={"mase": 0.8765},
                                   tags={"asset_class": "crypto", "target": "close", "baseline": "window_mean"},
                                   evaluation=pd.DataFrame({"model": ["window_mean"], "mase": [0.8765]}))
    registry.tag(NAME, version, {"baseline": "window_mean"})
    registry.set_alias(NAME, CHAMPION, version)
    return version


def _server(home, *args):
    from mcp.client.stdio import StdioServerParameters

    return StdioServerParameters(command=sys.executable, args=["-m", "pipelines.cli", "mcp", *args],
                                 env={"TRADECAST_HOME": str(home)}, cwd=str(ROOT))


async def _call(client, tool, **arguments):
    result = await client.call_tool(tool, arguments)
    return result.is_error, (result.content[0].text if result.is_error else result.structured_content)


async def _stdio_session(home, version):
    from mcp.client import Client
    from mcp.shared.exceptions import MCPError

    from storage.duck import connect
    from storage.schema import COLUMNS

    with anyio.fail_after(SESSION_S):
        async with Client(_server(home, "--lock-wait", "1"), cache=None, read_timeout_seconds=60) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == {"get_forecast", "get_signal", "list_models", "backtest_summary"}
            assert all(len(t.description) > 60 for t in tools.values())
            assert tools["get_forecast"].input_schema["properties"]["target"]["enum"] == ["close", "volatility"]
            assert tools["get_forecast"].input_schema["required"] == ["symbol", "target"]

            # the newest forecast of the champion, NaN as null, timestamps as ISO strings
            error, out = await _call(client, "get_forecast", symbol="BTCUSDT", target="close")
            assert not error, out
            assert (out["asset_class"], out["model_version"], out["model_kind"]) == ("crypto", "2", "nhits")
            assert out["created_at"] == NOW.isoformat()
            assert out["steps"] == [
                {"step": 1, "ds": "2024-03-01T00:05:00", "yhat": 100.0, "lo": None, "hi": 101.0},
                {"step": 2, "ds": "2024-03-01T00:10:00", "yhat": 101.0, "lo": 100.0, "hi": 102.0},
                {"step": 3, "ds": "2024-03-01T00:15:00", "yhat": 102.0, "lo": 101.0, "hi": 103.0}]
            error, text = await _call(client, "get_forecast", symbol="SOL", target="close")
            assert error and "several asset classes" in text and "crypto" in text and "equities" in text
            error, out = await _call(client, "get_forecast", symbol="SOL", target="close", asset_class="equities")
            assert not error and out["model_name"] == "nhits-equities-close" and out["steps"][0]["yhat"] == 50.0

            # wrong arguments and missing data: the tool's own words, the argument and what is allowed
            for arguments, expected in [
                ({"symbol": "NOPE", "target": "close"}, "unknown symbol 'NOPE'"),
                ({"symbol": "BTCUSDT", "target": "price"}, "target must be one of ['close', 'volatility']"),
                ({"symbol": "BTCUSDT", "target": "close", "asset_class": "stocks"},
                 "asset_class must be one of ['crypto', 'equities', 'fx']"),
                ({"symbol": "BTCUSDT", "target": "volatility"}, "materialize forecasts")]:
                error, text = await _call(client, "get_forecast", **arguments)
                assert error and expected in text, (arguments, text)
                assert "Traceback" not in text
            error, text = await _call(client, "get_forecast", symbol="NOPE", target="close")
            assert "BTCUSDT" in text  # the known symbols are named

            error, out = await _call(client, "get_signal", symbol="BTCUSDT")
            assert not error, out
            by = {s["strategy"]: s for s in out["strategies"]}
            assert list(by) == ["vol_target", "direction"]  # vocabulary order
            vt = by["vol_target"]
            assert (vt["ds"], vt["position"], vt["previous_position"], vt["change"]) == \
                   ("2024-03-01T00:15:00", 1.25, 0.75, 0.5)
            assert vt["params"] == {"target_vol": 0.1, "leverage_cap": 2.0}
            assert (vt["vol_version"], vt["close_version"], vt["vol_hat"]) == ("3", "2", 0.003)
            assert (by["direction"]["position"], by["direction"]["previous_position"]) == (-1.0, None)
            assert vt["period"] == ("next" if "period" in COLUMNS["signals"] else None)  # the bar after the data
            error, text = await _call(client, "get_signal", symbol="NOPE")
            assert error and "unknown symbol 'NOPE'" in text
            error, text = await _call(client, "get_signal", symbol="BTCUSDT", asset_class="fx")
            assert error and "materialize signals (partition fx)" in text

            error, out = await _call(client, "backtest_summary", asset_class="crypto")
            assert not error, out
            rows = {(r["strategy"], r["source"]): r for r in out["results"]}
            assert rows[("vol_target", "champion")]["sharpe"] == 1.2
            assert rows[("vol_target", "naive")]["sharpe"] is None and rows[("vol_target", "naive")]["n_bars"] == 288
            assert rows[("vol_target", "champion")]["start_ds"] == "2024-03-01T00:00:00"
            error, text = await _call(client, "backtest_summary", asset_class="fx")
            assert error and "materialize backtest_report" in text
            error, text = await _call(client, "backtest_summary", asset_class="bonds")
            assert error and "asset_class must be one of" in text

            error, out = await _call(client, "list_models")
            assert not error, out
            models = {m["name"]: m for m in out["models"]}
            assert len(models) == 6 and "not registered" in models["nhits-fx-close"]["note"]
            model = models[NAME]
            assert model["aliases"] == {"champion": version}
            assert [(v["version"], v["kind"], v["baseline"], v["aliases"]) for v in model["versions"]] == \
                   [(version, "baseline", "window_mean", ["champion"])]
            assert [d["decision"] for d in model["decisions"]] == ["bootstrap", "refused"]  # newest first
            assert model["decisions"][0]["p_value_baseline"] == 0.03 and model["card"] == f"model://{NAME}"

            card = (await client.read_resource(f"model://{NAME}")).contents[0]
            assert card.mime_type == "text/markdown"
            assert f"`champion`: v{version}" in card.text and "| baseline | window_mean |" in card.text
            assert "| window_mean | 0.8765 |" in card.text and "9.99" not in card.text  # the latest evaluation
            assert "**bootstrap**" in card.text and "best servable baseline" in card.text
            with pytest.raises(MCPError, match=r"asset_class must be one of"):
                await client.read_resource("model://nhits-stocks-close")

            # a writer holding the lock: the read waits --lock-wait seconds, then says so; afterwards it answers
            con = connect(home / "warehouse.duckdb")
            try:
                start = time.monotonic()
                error, text = await _call(client, "get_forecast", symbol="BTCUSDT", target="close")
                assert error and "locked by another process" in text and time.monotonic() - start < 15
            finally:
                con.close()
            error, out = await _call(client, "get_forecast", symbol="BTCUSDT", target="close")
            assert not error and out["model_version"] == "2"


def test_tools_resources_and_errors_over_stdio(home):
    _write({"forecasts": pd.concat([_forecast_rows("BTCUSDT", "crypto", "1", NOW - pd.Timedelta(1, "D"), 90.0),
                                    _forecast_rows("BTCUSDT", "crypto", "2", NOW, 100.0),
                                    _forecast_rows("SOL", "crypto", "2", NOW, 20.0),
                                    _forecast_rows("SOL", "equities", "4", NOW, 50.0)]),
            "signals": _signal_rows(), "backtest_results": _backtest_rows()})
    version = _register_baseline(home)
    _write({"model_evaluations": _evaluation_rows(version), "model_promotions": _promotion_rows(version)})
    anyio.run(_stdio_session, home, version)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_streamable_http_on_loopback_only(home, tmp_path):
    import httpx
    import psutil
    from mcp.client import Client

    _write({"forecasts": _forecast_rows("BTCUSDT", "crypto", "7", NOW, 10.0)})
    port, log = _free_port(), tmp_path / "mcp.log"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "mcp", "--http", "--port", str(port)],
                                cwd=ROOT, env={**os.environ, "TRADECAST_HOME": str(home)}, stdin=subprocess.DEVNULL,
                                stdout=err, stderr=err)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"tradecast mcp --http exited: {log.read_text()[-2000:]}"
            listening = [c for c in psutil.Process(proc.pid).net_connections("tcp") if c.status == "LISTEN"]
            if listening:
                break
            assert time.monotonic() < deadline, "tradecast mcp --http did not listen within 90 s"
            time.sleep(0.2)
        assert {(c.laddr.ip, c.laddr.port) for c in listening} == {("127.0.0.1", port)}

        async def call():
            with anyio.fail_after(SESSION_S):
                async with Client(f"http://127.0.0.1:{port}/mcp", cache=None, read_timeout_seconds=60) as client:
                    return await _call(client, "get_forecast", symbol="BTCUSDT", target="close")

        error, out = anyio.run(call)
        assert not error, out
        assert out["model_version"] == "7" and [s["yhat"] for s in out["steps"]] == [10.0, 11.0, 12.0]
        # a page on another site cannot reach it through DNS rebinding: a foreign Host header is refused
        refused = httpx.post(f"http://127.0.0.1:{port}/mcp", headers={"Host": "evil.example:80"}, json={},
                             timeout=10)
        assert refused.status_code == 421
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def test_other_hosts_and_a_port_without_http_are_refused(home):
    from click.testing import CliRunner

    from pipelines.cli import main
    from serving.mcp_server import serve

    for args, expected in [(["mcp", "--http", "--host", "0.0.0.0"], "binds to 127.0.0.1 only"),
                           (["mcp", "--http", "--host", "localhost"], "binds to 127.0.0.1 only"),
                           (["mcp", "--port", "9000"], "--port needs --http")]:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and expected in result.output, (args, result.output)
    with pytest.raises(ValueError, match="binds to 127.0.0.1 only"):
        serve(http=True, host="0.0.0.0")


def test_measure_tool_latency_times_every_tool_through_stdio(home):
    from serving.mcp_latency import TOOLS, measure_tool_latency

    _write({"forecasts": _forecast_rows("ETHUSDT", "fx", "5", NOW, 1.0)})
    latency = measure_tool_latency(repeats=3, home=str(home), timeout_s=SESSION_S)
    assert set(latency) == set(TOOLS)
    for tool, stats in latency.items():
        assert 0 < stats["p50_ms"] <= stats["p99_ms"] < 30_000, (tool, stats)
        assert stats["calls"] == 3
    assert latency["get_forecast"]["arguments"] == {"asset_class": "fx", "target": "close", "symbol": "ETHUSDT"}
    assert latency["get_forecast"]["errors"] == 0 and latency["list_models"]["errors"] == 0
    assert latency["backtest_summary"]["errors"] == 3  # nothing backtested: the error path is timed, and counted
