"""Event features in the service: the exogenous NHITS graph equals neuralforecast, its ONNX export takes
hist/futr inputs, and POST /events updates the features (no earlier bar changes) and the forecast of a model
that reads them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.events.spec import FOMC_FUTR_COLUMNS, MARKET_COLUMNS, NEWS_COLUMNS
from tests.serving.conftest import real_bars

HIST = (*NEWS_COLUMNS, *MARKET_COLUMNS)
FUTR = tuple(FOMC_FUTR_COLUMNS)
L, H = 48, 12


@pytest.fixture(scope="module")
def event_model():
    """A tiny NHITS reading the news and FOMC columns, fitted 3 steps on real 5-min closes with their (real,
    mostly neutral) event features plus a few planted headlines so the columns vary."""
    from neuralforecast import NeuralForecast

    from models.configs import spec_for
    from models.events.features import event_features
    from models.frames import resample_ohlcv
    from models.nhits import build_nhits

    bars = real_bars(6000)
    five = resample_ohlcv(bars.assign(ts=pd.to_datetime(bars.ts, utc=True), volume=bars.volume_base), "5min")
    frame = pd.DataFrame({"unique_id": five.symbol, "ds": five.ts.dt.tz_localize(None), "y": five.close})
    rng = np.random.default_rng(0)
    stamps = frame.ds.sample(40, random_state=0) + pd.Timedelta(seconds=30)
    news = pd.DataFrame({"ts": stamps.to_numpy(), "symbol": ["BTCUSDT"] * 20 + [None] * 20,
                         "sentiment": rng.uniform(-1, 1, 40)})
    feats = event_features(frame, news, None, "5min")
    frame = frame.merge(feats, on=["unique_id", "ds"])
    spec = spec_for("crypto", "quick", max_steps=3, val_size=0, val_check_steps=3, input_size=L, h=H,
                    hist_exog=HIST, futr_exog=FUTR)
    nf = NeuralForecast(models=[build_nhits(spec, accelerator="cpu")], freq="5min")
    nf.fit(frame[["unique_id", "ds", "y", *HIST, *FUTR]])
    return nf, frame


def test_the_exogenous_graph_and_its_onnx_equal_neuralforecast(event_model, tmp_path):
    import torch

    from serving.export import export_onnx, max_rel_diff
    from serving.graph import from_nhits
    from serving.runtime import OnnxForecaster

    nf, frame = event_model
    past, future = frame.iloc[:600], frame.iloc[600:600 + H]
    want = nf.predict(df=past[["unique_id", "ds", "y", *HIST, *FUTR]],
                      futr_df=future[["unique_id", "ds", *FUTR]])["NHITS"].to_numpy()
    win = past.y.to_numpy(np.float32)[None, -L:]
    hist = past[list(HIST)].to_numpy(np.float32)[None, -L:]
    futr = np.concatenate([past[list(FUTR)].to_numpy()[-L:], future[list(FUTR)].to_numpy()]).astype(np.float32)[None]
    assert hist.std() > 0  # the planted headlines make the columns move
    for fuse in (False, True):
        module = from_nhits(nf.models[0], fuse=fuse)
        with torch.no_grad():
            got = module(torch.from_numpy(win), torch.from_numpy(hist), torch.from_numpy(futr)).numpy()[0, :, 0]
        assert max_rel_diff(got, want) <= 1e-5
        with torch.no_grad():  # the features matter: other news, another forecast
            other = module(torch.from_numpy(win), torch.from_numpy(hist * 0 + 1), torch.from_numpy(futr)).numpy()
        assert np.abs(other[0, :, 0] - want).max() > 0.1  # price units; equality above is ~1e-3 here
    path = export_onnx(from_nhits(nf.models[0]), tmp_path / "m.onnx")
    runtime = OnnxForecaster.from_path(path)
    assert runtime.inputs == ["windows", "hist_exog", "futr_exog"] and runtime.needs_exog
    batch = np.repeat(win, 5, 0), np.repeat(hist, 5, 0), np.repeat(futr, 5, 0)
    assert max_rel_diff(runtime.run(batch[0], hist_exog=batch[1], futr_exog=batch[2])[0, :, 0], want) <= 1e-5
    with pytest.raises(ValueError, match="hist_exog"):
        runtime.run(batch[0])


def test_an_event_updates_the_last_feature_row_only_and_the_forecast_of_a_model_reading_it(event_model, tmp_path):
    from serving.ab import ABRouter
    from serving.breaker import GuardedModel
    from serving.buffers import Bar, SymbolBuffers
    from serving.exog import ExogBuffers
    from serving.export import export_onnx
    from serving.graph import from_nhits
    from serving.predictor import Predictor
    from serving.runtime import ModelInfo, NaiveForecaster, OnnxForecaster

    nf, _ = event_model
    info = ModelInfo(name="events-test", version="1", kind="nhits", variant="fp32",
                     extra={"hist_exog": list(HIST), "futr_exog": list(FUTR)})
    model = OnnxForecaster.from_path(export_onnx(from_nhits(nf.models[0]), tmp_path / "m.onnx"), info=info)
    arms = {"champion": GuardedModel(model, NaiveForecaster(H, L))}
    exog = ExogBuffers(L, "5min")
    predictor = Predictor(SymbolBuffers(L, "close"), lambda: arms, ABRouter(), exog=exog, freq="5min")
    bars = real_bars(L + 5, symbol="BTCUSDT")
    for row in bars.itertuples():
        predictor.update(Bar("BTCUSDT", pd.Timestamp(row.ts, tz="UTC").timestamp(), row.open, row.high, row.low,
                             row.close))
    before = predictor.forecast("BTCUSDT")
    rows_before = exog.rows["BTCUSDT"][exog.pos["BTCUSDT"]:exog.pos["BTCUSDT"] + L].copy()
    assert np.isfinite(rows_before).all()  # no news at all: neutral features, never NaN
    now = pd.Timestamp(bars.ts.iloc[-1], tz="UTC") + pd.Timedelta(minutes=7)
    affected = exog.on_event(now, 0.9, "BTCUSDT", ["BTCUSDT"])
    predictor.invalidate("BTCUSDT")
    rows_after = exog.rows["BTCUSDT"][exog.pos["BTCUSDT"]:exog.pos["BTCUSDT"] + L]
    assert affected == ["BTCUSDT"]
    assert np.array_equal(rows_after[:-1], rows_before[:-1])  # no earlier bar sees the new headline
    count = exog.index["news_logn_short"]
    assert rows_before[-1, count] == 0.0 and rows_after[-1, count] > 0.0
    after = predictor.forecast("BTCUSDT")
    assert not np.allclose(after.values, before.values)  # the model reads the news: the forecast moved


def test_post_events_over_http(make_service):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    service = make_service()
    client = TestClient(create_app(service, start_background=False))
    last = service.buffers.get("BTCUSDT").last_ts
    ts = pd.Timestamp(last + 400, unit="s").isoformat()
    response = client.post("/events", json={"ts": ts, "headline": "Bitcoin soars as investors cheer strong gains",
                                            "symbol": "BTCUSDT"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert 0 < body["sentiment"] <= 1  # scored with VADER, as the news_events asset does
    assert [f["symbol"] for f in body["forecasts"]] == ["BTCUSDT"]
    row = service.exog.rows["BTCUSDT"][(service.exog.pos["BTCUSDT"] - 1) % service.input_size]
    assert row[service.exog.index["news_logn_short"]] > 0
    market = client.post("/events", json={"ts": ts, "headline": "Markets slump", "sentiment": -0.5}).json()
    assert sorted(f["symbol"] for f in market["forecasts"]) == ["BTCUSD", "BTCUSDC", "BTCUSDT"]
    assert client.post("/events", json={"ts": ts, "headline": "x", "symbol": "NOPE"}).status_code == 404
    assert client.post("/events", json={"ts": ts, "headline": "x", "sentiment": 2}).status_code == 422
    assert client.post("/events", json={"ts": "not a time", "headline": "x"}).status_code == 422


def test_post_events_folds_a_late_headline_into_the_rows_it_changes_or_refuses_it(make_service, served):
    """A headline stamped inside the bar 3 bars before the newest reaches those 4 rows, each at its own origin, as
    in the batch features (the newest row is not moved back to the headline's time); one the state cannot
    recompute (its older events are gone, as after pruning) is refused with 409 naming it, and changes nothing."""
    from fastapi.testclient import TestClient

    from models.events.features import event_features
    from models.events.spec import FEATURE_COLUMNS
    from serving.app import create_app

    service = make_service()
    client = TestClient(create_app(service, start_background=False))
    exog, L = service.exog, service.input_size
    last = service.buffers.get("BTCUSDT").last_ts
    grid = served.frame().query("unique_id == 'BTCUSDT'").tail(L)[["unique_id", "ds"]]
    assert pd.Timestamp(grid.ds.iloc[-1]).timestamp() == last

    def rows() -> np.ndarray:
        return exog.rows["BTCUSDT"][exog.pos["BTCUSDT"]:exog.pos["BTCUSDT"] + L].astype(float)

    before = rows()
    late = pd.Timestamp(last - 870, unit="s")  # inside the bar stamped last - 900 (origin last - 600)
    response = client.post("/events", json={"ts": late.isoformat(), "headline": "Bitcoin rallies",
                                            "symbol": "BTCUSDT", "sentiment": 0.6})
    assert response.status_code == 200, response.text
    assert [f["symbol"] for f in response.json()["forecasts"]] == ["BTCUSDT"]
    news = pd.DataFrame({"ts": [late.tz_localize("UTC")], "symbol": ["BTCUSDT"], "sentiment": [0.6]})
    want = event_features(grid, news, None, "5min")[FEATURE_COLUMNS].to_numpy(float)
    np.testing.assert_allclose(rows(), want, rtol=0, atol=1e-6)
    assert np.array_equal(rows()[:-4], before[:-4]) and (rows()[-4:] != before[-4:]).any(axis=1).all()

    exog.online.held_since = int(pd.Timestamp(last - 60, unit="s").value)  # events before this are gone
    after = rows()
    refused = client.post("/events", json={"ts": late.isoformat(), "headline": "Bitcoin rallies again",
                                           "symbol": "BTCUSDT", "sentiment": 0.9})
    assert refused.status_code == 409
    assert f"headline at {late}" in refused.json()["detail"]
    assert f"newest feature row (bar {pd.Timestamp(last, unit='s')}" in refused.json()["detail"]
    assert np.array_equal(rows(), after)
