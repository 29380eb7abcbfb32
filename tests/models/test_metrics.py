"""models.metrics against hand-computed values on toy series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.metrics import coverage, mae, mase, mse, naive_scale, score_predictions


def test_point_metrics_by_hand() -> None:
    y, yhat = np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 1.0])
    assert mse(y, yhat) == pytest.approx((1 + 0 + 9) / 3)
    assert mae(y, yhat) == pytest.approx((1 + 0 + 3) / 3)


def test_nan_pairs_are_ignored_and_shapes_checked() -> None:
    assert mae([1.0, np.nan, 3.0], [2.0, 5.0, np.nan]) == pytest.approx(1.0)
    assert np.isnan(mse([np.nan], [1.0]))
    with pytest.raises(ValueError, match="shapes"):
        mae([1.0, 2.0], [1.0])


def test_naive_scale_uses_training_part_per_series() -> None:
    train = pd.DataFrame({"unique_id": ["a"] * 4 + ["b"] * 3, "y": [1.0, 3.0, 2.0, 6.0, 10.0, 10.0, 13.0]})
    scale = naive_scale(train)
    assert scale["a"] == pytest.approx((2 + 1 + 4) / 3)
    assert scale["b"] == pytest.approx((0 + 3) / 2)
    assert naive_scale(train, seasonality=2)["a"] == pytest.approx((1 + 3) / 2)


def test_mase_by_hand_and_zero_scale_ignored() -> None:
    # training series 1, 3, 2, 6 -> naive MAE 7/3; test errors 1 and 2 -> mean 1.5 / (7/3) = 9/14
    assert mase([7.0, 8.0], [6.0, 6.0], 7 / 3) == pytest.approx(9 / 14)
    assert mase([1.0, 2.0], [0.0, 0.0], np.array([0.0, 2.0])) == pytest.approx(1.0)
    assert np.isnan(mase([1.0], [0.0], 0.0))


def test_coverage_by_hand() -> None:
    y = [1.0, 2.0, 3.0, 4.0]
    assert coverage(y, [0.0, 2.5, 3.0, 3.0], [2.0, 3.0, 3.0, 3.5]) == pytest.approx(0.5)
    assert np.isnan(coverage(y, [np.nan] * 4, [np.nan] * 4))


def test_score_predictions_one_row_per_model() -> None:
    preds = pd.DataFrame({
        "model": ["m1"] * 4 + ["m2"] * 4,
        "unique_id": ["a", "a", "b", "b"] * 2,
        "cutoff": pd.to_datetime(["2024-01-01"] * 2 + ["2024-01-01"] * 2 + ["2024-01-01"] * 4),
        "ds": pd.to_datetime(["2024-01-02", "2024-01-03"] * 4),
        "y": [1.0, 2.0, 3.0, 4.0] * 2,
        "yhat": [1.0, 1.0, 3.0, 2.0, 0.0, 0.0, 0.0, 0.0],
        "lo": [0.0, 0.0, 2.0, 1.0] + [np.nan] * 4,
        "hi": [2.0, 1.5, 4.0, 3.0] + [np.nan] * 4,
    })
    table = score_predictions(preds, pd.Series({"a": 1.0, "b": 2.0})).set_index("model")
    assert table.loc["m1", "mae"] == pytest.approx((0 + 1 + 0 + 2) / 4)
    assert table.loc["m1", "mase"] == pytest.approx((0 + 1 + 0 + 1) / 4)
    assert table.loc["m1", "coverage_80"] == pytest.approx(0.5)
    assert np.isnan(table.loc["m2", "coverage_80"])
    assert table.loc["m2", "mse"] == pytest.approx((1 + 4 + 9 + 16) / 4)
    assert table.loc["m2", ["n_windows", "n_series", "n_points"]].tolist() == [1, 2, 4]
