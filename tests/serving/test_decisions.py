"""Order intents in the forecast service: forecasts of the volatility and close models of crypto through the decision
rule (`trading.signals.step_positions`), many symbols a tick, over the real HTTP API.

The close model is the session's trained NHITS (`trained`); the volatility model is a served baseline (EWMA) registered
as champion of `nhits-crypto-volatility` the way the bootstrap registers a baseline version, on the volatility frame
that `training_frames` builds, exported by `export_job`: a real registry, real ONNX sessions, no stand-ins."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_job

VOL_NAME = "nhits-crypto-volatility"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


def bar(symbol: str, ts: float, close: float, **changes) -> dict:
    return {"symbol": symbol, "ts": iso(ts), "open": close * 0.9995, "high": close * 1.002, "low": close * 0.997,
            "close": close, "volume": 1.0, **changes}


@pytest.fixture(scope="session")
def vol_model(trained) -> str:
    """The champion version of nhits-crypto-volatility (an EWMA baseline with an ONNX export) in the trained home."""
    import dagster as dg

    from assets.training_frames import training_frames
    from domain.vocabulary import BASELINE_KIND, CHAMPION
    from models.configs import spec_for
    from pipelines.definitions import defs
    from pipelines.instance import ensure_dagster_home
    from storage.registry import Registry

    key = dg.MultiPartitionKey({"asset_class": "crypto", "target": "volatility"})
    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in trained.env.items():
            mp.setenv(name, value)
        mp.delenv("TRADECAST_CATALOG", raising=False)
        registry = Registry(trained.home)
        champion = registry.alias(VOL_NAME, CHAMPION)
        if champion is not None and champion.onnx is not None:  # another module of the session made it
            return champion.version
        ensure_dagster_home()
        with dg.DagsterInstance.get() as instance:
            assert dg.materialize([training_frames], partition_key=key, instance=instance,
                                  resources=defs.resources).success
        spec = spec_for("crypto")
        params = {"name": "ewma", "h": spec.h, "input_size": spec.input_size, "season_length": spec.season_length,
                  "freq": "5min"}
        version = registry.log_version(
            VOL_NAME, kind=BASELINE_KIND, baseline=params, params=params, metrics={"qlike": 1.0},
            tags={"asset_class": "crypto", "target": "volatility", "baseline": "ewma"},
            evaluation=pd.DataFrame({"model": ["ewma"], "qlike": [1.0]}), run_name=f"{VOL_NAME}-baseline-ewma")
        registry.set_alias(VOL_NAME, CHAMPION, version)
        assert run_job("export_job", key).success
    print(f"\n{VOL_NAME} v{version} (ewma baseline) registered and exported in {time.perf_counter() - started:.0f} s")
    return version


@pytest.fixture
def make_trader(make_service, vol_model):
    """``make_trader(strategy, close=True, params=None, **service config)``: a Trader over real services."""
    from serving.decisions import Trader

    def make(strategy=None, *, close=True, params=None, **overrides):
        volatility = make_service(target="volatility", **overrides)
        return Trader(volatility, make_service(**overrides) if close else None, strategy=strategy, params=params)

    return make


def http(trader, target: str = "close"):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    return TestClient(create_app(trader.services[target], trader=trader, start_background=False))


def step_one(fc) -> float:
    return float(fc.values[0, fc.output_names.index("yhat")])


@pytest.mark.slow
def test_decide_returns_intents_with_the_model_versions_and_one_bar_feeds_both_buffers(make_trader, served, vol_model):
    from domain.vocabulary import BARS_PER_YEAR
    from serving.buffers import Bar, bar_value
    from trading.signals import SignalParams, step_positions

    params = SignalParams(band_multiple=0.0)  # no no-trade band: the direction is the sign of mu
    trader = make_trader(params=params)
    client = http(trader)
    vol, close = trader.services["volatility"], trader.services["close"]
    symbols = ["BTCUSDT", "BTCUSDC"]
    before = {s: (vol.buffers.get(s).count, close.buffers.get(s).count, vol.buffers.get(s).last_close)
              for s in symbols}
    ts = max(close.buffers.get(s).last_ts for s in symbols) + 300
    bars = [bar(s, ts, float(close.buffers.window(s)[-1]) * 1.001) for s in symbols]
    response = client.post("/bars", params={"decide": True, "forecast": True}, json=bars)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 2 and body["rejected"] == [] and len(body["forecasts"]) == 2
    for sent in bars:  # one bar, both buffers: each its own target from the same OHLC
        s = sent["symbol"]
        assert vol.buffers.get(s).count == before[s][0] + 1 and close.buffers.get(s).count == before[s][1] + 1
        assert vol.buffers.get(s).last_ts == close.buffers.get(s).last_ts == ts
        assert close.buffers.window(s)[-1] == np.float32(sent["close"])
        parsed = Bar(s, ts, sent["open"], sent["high"], sent["low"], sent["close"])
        assert vol.buffers.window(s)[-1] == np.float32(bar_value("volatility", parsed, before[s][2]))

    intents = {i["symbol"]: i for i in body["intents"]}
    assert list(intents) == symbols
    for s, intent in intents.items():
        assert intent["ready"] and intent["strategy"] == "vol_target_directional"
        assert intent["current"] == 0.0 and intent["change"] == intent["target"] - intent["current"]
        assert intent["origin"] == iso(ts)
        models = intent["models"]
        assert models["volatility"] == {"name": VOL_NAME, "version": vol_model, "kind": "baseline",
                                        "arm": "champion", "fallback": False, "variant": "fp32",
                                        "model": f"{VOL_NAME} v{vol_model} (baseline, fp32)"}
        assert (models["close"]["name"], models["close"]["version"], models["close"]["kind"]) == (
            "nhits-crypto-close", served.nhits, "nhits")
        assert models["close"]["arm"] == "champion" and models["close"]["fallback"] is False
        # the numbers behind it: the same forecasts in process (cache hits), the one rule
        vol_fc, close_fc = vol.predictor.forecast(s), close.predictor.forecast(s)
        assert intent["vol_hat"] == step_one(vol_fc)
        assert intent["mu"] == step_one(close_fc) / bars[symbols.index(s)]["close"] - 1.0
        expected = step_positions("vol_target_directional", np.array([intent["vol_hat"]]), np.array([intent["mu"]]),
                                  np.zeros(1), bars_per_year=BARS_PER_YEAR["crypto"], params=params)
        assert intent["target"] == float(expected[0]) and intent["target"] != 0.0
    assert body["forecasts"][0]["model_version"] == served.nhits  # /bars' forecasts: the app's service (close)
    health = client.get("/health").json()
    assert health["trading"]["strategy"] == "vol_target_directional" and health["trading"]["decisions"] == 1

    stale = client.post("/bars", params={"decide": True}, json=bars[0])  # refused by both, taken by neither
    assert stale.status_code == 409 and "not newer" in stale.text
    assert vol.buffers.get("BTCUSDT").count == before["BTCUSDT"][0] + 1
    assert close.buffers.get("BTCUSDT").count == before["BTCUSDT"][1] + 1


@pytest.mark.slow
def test_positions_set_the_current_holding_and_change_is_target_minus_current(make_trader):
    trader = make_trader()
    client = http(trader)
    flat = client.get("/signal/BTCUSDT").json()
    assert flat["current"] == 0.0 and flat["change"] == flat["target"]

    response = client.post("/positions", json={"BTCUSDT": 0.5, "BTCUSDC": -0.25})
    assert response.status_code == 200, response.text
    assert response.json() == {"updated": 2, "positions": {"BTCUSDC": -0.25, "BTCUSDT": 0.5}}
    held = client.get("/signal/BTCUSDT").json()
    assert held["current"] == 0.5 and held["change"] == held["target"] - 0.5 and held["change"] != flat["change"]
    assert held["vol_hat"] == flat["vol_hat"] and held["mu"] == flat["mu"]  # the same forecasts, another holding

    response = client.post("/positions", json=[{"symbol": "BTCUSDT", "position": -1.5}, {"symbol": "ETHUSDT",
                                                                                          "position": 2}])
    assert response.json()["positions"] == {"BTCUSDC": -0.25, "BTCUSDT": -1.5, "ETHUSDT": 2.0}
    short = client.get("/signal/BTCUSDT").json()
    assert short["current"] == -1.5 and short["change"] == short["target"] + 1.5

    for raw in ('{"BTCUSDT": NaN}', '{"BTCUSDT": Infinity}', '{"BTCUSDT": 1e6}', "{}", '{"BTC USDT": 1}',
                '[{"symbol": "BTCUSDT", "position": 1}, {"symbol": "BTCUSDT", "position": 2}]',
                '{"BTCUSDT": 1, "BTCUSDC": "lots"}'):
        refused = client.post("/positions", content=raw, headers={"content-type": "application/json"})
        assert refused.status_code == 422, (raw, refused.status_code, refused.text)
    assert client.get("/positions").json()["positions"] == {"BTCUSDC": -0.25, "BTCUSDT": -1.5, "ETHUSDT": 2.0}


@pytest.mark.slow
def test_a_vol_target_intent_is_step_positions_on_the_returned_forecast(make_trader):
    from domain.vocabulary import BARS_PER_YEAR
    from trading.signals import SignalParams, step_positions

    params = SignalParams(target_vol=0.3, leverage_cap=40.0)
    trader = make_trader("vol_target", close=False, params=params)
    client = http(trader, "volatility")
    vol = trader.services["volatility"]
    ts = vol.buffers.get("BTCUSDT").last_ts + 300
    body = client.post("/bars", params={"decide": True, "forecast": True},
                       json=bar("BTCUSDT", ts, 28000.0, high=28100.0, low=27900.0)).json()
    [intent], [forecast] = body["intents"], body["forecasts"]
    fc = vol.predictor.forecast("BTCUSDT")  # the forecast the answer came from (cache hit: the same numbers)
    assert vol.predictor.hits >= 1 and forecast["yhat"][0] == pytest.approx(step_one(fc), abs=1e-8)
    expected = step_positions("vol_target", np.array([step_one(fc)]), np.array([np.nan]), np.zeros(1),
                              bars_per_year=BARS_PER_YEAR["crypto"], params=params)
    assert intent["target"] == float(expected[0]) and 0 < intent["target"] < params.leverage_cap
    assert intent["target"] == pytest.approx(0.3 / (step_one(fc) * math.sqrt(288 * 365)))
    assert intent["vol_hat"] == step_one(fc) and intent["mu"] is None and list(intent["models"]) == ["volatility"]


def _history(symbols: list[str], n: int, start: float, seed: int = 0) -> list[list[dict]]:
    """``n`` synthetic 5-minute bars per symbol (a random walk with a range), by time step: one list per step."""
    rng = np.random.default_rng(seed)
    level = 50 + 100 * rng.random(len(symbols))
    steps = []
    for k in range(n):
        opens = level
        level = opens * np.exp(rng.normal(0, 0.002, len(symbols)))
        wick = 1 + np.abs(rng.normal(0, 0.001, (2, len(symbols))))
        highs, lows = np.maximum(opens, level) * wick[0], np.minimum(opens, level) / wick[1]
        stamp = iso(start + 300 * k)
        steps.append([{"symbol": s, "ts": stamp, "open": float(o), "high": float(h), "low": float(lo),
                       "close": float(c)} for s, o, h, lo, c in zip(symbols, opens, highs, lows, level, strict=True)])
    return steps


def _post(client, bars: list[dict], **params):
    response = client.post("/bars", params=params, content=json.dumps(bars),
                           headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text[:500]
    return response.json()


@pytest.mark.slow
def test_a_500_symbol_tick_is_one_post_one_model_call_per_arm_and_500_intents(make_trader):
    from serving.app import MAX_BARS

    trader = make_trader(challenger_share=0.5)  # close: champion (NHITS) and challenger (baseline) both answer
    vol, close = trader.services["volatility"], trader.services["close"]
    assert min(s.config.max_symbols for s in (vol, close)) >= 503 and set(close.arms()) == {"champion",
                                                                                            "challenger"}
    client = http(trader)
    symbols = [f"SYN{i:03d}" for i in range(500)]
    need = max(vol.input_size, close.input_size)
    steps = _history(symbols, need + 1, time.time() - 86_400 * 3)
    started = time.perf_counter()
    history = [b for step in steps[:need] for b in step]
    for i in range(0, len(history), MAX_BARS):
        assert _post(client, history[i:i + MAX_BARS])["accepted"] == len(history[i:i + MAX_BARS])
    warmed_s = time.perf_counter() - started
    assert all(vol.buffers.get(s).ready and close.buffers.get(s).ready for s in symbols)

    arms = [g.primary for g in (*vol.arms().values(), *close.arms().values())]
    backups = [g.backup for g in (*vol.arms().values(), *close.arms().values())]
    calls, backup_calls = [m.calls for m in arms], [m.calls for m in backups]
    decisions = trader.decisions
    started = time.perf_counter()
    body = _post(client, steps[need], decide=True, forecast=True)
    tick_ms = (time.perf_counter() - started) * 1e3
    assert body["accepted"] == 500 and len(body["forecasts"]) == 500
    assert [i["symbol"] for i in body["intents"]] == symbols and all(i["ready"] for i in body["intents"])
    assert [m.calls - c for m, c in zip(arms, calls, strict=True)] == [1, 1, 1]  # vol champion, close both arms
    assert [m.calls for m in backups] == backup_calls and trader.decisions == decisions + 1
    by_arm = {i["models"]["close"]["arm"] for i in body["intents"]}
    assert by_arm == {"champion", "challenger"} and {i["models"]["volatility"]["arm"] for i in body["intents"]} == {
        "champion"}
    assert all(i["change"] == i["target"] - i["current"] and i["vol_hat"] > 0 for i in body["intents"])
    print(f"\n500 symbols: history of {len(history)} bars in {warmed_s:.1f} s; the tick over HTTP {tick_ms:.0f} ms")


@pytest.mark.slow
def test_signal_answers_404_for_an_unknown_symbol_and_409_before_enough_history(make_trader):
    trader = make_trader()
    client = http(trader)
    assert client.get("/signal/NOPE").status_code == 404 and "unknown symbol 'NOPE'" in client.get(
        "/signal/NOPE").text
    ts = trader.services["close"].buffers.get("BTCUSDT").last_ts
    body = client.post("/bars", params={"decide": True}, json=bar("ETHUSDT", ts, 2000.0)).json()
    assert body["accepted"] == 1 and body["intents"] == [
        {"symbol": "ETHUSDT", "ready": False, "strategy": "vol_target_directional", "current": 0.0,
         "reason": "ETHUSDT: 1 of 288 bars needed for a volatility forecast"}]
    early = client.get("/signal/ETHUSDT")
    assert early.status_code == 409 and "1 of 288 bars" in early.text


@pytest.mark.slow
def test_headlines_return_the_updated_intents_of_the_affected_symbols(make_trader):
    trader = make_trader()
    client = http(trader)
    last = max(s.buffers.get("BTCUSDT").last_ts for s in trader.services.values())
    one = client.post("/events", json={"ts": iso(last + 600), "headline": "BTC ETF approved", "symbol": "BTCUSDT",
                                       "sentiment": 0.8}).json()
    assert one["sentiment"] == 0.8 and [i["symbol"] for i in one["intents"]] == ["BTCUSDT"]
    assert one["intents"][0]["ready"] and one["intents"][0]["change"] == one["intents"][0]["target"]
    market = client.post("/events", json={"ts": iso(last + 900), "headline": "Markets slump on rate fears"}).json()
    assert -1 <= market["sentiment"] <= 1
    assert sorted(i["symbol"] for i in market["intents"]) == sorted(trader.symbols) == ["BTCUSD", "BTCUSDC",
                                                                                        "BTCUSDT"]


@pytest.mark.slow
def test_without_a_trader_the_trading_routes_answer_409_and_the_rest_works(make_service):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    service = make_service()
    client = TestClient(create_app(service, start_background=False))
    count, ts = service.buffers.get("BTCUSDT").count, service.buffers.get("BTCUSDT").last_ts
    for response in (client.get("/signal/BTCUSDT"), client.post("/positions", json={"BTCUSDT": 1.0}),
                     client.get("/positions"),
                     client.post("/bars", params={"decide": True}, json=bar("BTCUSDT", ts + 300, 28000.0))):
        assert response.status_code == 409 and "without a trader" in response.text and "--decide" in response.text
    assert service.buffers.get("BTCUSDT").count == count  # the refused ?decide=true took no bar
    plain = client.post("/bars", params={"forecast": True}, json=bar("BTCUSDT", ts + 300, 28000.0)).json()
    assert plain["accepted"] == 1 and "intents" not in plain and len(plain["forecasts"]) == 1
    event = client.post("/events", json={"ts": iso(ts + 600), "headline": "calm", "sentiment": 0.0}).json()
    assert "intents" not in event and "trading" not in client.get("/health").json()


@pytest.mark.slow
def test_tradecast_serve_decide_starts_both_models_and_the_rule(served, vol_model):
    import httpx

    from serving.loadtest import free_port, start_service, stop_service

    port = free_port()
    proc = start_service(["--decide", "--cold", "--strategy", "vol_target", "--target-vol", "0.2"], port=port,
                         env=served.env, timeout=120)
    try:
        url = f"http://127.0.0.1:{port}"
        trading = httpx.get(f"{url}/health").json()["trading"]
        assert trading["strategy"] == "vol_target" and trading["params"]["target_vol"] == 0.2
        assert trading["params"]["leverage_cap"] == 2.0  # SignalParams' default
        assert trading["services"] == {"volatility": VOL_NAME, "close": "nhits-crypto-close"}
        assert httpx.post(f"{url}/positions", json={"BTCUSDT": 1.0}).json()["positions"] == {"BTCUSDT": 1.0}
        assert httpx.get(f"{url}/signal/BTCUSDT").status_code == 404  # cold: no bar seen yet
    finally:
        stop_service(proc)


@pytest.mark.slow
def test_the_decision_latency_bench_runs_on_the_served_models(served, vol_model):
    from serving.trading_bench import decision_latency

    result = decision_latency(repeats=3, symbols=20, warmup=1, home=str(served.home))
    latency = result["latency"]
    assert set(latency) == {"in_process_1", "in_process_tick", "http_1", "http_tick", "http_event_symbol",
                            "http_event_market"}
    assert all(0 < v["p50_ms"] <= v["p99_ms"] and v["n"] == 3 for v in latency.values())
    calls = latency["in_process_tick"]["model_calls_per_tick_per_arm"]  # the close challenger has no traffic here
    assert calls == {"volatility:champion": 1.0, "close:champion": 1.0, "close:challenger": 0.0}
    assert latency["http_event_market"]["intents"] == 20 and latency["http_event_symbol"]["intents"] == 1
    assert result["models"]["close"]["champion"].startswith(f"nhits-crypto-close v{served.nhits} (nhits")
    assert [t["target"] for t in result["targets"]] == ["http_1_p99_ms", "in_process_tick_p99_ms"]
