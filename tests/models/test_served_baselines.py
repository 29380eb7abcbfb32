"""models.served_baselines: the baselines a version holds and the service runs, EWMA included; the EWMA on the
service's window equals the judged full-history EWMA; BaselineGraph (and its ONNX file) equals the forecaster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from domain.vocabulary import SERVED_BASELINES
from models.served_baselines import BaselineForecaster, ewma_window_forecast, served_forecasts


def _ewma_by_hand(window: list[float], lam: float = 0.94) -> float:
    """The RiskMetrics recursion written out: s_0 = mean of the first min(30, n) squares, then one update per value."""
    sq = [v * v for v in window]
    k = min(30, len(sq))
    s = sum(sq[:k]) / k
    for v in sq:
        s = lam * s + (1 - lam) * v
    return s**0.5


def test_ewma_forecaster_reads_the_last_input_size_values_and_is_flat() -> None:
    ds = pd.date_range("2024-01-01", periods=6, freq="5min")
    hist = pd.concat([pd.DataFrame({"unique_id": "a", "ds": ds, "y": [9.0, 9.0, 1.0, 2.0, 3.0, 4.0]}),
                      pd.DataFrame({"unique_id": "b", "ds": ds[:2], "y": [0.5, 0.25]})], ignore_index=True)
    fc = BaselineForecaster("ewma", h=3, input_size=4, season_length=1, freq="5min").predict(hist)
    assert list(fc.columns) == ["unique_id", "ds", "step", "yhat"]
    # a: the window is [1, 2, 3, 4]; s_0 = (1 + 4 + 9 + 16) / 4 = 7.5 (the 9s before the window are not read)
    s = 7.5
    for v in (1.0, 2.0, 3.0, 4.0):
        s = 0.94 * s + 0.06 * v * v
    np.testing.assert_allclose(fc[fc.unique_id == "a"]["yhat"], [s**0.5] * 3, rtol=1e-12)
    assert s**0.5 == pytest.approx(_ewma_by_hand([1.0, 2.0, 3.0, 4.0]), rel=1e-12)
    # b is shorter than the window: all its values
    np.testing.assert_allclose(fc[fc.unique_id == "b"]["yhat"], [_ewma_by_hand([0.5, 0.25])] * 3, rtol=1e-12)
    assert fc[fc.unique_id == "a"]["ds"].tolist() == list(pd.date_range("2024-01-01 00:30", periods=3, freq="5min"))


def _volatility_like(n: int, seed: int = 0) -> np.ndarray:
    """Positive, clustered values with a regime change early on (so a window's s_0 differs from the full-history
    EWMA state at the window's start)."""
    rng = np.random.default_rng(seed)
    level = np.where(np.arange(n) < n // 2, 0.002, 0.01) * np.exp(np.cumsum(rng.normal(0, 0.05, n)) * 0.1)
    return level * np.abs(rng.normal(1.0, 0.3, n))


@pytest.mark.parametrize("input_size", [288, 365])  # the service's windows: 5-minute and daily
def test_the_window_ewma_equals_the_full_history_ewma_of_a_long_series(input_size: int) -> None:
    from models.volatility import EWMA_LAMBDA, ewma_variance

    y = _volatility_like(4000)
    pos = np.array([1000, 2500, len(y) - 1])  # origins well past the regime change and the window length
    full = np.sqrt(ewma_variance(y, EWMA_LAMBDA, pos))
    window = ewma_window_forecast(y, pos, h=2, input_size=input_size)
    assert window.shape == (3, 2) and (window[:, 0] == window[:, 1]).all()
    rel = np.abs(window[:, 0] / full - 1)
    assert rel.max() <= 1e-6
    assert rel.max() <= 10 * EWMA_LAMBDA**input_size  # the O(lam^L) of the module docstring
    short = ewma_window_forecast(y, pos, h=1, input_size=20)[:, 0]  # a short window is visibly off: the check bites
    assert np.abs(short / full - 1).max() > 1e-3


def test_served_forecasts_uses_data_up_to_each_cutoff_only() -> None:
    ds = pd.date_range("2024-01-01", periods=50, freq="D")
    y = _volatility_like(50, seed=1)
    hist = pd.DataFrame({"unique_id": "x", "ds": ds, "y": y})
    windows = pd.DataFrame({"unique_id": ["x", "x"], "cutoff": [ds[19], ds[39]]})
    fc = served_forecasts(hist, windows, name="ewma", h=2, input_size=10, season_length=1)
    assert fc.columns.tolist() == ["unique_id", "cutoff", "step", "ewma"]
    np.testing.assert_allclose(fc["ewma"], np.repeat([_ewma_by_hand(list(y[10:20])), _ewma_by_hand(list(y[30:40]))],
                                                     2), rtol=1e-12)
    tampered = hist.assign(y=np.where(hist.ds > ds[19], 1e6, hist.y))
    again = served_forecasts(tampered, windows.iloc[:1], name="ewma", h=2, input_size=10, season_length=1)
    pd.testing.assert_frame_equal(again, fc.iloc[:2])
    naive = served_forecasts(hist, windows, name="naive", h=1, input_size=10, season_length=1)
    np.testing.assert_array_equal(naive["naive"], [y[19], y[39]])


def test_baseline_forecaster_names_and_parameters() -> None:
    for name in SERVED_BASELINES:
        assert BaselineForecaster(name, h=2, input_size=4, season_length=2).name == name
    for bad in ("har", "garch", "ewma_fitted", "drift"):
        with pytest.raises(ValueError, match=r"name must be one of \['naive', 'seasonal_naive', 'window_mean', 'ewma'"):
            BaselineForecaster(bad, h=1, input_size=1, season_length=1)
    with pytest.raises(ValueError, match="input_size must be > 0"):
        BaselineForecaster("ewma", h=1, input_size=0, season_length=1)
    params = {"name": "ewma", "h": 3, "input_size": 288, "season_length": 288, "freq": "5min"}
    assert BaselineForecaster.from_params(params).params() == params  # the stored JSON, unchanged
    with pytest.raises(ValueError, match=r"unknown \['lam'\]"):
        BaselineForecaster.from_params({**params, "lam": 0.9})
    with pytest.raises(ValueError, match=r"missing \['h'\]"):
        BaselineForecaster.from_params({k: v for k, v in params.items() if k != "h"})
    with pytest.raises(ValueError, match="JSON object"):
        BaselineForecaster.from_params([1, 2])


@pytest.mark.parametrize("name", SERVED_BASELINES)
def test_baseline_graph_and_its_onnx_equal_the_forecaster(name: str, tmp_path) -> None:
    """Each served baseline's graph equals BaselineForecaster on full windows (one series per window), and its
    exported ONNX file equals the graph at any batch size."""
    import torch

    from serving.export import export_onnx, max_rel_diff
    from serving.graph import BaselineGraph
    from serving.runtime import OnnxForecaster

    h, size, season = 5, 48, 12
    rng = np.random.default_rng(2)
    windows = np.stack([_volatility_like(size, seed=s) * 100 * (s + 1) for s in range(6)]).astype(np.float32)
    ds = pd.date_range("2024-01-01", periods=size, freq="5min")
    frame = pd.concat([pd.DataFrame({"unique_id": f"w{i}", "ds": ds, "y": w.astype(float)})
                       for i, w in enumerate(windows)], ignore_index=True)
    want = BaselineForecaster(name, h, size, season, "5min").predict(frame)["yhat"].to_numpy().reshape(-1, h)
    graph = BaselineGraph(name, h, size, season).eval()
    with torch.no_grad():
        got = graph(torch.from_numpy(windows)).numpy()
    assert got.shape == (6, h, 1)
    assert max_rel_diff(got[..., 0], want) <= 1e-6
    onnx = OnnxForecaster.from_path(export_onnx(graph, tmp_path / "b.onnx"))
    for batch in (1, 6, 40):
        sample = windows[np.arange(batch) % 6] * rng.uniform(0.5, 2.0, (batch, 1)).astype(np.float32)
        with torch.no_grad():
            ref = graph(torch.from_numpy(sample)).numpy()
        assert onnx.run(sample).shape == (batch, h, 1)
        assert max_rel_diff(onnx.run(sample), ref) <= 1e-5


def test_ewma_weights_are_the_unrolled_recursion() -> None:
    from serving.graph import ewma_weights

    y = _volatility_like(40, seed=3)
    for size in (5, 30, 40):  # fewer, as many and more values than the 30 that start s_0
        w = ewma_weights(size).numpy()
        assert np.sqrt(y[-size:] ** 2 @ w) == pytest.approx(_ewma_by_hand(list(y[-size:])), rel=1e-12)
    assert ewma_weights(288).sum().item() == pytest.approx(1.0, abs=1e-12)  # a weighted mean of squares
