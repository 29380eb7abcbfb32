"""Faults at the service's edges: a download killed half-way, a champion that cannot be loaded, requests with
prices, timestamps or outputs that no buffer or JSON can hold. Real exports of the session's trained registry."""

from __future__ import annotations

import json
import math
import os
import time
from datetime import UTC

import numpy as np
import pytest

from tests.serving.conftest import NAME, tiny_onnx


def _bar(symbol: str, ts: float | str, price: float, **changes) -> dict:
    from datetime import datetime

    stamp = ts if isinstance(ts, str) else datetime.fromtimestamp(ts, tz=UTC).isoformat()
    return {"symbol": symbol, "ts": stamp, "open": price, "high": price * 1.001, "low": price * 0.999,
            "close": price, "volume": 1.0, **changes}


@pytest.mark.slow
@pytest.mark.fault('serving cache left half-downloaded (export.json empty, model.onnx missing)',
                   'the service downloads again (staging folder + rename), verifies, loads')
def test_a_download_killed_half_way_is_downloaded_again(served, tmp_path):
    from serving.source import ModelSource

    source = ModelSource(str(served.home))
    source.cache = tmp_path / "cache"
    version = source.registry.version(NAME, served.nhits)
    folder = source.onnx_dir(NAME, version)
    (folder / "model.onnx").unlink()  # what a kill during MLflow's parallel download leaves behind
    (folder / "export.json").write_text("")
    stale = folder.parent / ".download-killed"  # the staging folder of a download killed an hour ago
    (stale / "onnx").mkdir(parents=True)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    again = source.onnx_dir(NAME, version)
    assert (again / "model.onnx").stat().st_size > 0 and json.loads((again / "export.json").read_text())["files"]
    assert source.forecaster(NAME, version).run(np.ones((1, 288), np.float32)).shape[:2] == (1, 12)
    assert [p.name for p in (folder.parent).iterdir()] == ["onnx"]  # no staging folder left
    good = (again / "model.onnx").read_bytes()
    (again / "model.onnx").write_bytes(b"\x08\x07garbage" * 100)  # damaged in the cache: its SHA-256 differs
    assert (source.onnx_dir(NAME, version) / "model.onnx").read_bytes() == good


@pytest.mark.slow
@pytest.mark.fault('a champion ONNX file that onnxruntime refuses',
                   'the service starts on the previous champion, /health degraded with the reason')
def test_a_champion_that_cannot_be_loaded_falls_back_to_the_previous_champion(make_service, served, tmp_path):
    from serving.source import ModelSource

    source = ModelSource(str(served.home))
    source.cache = tmp_path / "cache"
    folder = source.onnx_dir(NAME, source.registry.version(NAME, served.nhits))
    report = json.loads((folder / "export.json").read_text())
    garbage = b"\x08\x07garbage" * 100
    for name in report["files"].values():
        (folder / name).write_bytes(garbage)  # a damaged model whose file is complete: onnxruntime refuses it
    report.pop("sha256", None)
    (folder / "export.json").write_text(json.dumps(report))
    service = make_service(source=source)  # before: ServiceError, the service would not start
    guarded = service.arms()["champion"]
    assert guarded.primary.info.version == served.baseline
    health = service.health()
    assert health["status"] == "degraded"
    assert any(f"champion v{served.nhits} cannot be loaded: serving previous champion v{served.baseline}" in n
               for n in health["notes"])


@pytest.mark.slow
@pytest.mark.fault('POST /bars with price 1e308, ts 2300/9999/1960; POST /events with ts 9999/1500',
                   '422 each, buffers unchanged, the next real bar is taken, forecasts finite, /health ok')
def test_requests_out_of_range_are_refused_at_the_door_and_change_nothing(make_service):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    service = make_service()
    client = TestClient(create_app(service, start_background=False))
    symbol = "BTCUSDT"
    before = client.get(f"/forecast/{symbol}").json()
    last = service.buffers.get(symbol).last_ts
    close = float(service.buffers.get(symbol).last_close)
    refused = [
        _bar(symbol, last + 300, close, high=1e308, close=1e308),  # overflowed every later forecast to inf
        _bar(symbol, "2300-01-01T00:00:00Z", close),  # pandas cannot hold it; it stuck in the buffer
        _bar(symbol, "9999-12-31T00:00:00Z", close),
        _bar(symbol, "1960-01-01T00:00:00Z", close),
    ]
    for body in refused:
        response = client.post("/bars", json=body)
        assert response.status_code == 422, (body, response.text)
    for ts in ("9999-01-01T00:00:00Z", "1500-01-01T00:00:00Z"):
        assert client.post("/events", json={"ts": ts, "headline": "x"}).status_code == 422
    assert service.buffers.get(symbol).last_ts == last
    assert client.get(f"/forecast/{symbol}").json() == before
    accepted = client.post("/bars", params={"forecast": True}, json=_bar(symbol, last + 300, close * 1.001))
    assert accepted.status_code == 200 and accepted.json()["accepted"] == 1  # the next real bar is taken
    values = accepted.json()["forecasts"][0]["yhat"]
    assert len(values) == service.h and all(math.isfinite(v) for v in values)
    assert service.health()["status"] == "ok"


@pytest.mark.fault('primary and backup both overflow to inf',
                   'no non-finite forecast is answered (NoForecast -> 503)')
def test_no_non_finite_forecast_is_answered(tmp_path):
    """Primary and backup both overflow: the predictor refuses (503 over HTTP) instead of serving inf."""
    from serving.ab import ABRouter
    from serving.breaker import GuardedModel
    from serving.buffers import SymbolBuffers
    from serving.predictor import NoForecast, Predictor
    from serving.runtime import OnnxForecaster

    mean = OnnxForecaster.from_path(tiny_onnx(tmp_path / "mean.onnx", "window_mean", 4, 8))
    guarded = GuardedModel(mean, mean, fail_max=5)
    buffers = SymbolBuffers(8, "close")
    buffers.load("AAA", np.full(8, 3e38, np.float32), last_ts=1.7e9)
    buffers.load("BBB", np.arange(8, dtype=np.float32) + 1, last_ts=1.7e9)
    predictor = Predictor(buffers, lambda: {"champion": guarded}, ABRouter(0.0))
    assert np.isfinite(predictor.forecast("BBB").values).all()
    with pytest.raises(NoForecast, match="AAA"):
        predictor.forecast("AAA")
