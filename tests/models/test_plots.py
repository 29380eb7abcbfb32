"""models.plots: PNG bytes for forecasts and evaluation tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.plots import plot_evaluation, plot_forecasts

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_MAGIC)
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_forecasts_png_with_band_and_without() -> None:
    ds = pd.date_range("2024-01-01", periods=50, freq="5min")
    hist = pd.DataFrame({"unique_id": np.repeat(["a", "b"], 50), "ds": np.tile(ds, 2),
                         "y": np.random.default_rng(0).normal(size=100)})
    fds = pd.date_range(ds[-1] + pd.Timedelta("5min"), periods=5, freq="5min")
    fc = pd.DataFrame({"unique_id": np.repeat(["a", "b"], 5), "ds": np.tile(fds, 2), "yhat": 0.0,
                       "lo": np.r_[[-1.0] * 5, [np.nan] * 5], "hi": np.r_[[1.0] * 5, [np.nan] * 5]})
    two = plot_forecasts(hist, fc, ["a", "b"], title="t")
    one = plot_forecasts(hist, fc, ["a", "zzz"], title="t")
    w2, h2 = _png_size(two)
    w1, h1 = _png_size(one)
    assert h2 > h1 > 100 and w1 > 100  # one panel per known symbol
    assert _png_size(plot_forecasts(hist, fc, ["zzz"]))[1] > 50


def test_plot_evaluation_png_and_bad_metric() -> None:
    table = pd.DataFrame({"model": ["nhits", "naive"], "mase": [0.9, 1.0], "coverage_80": [0.8, np.nan]})
    assert plot_evaluation(table, metric="mase").startswith(PNG_MAGIC)
    assert plot_evaluation(table, metric="coverage_80").startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="metric 'rmse'"):
        plot_evaluation(table, metric="rmse")
