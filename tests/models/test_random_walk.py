"""The random walk with drift: the hand formula from the data up to each cutoff, no look-ahead, the baselines'
window contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.baselines import baseline_forecasts
from models.random_walk import price_forecasts


def frame(values, uid="a") -> pd.DataFrame:
    return pd.DataFrame({"unique_id": uid, "ds": pd.date_range("2024-01-01", periods=len(values), freq="D"),
                         "y": np.asarray(values, float)})


def test_the_forecast_is_the_last_value_plus_the_average_step_up_to_the_cutoff():
    hist = frame([10.0, 11.0, 13.0, 12.0, 20.0, 50.0])
    cut = hist.ds.iloc[3]  # data up to 12.0: drift (12 - 10) / 3
    out = price_forecasts(hist, pd.DataFrame({"unique_id": ["a"], "cutoff": [cut]}), h=3)
    assert out.step.tolist() == [1, 2, 3]
    np.testing.assert_allclose(out.rw_drift, [12 + 2 / 3, 12 + 4 / 3, 12 + 2.0])
    one = price_forecasts(hist, pd.DataFrame({"unique_id": ["a"], "cutoff": [hist.ds.iloc[0]]}), h=2)
    np.testing.assert_allclose(one.rw_drift, [10.0, 10.0])  # one point: no drift


def test_a_jump_after_the_cutoff_changes_nothing_at_or_before_it():
    hist = pd.concat([frame(np.linspace(1, 30, 30)), frame(np.linspace(5, 2, 30), "b")], ignore_index=True)
    windows = hist.groupby("unique_id").nth([9, 19])[["unique_id", "ds"]].rename(columns={"ds": "cutoff"})
    before = price_forecasts(hist, windows, h=4)
    jumped = hist.copy()
    jumped.loc[jumped.ds > windows.cutoff.max(), "y"] *= 1000
    pd.testing.assert_frame_equal(before, price_forecasts(jumped, windows, h=4))


def test_keys_match_the_naive_baselines_and_bad_input_is_named():
    hist = frame(np.arange(1.0, 21.0))
    windows = pd.DataFrame({"unique_id": ["a", "a", "a"], "cutoff": [hist.ds.iloc[5], hist.ds.iloc[9],
                                                                       pd.Timestamp("2023-01-01")]})
    mine = price_forecasts(hist, windows, h=3)
    naive = baseline_forecasts(hist, windows, h=3, input_size=5, season_length=2)
    pd.testing.assert_frame_equal(mine[["unique_id", "cutoff", "step"]], naive[["unique_id", "cutoff", "step"]])
    with pytest.raises(ValueError, match=r"unknown random-walk model\(s\) \[.auto_arima.\]"):
        price_forecasts(hist, windows, h=3, models=("auto_arima",))
    with pytest.raises(ValueError, match="h must be a positive integer"):
        price_forecasts(hist, windows, h=0)
