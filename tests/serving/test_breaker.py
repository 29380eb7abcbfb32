"""The circuit breaker on real injected faults: a corrupt ONNX file, a session that raises (an ONNX graph of
another input size swapped in), a model whose output overflows to inf/NaN. After fail_max consecutive failures
the backup answers (labelled), after reset_timeout a half-open probe closes it; /health and /metrics show it."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests.serving.conftest import NAME, tiny_onnx

RESET = 0.3


def _guarded(tmp_path, fail_max: int = 5):
    from serving.breaker import GuardedModel
    from serving.runtime import NaiveForecaster, OnnxForecaster

    primary = OnnxForecaster.from_path(tiny_onnx(tmp_path / "mean.onnx", "window_mean", 4, 8))
    wrong = OnnxForecaster.from_path(tiny_onnx(tmp_path / "other.onnx", "window_mean", 4, 6))
    return GuardedModel(primary, NaiveForecaster(4, 8), fail_max=fail_max, reset_timeout=RESET), wrong.session


def test_a_corrupt_or_truncated_onnx_file_does_not_load(tmp_path):
    from serving.runtime import OnnxForecaster

    good = tiny_onnx(tmp_path / "model.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    for path in (corrupt, truncated):
        with pytest.raises(Exception) as info:
            OnnxForecaster.from_path(path)
        assert "onnxruntime" in type(info.value).__module__ or "ONNXRuntimeError" in str(info.value)
    assert OnnxForecaster.from_path(good).run(np.ones((2, 8), np.float32)).shape == (2, 4, 1)


def test_breaker_opens_after_five_real_failures_the_backup_answers_and_a_probe_closes_it(tmp_path):
    guarded, wrong_session = _guarded(tmp_path)
    primary, backup = guarded.primary, guarded.backup
    good_session = primary.session
    windows = np.arange(16, dtype=np.float32).reshape(2, 8) + 100

    values, used = guarded.run(windows)
    assert used is primary and guarded.state == "closed"
    np.testing.assert_allclose(values[:, 0, 0], windows.mean(axis=1))

    primary.session = wrong_session  # fault: the session now expects 6 inputs, onnxruntime raises
    for _ in range(3):
        values, used = guarded.run(windows)
        assert used is backup and guarded.state == "closed"
        np.testing.assert_array_equal(values[:, :, 0], np.repeat(windows[:, -1:], 4, axis=1))  # naive answered
    assert "INVALID_ARGUMENT" in guarded.last_error or "Invalid" in guarded.last_error

    primary.session = good_session  # fault: an output that overflows float32 (inf / NaN) is no forecast
    values, used = guarded.run(np.full((2, 8), 3e38, np.float32))
    assert used is backup and np.isfinite(values).all() and "ModelFailure" in guarded.last_error
    assert guarded.state == "closed" and guarded.failures == 4
    values, used = guarded.run(np.full((1, 8), 3e38, np.float32))  # the fifth consecutive failure
    assert used is backup and guarded.state == "open" and guarded.failures == 5

    values, used = guarded.run(windows)  # open: the (healthy again) primary is not even tried
    assert used is backup and guarded.failures == 5 and guarded.status()["breaker"] == "open"
    time.sleep(RESET + 0.1)
    primary.session = wrong_session  # the half-open probe fails: open again, for another reset_timeout
    values, used = guarded.run(windows)
    assert used is backup and guarded.state == "open" and guarded.failures == 6
    primary.session = good_session
    assert guarded.run(windows)[1] is backup  # still open
    time.sleep(RESET + 0.1)
    values, used = guarded.run(windows)  # the probe succeeds: closed
    assert used is primary and guarded.state == "closed"
    np.testing.assert_allclose(values[:, 0, 0], windows.mean(axis=1))
    status = guarded.status()
    assert status["fallbacks"] == 8 and status["fail_max"] == 5 and status["reset_timeout_s"] == RESET


def test_a_success_resets_the_consecutive_count(tmp_path):
    guarded, wrong_session = _guarded(tmp_path, fail_max=3)
    good = guarded.primary.session
    windows = np.ones((1, 8), np.float32)
    for _ in range(4):  # 2 failures, 1 success, repeated: never 3 in a row
        guarded.primary.session = wrong_session
        guarded.run(windows)
        guarded.run(windows)
        guarded.primary.session = good
        assert guarded.run(windows)[1] is guarded.primary
    assert guarded.state == "closed" and guarded.failures == 8


def _prom(text: str, name: str, arm: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(f'{name}{{arm="{arm}"}}'))
    return float(line.split()[-1])


@pytest.mark.slow
def test_service_breaker_state_in_health_and_metrics_with_the_backup_labelled(make_service, served, tmp_path):
    """Through HTTP: the champion's ONNX session is replaced by one of another input size (every call raises in
    onnxruntime); after 5 failures /health says open and degraded, tradecast_breaker_state is 2, forecasts come
    from the backup (the previous champion) with fallback true; after reset_timeout a healthy probe closes it.
    (A window that would overflow the model cannot come in over HTTP: /predict refuses |values| > 1e15 with 422;
    the overflow fault is exercised on GuardedModel directly.)"""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.runtime import OnnxForecaster

    service = make_service(fail_max=5, reset_timeout_s=RESET)
    client = TestClient(create_app(service, start_background=False))
    guarded = service.arms()["champion"]
    assert guarded.primary.info.version == served.nhits and guarded.backup.info.version == served.baseline
    good = guarded.primary.session
    guarded.primary.session = OnnxForecaster.from_path(tiny_onnx(tmp_path / "t.onnx", "naive", 12, 10)).session
    window = service.buffers.window("BTCUSDT").tolist()

    assert _prom(client.get("/metrics").text, "tradecast_breaker_state", "champion") == 0
    for _ in range(5):
        response = client.post("/predict", json={"windows": [window]})
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == served.baseline  # the backup answered
    spiked = [window[-1]] * 288
    spiked[100] = 1e20
    refused = client.post("/predict", json={"windows": [spiked]})
    assert refused.status_code == 422 and "windows[0][100]" in refused.json()["detail"]
    health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert health["arms"]["champion"]["breaker"] == "open" and health["arms"]["champion"]["failures"] == 5
    assert health["arms"]["champion"]["last_error"]  # the onnxruntime error, named
    metrics = client.get("/metrics").text
    assert _prom(metrics, "tradecast_breaker_state", "champion") == 2
    assert _prom(metrics, "tradecast_breaker_failures", "champion") == 5

    forecast = client.get("/forecast/BTCUSDT").json()
    assert forecast["fallback"] is True and forecast["model_version"] == served.baseline
    assert forecast["yhat"] == [pytest.approx(window[-1], rel=1e-6)] * 12  # the baseline (naive) answer
    assert 'fallback="true"' in client.get("/metrics").text

    # the primary is healthy again (the good session); after reset_timeout the next call probes it
    guarded.primary.session = good
    time.sleep(RESET + 0.1)
    forecast = client.get("/forecast/BTCUSDC").json()
    assert forecast["fallback"] is False and forecast["model_version"] == served.nhits
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["arms"]["champion"]["breaker"] == "closed"
    assert _prom(client.get("/metrics").text, "tradecast_breaker_state", "champion") == 0


@pytest.mark.slow
def test_a_fallback_forecast_is_not_served_from_the_cache_after_recovery(make_service, tmp_path):
    from serving.runtime import OnnxForecaster

    service = make_service(fail_max=1, reset_timeout_s=RESET)
    guarded = service.arms()["champion"]
    good = guarded.primary.session
    guarded.primary.session = OnnxForecaster.from_path(tiny_onnx(tmp_path / "t.onnx", "naive", 12, 10)).session
    assert service.predictor.forecast("BTCUSDT").fallback
    guarded.primary.session = good
    time.sleep(RESET + 0.1)
    assert not service.predictor.forecast("BTCUSDT").fallback


@pytest.mark.slow
def test_a_corrupt_backup_file_falls_back_to_naive(make_service, served, tmp_path):
    from serving.source import ModelSource

    source = ModelSource(str(served.home))
    source.cache = tmp_path / "cache"
    folder = source.onnx_dir(NAME, source.registry.version(NAME, served.baseline))
    (folder / "model.onnx").write_bytes(b"\x08\x07garbage" * 100)  # damaged, and recorded so (no checksum to
    report = json.loads((folder / "export.json").read_text())  # catch it: a damaged cache is downloaded again)
    report.pop("sha256", None)
    (folder / "export.json").write_text(json.dumps(report))
    service = make_service(source=source, challenger_share=0.5)
    guarded = service.arms()["champion"]
    assert guarded.primary.info.version == served.nhits and guarded.backup.info.kind == "naive"
    assert any("challenger" in note for note in service.notes)
