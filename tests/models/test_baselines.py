"""models.baselines: naive, seasonal naive, window mean; history <= cutoff only (and the BaselineForecaster of
models.served_baselines that wraps them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.baselines import baseline_forecasts
from models.served_baselines import BaselineForecaster


@pytest.fixture
def history() -> pd.DataFrame:
    ds = pd.date_range("2024-01-01", periods=10, freq="5min")
    return pd.concat([
        pd.DataFrame({"unique_id": "a", "ds": ds, "y": np.arange(10, dtype=float) ** 2}),
        pd.DataFrame({"unique_id": "b", "ds": ds[:4], "y": [3.0, 1.0, 4.0, 1.0]}),
    ], ignore_index=True)


def test_naive_is_last_value_at_each_cutoff(history: pd.DataFrame) -> None:
    windows = pd.DataFrame({"unique_id": ["a", "a", "b"],
                            "cutoff": pd.to_datetime(["2024-01-01 00:20", "2024-01-01 00:35", "2024-01-01 00:15"])})
    fc = baseline_forecasts(history, windows, h=3, input_size=4, season_length=2)
    assert fc[fc.unique_id == "a"]["naive"].tolist() == [16.0] * 3 + [49.0] * 3
    assert fc[fc.unique_id == "b"]["naive"].tolist() == [1.0] * 3
    assert fc["step"].tolist() == [1, 2, 3] * 3


def test_seasonal_naive_repeats_last_season(history: pd.DataFrame) -> None:
    windows = pd.DataFrame({"unique_id": ["a"], "cutoff": [pd.Timestamp("2024-01-01 00:25")]})  # last y = 25
    fc = baseline_forecasts(history, windows, h=5, input_size=4, season_length=3)
    # season = last 3 values 9, 16, 25 -> 9, 16, 25, 9, 16
    assert fc["seasonal_naive"].tolist() == [9.0, 16.0, 25.0, 9.0, 16.0]
    short = baseline_forecasts(history, windows.assign(cutoff=pd.Timestamp("2024-01-01 00:05")),
                               h=2, input_size=4, season_length=3)
    assert short["seasonal_naive"].isna().all()  # only 2 points known


def test_window_mean_uses_last_input_size_values(history: pd.DataFrame) -> None:
    windows = pd.DataFrame({"unique_id": ["a", "b"],
                            "cutoff": pd.to_datetime(["2024-01-01 00:25", "2024-01-01 00:40"])})
    fc = baseline_forecasts(history, windows, h=2, input_size=3, season_length=2)
    assert fc[fc.unique_id == "a"]["window_mean"].tolist() == [pytest.approx((9 + 16 + 25) / 3)] * 2
    assert fc[fc.unique_id == "b"]["window_mean"].tolist() == [pytest.approx((4 + 1 + 1) / 3)] * 2


def test_future_values_do_not_change_forecasts(history: pd.DataFrame) -> None:
    windows = pd.DataFrame({"unique_id": ["a"], "cutoff": [pd.Timestamp("2024-01-01 00:20")]})
    tampered = history.copy()
    tampered.loc[(tampered.unique_id == "a") & (tampered.ds > "2024-01-01 00:20"), "y"] = 1e9
    a = baseline_forecasts(history, windows, h=4, input_size=5, season_length=2)
    b = baseline_forecasts(tampered, windows, h=4, input_size=5, season_length=2)
    pd.testing.assert_frame_equal(a, b)


def test_baseline_forecaster_predicts_after_each_series_end(history: pd.DataFrame) -> None:
    fc = BaselineForecaster("naive", h=2, input_size=3, season_length=2, freq="5min").predict(history)
    assert list(fc.columns) == ["unique_id", "ds", "step", "yhat"]
    a = fc[fc.unique_id == "a"]
    assert a["ds"].tolist() == list(pd.to_datetime(["2024-01-01 00:50", "2024-01-01 00:55"]))
    assert a["yhat"].tolist() == [81.0, 81.0]
    assert fc[fc.unique_id == "b"]["yhat"].tolist() == [1.0, 1.0]


def test_baseline_forecaster_business_days_and_validation() -> None:
    hist = pd.DataFrame({"unique_id": "x", "ds": pd.bdate_range("2024-01-01", periods=5), "y": [1.0, 2, 3, 4, 5]})
    fc = BaselineForecaster("seasonal_naive", h=3, input_size=5, season_length=5, freq="B").predict(hist)
    assert fc["ds"].dt.dayofweek.tolist() == [0, 1, 2]  # Fri 2024-01-05 -> Mon, Tue, Wed
    assert fc["yhat"].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="name"):
        BaselineForecaster("drift", h=1, input_size=1, season_length=1)
    with pytest.raises(ValueError, match="h must be > 0"):
        BaselineForecaster("naive", h=0, input_size=1, season_length=1)
