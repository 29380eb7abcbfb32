"""The HTTP API: bad requests get a 4xx naming the problem (never a 500), hot swap under concurrent load with
zero errors, and live error per model version written to DuckDB and summarized by `live_ab_report`."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import numpy as np
import pytest

from tests.serving.conftest import Server


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


@pytest.fixture
def client(make_service):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    service = make_service()
    with TestClient(create_app(service, start_background=False)) as http:
        http.service = service
        yield http


def bar(symbol: str, ts: float, close: float, **changes) -> dict:
    return {"symbol": symbol, "ts": iso(ts), "open": close, "high": close * 1.001, "low": close * 0.999,
            "close": close, "volume": 1.0, **changes}


@pytest.mark.slow
def test_bad_requests_get_a_4xx_that_names_the_problem(client):
    service = client.service
    window = service.buffers.window("BTCUSDT").tolist()
    last_ts = service.buffers.get("BTCUSDT").last_ts
    codes = []

    def check(response, status: int, *needles: str):
        codes.append(response.status_code)
        assert response.status_code == status, response.text
        text = response.text
        for needle in needles:
            assert needle in text, text

    check(client.get("/forecast/NOPE"), 404, "unknown symbol 'NOPE'")
    check(client.post("/predict", json={"windows": [window, window[:-1]]}), 422, "windows[1]", "287 values",
          "exactly 288")
    check(client.post("/predict", json={"windows": [window + [1.0]]}), 422, "windows[0]", "289 values")
    raw = '{"windows": [[' + ", ".join(["NaN"] + [str(v) for v in window[1:]]) + "]]}"
    check(client.post("/predict", content=raw, headers={"content-type": "application/json"}), 422,
          "windows[0][0]", "not a finite number")
    raw = '{"windows": [[' + ", ".join([str(v) for v in window[:-1]] + ["Infinity"]) + "]]}"
    check(client.post("/predict", content=raw, headers={"content-type": "application/json"}), 422, "windows[0][287]")
    huge = json.dumps({"windows": [window] * 1000})
    assert len(huge) > 4 * 2**20
    check(client.post("/predict", content=huge, headers={"content-type": "application/json"}), 413, "byte limit")
    check(client.post("/predict", json={"windows": [[1.0] * 288] * 1025}), 422, "windows")  # over MAX_WINDOWS
    check(client.post("/predict", json={"windows": []}), 422, "windows")
    check(client.post("/predict", json={"windows": [window], "arm": "canary"}), 422, "arm")
    check(client.post("/predict", content='{"windows": [[1, 2,', headers={"content-type": "application/json"}),
          422, "json")
    check(client.post("/predict", content="windows=1", headers={"content-type": "text/plain"}), 422)

    check(client.post("/bars", json=bar("BTCUSDT", last_ts + 300, 28000.0, high=27000.0)), 422,
          "inconsistent bar", "high 27000")
    check(client.post("/bars", json=bar("BTCUSDT", last_ts + 300, 28000.0, low=29000.0)), 422, "inconsistent bar")
    check(client.post("/bars", json=bar("BTCUSDT", last_ts + 300, -1.0)), 422, "close")
    check(client.post("/bars", json=bar("BTC USDT", last_ts + 300, 28000.0)), 422, "symbol")
    check(client.post("/bars", json={**bar("BTCUSDT", last_ts + 300, 28000.0), "vwap": 1.0}), 422, "vwap")
    check(client.post("/bars", json={**bar("BTCUSDT", last_ts + 300, 28000.0), "ts": "yesterday"}), 422, "ts")
    check(client.post("/bars", json=[]), 422)
    check(client.post("/bars", content=b"\xff\xfe{", headers={"content-type": "application/json"}), 400,
          "error parsing the body")  # not UTF-8
    check(client.post("/bars", json=bar("BTCUSDT", last_ts, 28000.0)), 409, "not newer")  # stale
    check(client.post("/bars", json=bar("BTCUSDT", last_ts - 3600, 28000.0)), 409, "not newer")

    check(client.post("/bars", json=bar("ETHUSDT", last_ts, 2000.0)), 200, '"accepted":1')  # a new symbol ...
    check(client.get("/forecast/ETHUSDT"), 409, "ETHUSDT: 1 of 288 bars")  # ... without enough history
    mixed = [bar("BTCUSDT", last_ts + 300, 28000.0), bar("BTCUSDT", last_ts + 300, 28001.0)]
    response = client.post("/bars", json=mixed)
    check(response, 200)
    assert response.json()["accepted"] == 1 and response.json()["rejected"][0]["index"] == 1
    assert all(code < 500 for code in codes)
    metrics = client.get("/metrics").text
    assert 'tradecast_requests_total{route="/forecast",status="404"} 1.0' in metrics


@pytest.mark.slow
def test_a_bar_with_a_nan_price_gets_422_not_500(make_service):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    service = make_service()
    client = TestClient(create_app(service, start_background=False), raise_server_exceptions=False)
    last_ts = service.buffers.get("BTCUSDT").last_ts
    for field, value in (("open", float("nan")), ("volume", float("inf"))):
        raw = json.dumps(bar("BTCUSDT", last_ts + 300, 28000.0, **{field: value}))  # JSON NaN / Infinity, sent raw
        response = client.post("/bars", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422 and field in response.text, (field, response.status_code)


@pytest.mark.slow
def test_windows_beyond_float32_get_a_4xx_not_a_500(make_service):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    client = TestClient(create_app(make_service(), start_background=False), raise_server_exceptions=False)
    for value in (1e39, 3e38, 1e31):
        response = client.post("/predict", json={"windows": [[value] * 288]})
        assert response.status_code < 500, (value, response.status_code)


@pytest.mark.slow
def test_a_chunked_body_over_the_limit_gets_413(make_service):
    import httpx

    from serving.app import create_app

    window = make_service().buffers.window("BTCUSDT").tolist()
    body = json.dumps({"windows": [window] * 1000}).encode()

    def chunks():
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    with Server(create_app(make_service(), start_background=False)) as server:
        response = httpx.post(f"{server.url}/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.slow
def test_hot_swap_under_concurrent_requests_has_zero_errors(make_service, served):
    """8 clients hammer GET /forecast/BTCUSDT on a real uvicorn server while the champion alias moves in MLflow;
    the service's poll thread swaps the model in: every response is a 200 and they switch to the new version."""
    import httpx

    from serving.app import create_app

    service = make_service(poll_s=0.2, flush_s=60)
    assert service.versions["champion"] == served.nhits
    results: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def hammer():
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                try:
                    response = http.get("/forecast/BTCUSDT")
                    version = response.json().get("model_version", "") if response.status_code == 200 else ""
                    results.append((time.monotonic(), response.status_code, version))
                except Exception as exc:  # noqa: BLE001 - a dropped connection is an error too
                    results.append((time.monotonic(), -1, repr(exc)))

    with Server(create_app(service, start_background=True)) as server:
        threads = [threading.Thread(target=hammer) for _ in range(8)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while len(results) < 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        served.set_aliases(champion=served.baseline, previous_champion=served.nhits)
        while service.swaps == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        swapped_at = time.monotonic()
        assert service.swaps == 1, "the poll thread did not swap the new champion in"
        while sum(1 for r in results if r[0] > swapped_at + 0.2) < 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        final = httpx.get(f"{server.url}/forecast/BTCUSDT").json()
        health = httpx.get(f"{server.url}/health").json()

    errors = [r for r in results if r[1] != 200]
    assert not errors, errors[:5]
    versions = [r[2] for r in results]
    assert versions[0] == served.nhits and served.baseline in versions
    late = {r[2] for r in results if r[0] > swapped_at + 0.2}
    assert late == {served.baseline}, late
    assert final["model_version"] == served.baseline and final["fallback"] is False
    assert health["swaps"] == 1 and health["arms"]["champion"]["model"].startswith(
        f"nhits-crypto-close v{served.baseline}")
    assert len(results) > 400


@pytest.mark.slow
def test_no_old_forecast_is_cached_after_a_swap(make_service, served):
    service = make_service()
    predictor = service.predictor
    seen = []
    with predictor.lock:  # a request arrives while another one holds the predictor
        worker = threading.Thread(target=lambda: seen.append(predictor.forecast("BTCUSDT")))
        worker.start()
        time.sleep(0.3)
        served.set_aliases(champion=served.baseline, previous_champion=served.nhits)
        assert service.refresh()  # the swap completes (the lock is reentrant for this thread)
    worker.join(timeout=10)
    assert seen
    assert predictor.forecast("BTCUSDT").model_version == served.baseline


@pytest.mark.slow
def test_live_error_per_version_is_written_and_reported(make_service, served):
    """Serve forecasts from both arms, post the next real-looking bars, flush: live_metrics holds one row per
    scored step with the right step, |yhat - y| and version; `live_ab_report` summarizes them."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.live import ab_summary
    from storage.duck import open_waiting
    from tests.conftest import run_job, warehouse_query
    from tests.serving.test_ab import split_seed

    with open_waiting(served.home / "warehouse.duckdb") as con:  # this test's rows only
        con.execute("DELETE FROM live_metrics")
    seed = split_seed({"BTCUSDT": "champion", "BTCUSDC": "challenger"})
    service = make_service(challenger_share=0.5, split_seed=seed, flush_s=60)
    client = TestClient(create_app(service, start_background=False))

    first = {s: client.get(f"/forecast/{s}").json() for s in ("BTCUSDT", "BTCUSDC")}
    assert first["BTCUSDT"]["model_version"] == served.nhits and first["BTCUSDC"]["model_version"] == served.baseline
    assert client.get("/forecast/BTCUSDT").json() == first["BTCUSDT"]  # a repeat (cache hit) is scored once
    actual = {}
    for symbol in ("BTCUSDT", "BTCUSDC"):
        ts = service.buffers.get(symbol).last_ts
        closes = float(service.buffers.window(symbol)[-1]) * np.array([1.001, 0.998, 1.003])
        actual[symbol] = closes
        for k, close in enumerate(closes, start=1):
            response = client.post("/bars", params={"forecast": k == 1},
                                   json=bar(symbol, ts + 300 * k, float(close)))
            assert response.status_code == 200 and response.json()["accepted"] == 1
            if k == 1:  # a second forecast, from the new origin: scored from the next bar on
                second = response.json()["forecasts"][0]
                assert second["origin"] == iso(ts + 300)
                actual[f"{symbol}-second"] = second

    written = service.live.flush()
    assert written == 2 * (3 + 2)  # per symbol: steps 1-3 of the first forecast, steps 1-2 of the second
    rows = warehouse_query("SELECT * FROM live_metrics ORDER BY symbol, origin_ts, step")
    assert len(rows) == written
    for symbol, arm, version in (("BTCUSDT", "champion", served.nhits), ("BTCUSDC", "challenger", served.baseline)):
        mine = rows[rows.symbol == symbol]
        assert set(mine.arm) == {arm} and set(mine.model_version) == {version}
        origin_one = mine[mine.origin_ts == mine.origin_ts.min()]
        assert origin_one.step.tolist() == [1, 2, 3]
        np.testing.assert_allclose(origin_one.y, actual[symbol], rtol=1e-6)
        np.testing.assert_allclose(origin_one.yhat, first[symbol]["yhat"][:3], rtol=1e-6)
        np.testing.assert_allclose(origin_one.abs_error, np.abs(np.array(first[symbol]["yhat"][:3]) - actual[symbol]),
                                   rtol=1e-5)
        origin_two = mine[mine.origin_ts == mine.origin_ts.max()]
        assert origin_two.step.tolist() == [1, 2]
        np.testing.assert_allclose(origin_two.yhat, actual[f"{symbol}-second"]["yhat"][:2], rtol=1e-6)
        assert (mine.scale > 0).all() and (mine.ts > mine.origin_ts).all()

    table = ab_summary(rows)
    assert set(zip(table.arm, table.model_version, strict=True)) == {("champion", served.nhits),
                                                                     ("challenger", served.baseline)}
    champion = table[table.arm == "champion"].iloc[0]
    assert champion.steps == 5 and champion.forecasts == 2 and champion.mase_vs_champion == pytest.approx(1.0)
    assert champion.mae == pytest.approx(rows[rows.arm == "champion"].abs_error.mean())
    health = client.get("/health").json()
    assert health["live_rows_written"] == written and {r["arm"] for r in health["live"]} == {"champion", "challenger"}
    assert 'tradecast_live_mae{arm="challenger"' in client.get("/metrics").text

    result = run_job("live_report_job")
    meta = result.asset_materializations_for_node("live_ab_report")[0].metadata
    assert meta["dagster/row_count"].value == written and meta["versions"].value == 2
    assert served.nhits in meta["summary"].value and "challenger" in meta["summary"].value
    challenger = table[table.arm == "challenger"].iloc[0]
    assert meta["challenger_mase_vs_champion"].value == pytest.approx(challenger.mase_vs_champion)
    assert "data:image/png;base64," in meta["live_error_plot"].value
