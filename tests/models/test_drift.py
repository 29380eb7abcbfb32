"""Drift statistics: PSI and KS on known samples, the reference window, performance drift, the class verdict."""

import numpy as np
import pandas as pd
import pytest

from models.drift import Thresholds, class_verdict, features, input_drift, performance_drift, psi


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shifted_one():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 5000), rng.normal(0, 1, 5000)
    assert psi(a, b) < 0.01
    assert psi(a, rng.normal(0, 3, 5000)) > 0.5
    # hand-computed on two bins: reference 50/50, current 80/20
    ref = np.r_[np.zeros(50), np.ones(50)]
    cur = np.r_[np.zeros(80), np.ones(20)]
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert psi(ref, cur, bins=2) == pytest.approx(expected)


def _frames(n=1200, shift_after=None, scale=5.0):
    rng = np.random.default_rng(1)
    returns = rng.normal(0, 0.01, n)
    if shift_after is not None:
        returns[shift_after:] *= scale
    ds = pd.bdate_range("2010-01-01", periods=n)
    close = pd.DataFrame({"unique_id": "A", "ds": ds, "y": 100 * np.exp(np.cumsum(returns))})
    vol = close.assign(y=np.abs(returns))
    return close, vol


def test_input_drift_compares_the_champions_training_window_with_the_newest_data():
    th = Thresholds(window=300)
    close, vol = _frames(shift_after=1000)
    ref_end = close.ds.iloc[999]  # the champion trained up to the shift
    table = input_drift(features(close, vol), "fx", ref_end, th)
    assert set(table.feature) == {"returns", "volatility"} and table.drifted.all()
    assert (table.n_ref == 300).all() and (table.n_cur == 200).all()
    assert class_verdict(table, th)[0]
    calm_close, calm_vol = _frames()
    calm = input_drift(features(calm_close, calm_vol), "fx", None, th)  # no champion: newest vs previous window
    assert not calm.drifted.any() and not class_verdict(calm, th)[0]
    assert "0 of 2 symbol features drifted" in class_verdict(calm, th)[1]


def test_too_few_points_are_not_tested_and_say_so():
    close, vol = _frames(n=60)
    table = input_drift(features(close, vol), "fx", None, Thresholds(window=500, min_points=50))
    assert table.psi.isna().all() and table.reason.str.startswith("not tested").all()
    assert class_verdict(table, Thresholds()) == (False, "nothing to test yet (too few points)")


def test_performance_drift_is_realized_mae_over_test_mae():
    ds = pd.bdate_range("2024-01-01", periods=20)
    forecasts = pd.DataFrame({"symbol": "A", "ds": ds, "yhat": 1.0})
    actuals = pd.DataFrame({"unique_id": "A", "ds": ds[:10], "y": 3.0})  # only 10 actuals exist so far
    row = performance_drift(forecasts, actuals, 1.0, "fx", "close", Thresholds(perf_ratio=1.5)).iloc[0]
    assert row.perf_ratio == pytest.approx(2.0) and row.n_cur == 10 and row.drifted
    waiting = performance_drift(forecasts, actuals.iloc[:0], 1.0, "fx", "close", Thresholds()).iloc[0]
    assert not waiting.drifted and "no actuals" in waiting.reason
    table = pd.concat([row.to_frame().T], ignore_index=True)
    assert class_verdict(table, Thresholds())[0]
