"""models.losses against hand-computed values: QLIKE and its guard rule, variance MSE, pinball, CRPS, intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.losses import (
    FLOOR_REL,
    LOSSES,
    crps_from_quantiles,
    interval_coverage,
    interval_width,
    mean_loss,
    mse_variance,
    pinball,
    point_losses,
    qlike,
    qlike_floored,
    scaled_abs_error,
    variance_floor,
)
from models.metrics import coverage, mae, mase, mse


def test_qlike_is_zero_when_equal_and_matches_the_formula() -> None:
    y = np.array([0.01, 0.02, 0.03])
    assert qlike(y, y) == pytest.approx(np.zeros(3), abs=1e-12)
    # y = 2 * yhat: r = y^2 / yhat^2 = 4 -> 4 - ln 4 - 1; y = yhat / 2: r = 1/4 -> 1/4 + ln 4 - 1
    got = qlike([0.02, 0.01], [0.01, 0.02])
    assert got == pytest.approx([4 - math.log(4) - 1, 0.25 + math.log(4) - 1])
    assert (got > 0).all()
    # asymmetric: under-predicting the variance costs more than over-predicting it by the same factor
    assert got[0] > got[1]


def test_qlike_guard_zero_actual_zero_and_negative_forecast_are_finite_and_counted() -> None:
    y = np.array([0.0, 0.02, 0.02, 0.02, 0.02])
    yhat = np.array([0.02, 0.0, -0.01, 0.02, 0.01])
    floor = FLOOR_REL * np.mean([0.02**2] * 4)  # mean over the positive actuals only
    assert variance_floor(y) == pytest.approx(floor)
    got = qlike(y, yhat)
    assert np.isfinite(got).all()
    # zero actual: y^2 floored; r = floor / 0.02^2 = 0.8e-8
    r0 = floor / 0.02**2
    assert got[0] == pytest.approx(r0 - math.log(r0) - 1)
    assert 15 < got[0] < 25
    # zero and negative forecasts are the same floored forecast: r = 0.02^2 / floor, about 1.25e8
    r1 = 0.02**2 / floor
    assert got[1] == pytest.approx(r1 - math.log(r1) - 1)
    assert got[2] == got[1]
    assert got[1] > 1e7
    assert got[3] == pytest.approx(0.0)
    assert qlike_floored(y, yhat) == 3


def test_qlike_nan_pairs_are_nan_per_point_and_ignored_in_the_mean() -> None:
    got = qlike([0.02, np.nan, 0.02, np.inf], [0.01, 0.01, np.nan, 0.01])
    assert np.isnan(got[1:]).all()
    assert mean_loss(got) == pytest.approx(4 - math.log(4) - 1)
    assert np.isnan(mean_loss(qlike([np.nan], [1.0])))
    with pytest.raises(ValueError, match="shapes"):
        qlike([1.0, 2.0], [1.0])


def test_qlike_floor_is_relative_to_the_scale_and_no_positive_actual_uses_the_unit_floor() -> None:
    y, yhat = np.array([0.0, 2.0]), np.array([1.0, 0.0])
    # scaling both by 10 leaves QLIKE unchanged (a ratio), floored points included
    assert qlike(10 * y, 10 * yhat) == pytest.approx(qlike(y, yhat))
    assert variance_floor([0.0, np.nan, -1.0]) == FLOOR_REL
    assert np.isfinite(qlike([0.0, 0.0], [0.0, 1.0])).all()
    assert qlike([0.0], [0.0]) == pytest.approx([0.0])  # both floored: equal


def test_point_losses_floors_qlike_per_series() -> None:
    frame = pd.DataFrame({"unique_id": ["a", "a", "b", "b"], "y": [1.0, 1.0, 0.01, 0.0],
                          "yhat": [1.0, 1.0, 0.01, 0.01]})
    got = point_losses(frame, "qlike")
    r = FLOOR_REL * 0.01**2 / 0.01**2  # series b's own floor, not the pooled (dominated by series a)
    assert got[3] == pytest.approx(r - math.log(r) - 1)
    assert got[:3] == pytest.approx([0.0, 0.0, 0.0])
    assert variance_floor(frame["y"], groups=frame["unique_id"]) == pytest.approx(
        [FLOOR_REL, FLOOR_REL, FLOOR_REL * 0.0001, FLOOR_REL * 0.0001])


def test_mse_variance_by_hand_and_negative_forecast_clipped() -> None:
    got = mse_variance([0.2, 0.1, 0.1], [0.1, -0.1, np.nan])
    assert got[:2] == pytest.approx([(0.04 - 0.01) ** 2, (0.01 - 0.0) ** 2])
    assert np.isnan(got[2])


def test_pinball_by_hand() -> None:
    # y - q = 2 (under-forecast) and -2 (over-forecast) at tau 0.9 and 0.1
    assert pinball([3.0, 1.0], [1.0, 3.0], 0.9) == pytest.approx([0.9 * 2, 0.1 * 2])
    assert pinball([3.0, 1.0], [1.0, 3.0], 0.1) == pytest.approx([0.1 * 2, 0.9 * 2])
    assert pinball([3.0], [1.0], 0.5) == pytest.approx(0.5 * mae([3.0], [1.0]))
    with pytest.raises(ValueError, match="tau"):
        pinball([1.0], [1.0], 1.0)


def test_crps_from_quantiles_by_hand() -> None:
    y = np.array([2.0, 0.0])
    q = {0.1: np.array([1.0, 1.0]), 0.5: np.array([2.0, 2.0]), 0.9: np.array([3.0, 3.0])}
    # y=2: pinballs 0.1*1, 0, 0.1*1 -> mean 0.2/3 ; y=0: 0.9*1, 0.5*2, 0.1*3 = 0.9+1+0.3 = 2.2 -> mean 2.2/3
    assert crps_from_quantiles(y, q) == pytest.approx([2 * 0.2 / 3, 2 * 2.2 / 3])
    # a point forecast given as every (symmetric) quantile scores its absolute error (CRPS of a point mass)
    point = {tau: np.array([1.5, 1.5]) for tau in (0.1, 0.5, 0.9)}
    assert crps_from_quantiles(y, point) == pytest.approx(np.abs(y - 1.5))
    q[0.9] = np.array([3.0, np.nan])
    assert np.isnan(crps_from_quantiles(y, q)[1])


def test_interval_width_and_coverage_by_hand() -> None:
    y, lo, hi = [1.0, 5.0, 2.0, 0.0], [0.0, 1.0, 3.0, np.nan], [2.0, 4.0, 2.5, 1.0]
    assert interval_coverage(y, lo, hi) == pytest.approx(1 / 3) == coverage(y, lo, hi)
    # widths 2, 3 and a crossed (empty) interval 3 > 2.5 counted as 0; the NaN pair ignored
    assert interval_width(lo, hi) == pytest.approx((2 + 3 + 0) / 3)
    assert np.isnan(interval_width([np.nan], [1.0]))


def test_registry_means_equal_models_metrics() -> None:
    rng = np.random.default_rng(0)
    y, yhat = rng.normal(size=50), rng.normal(size=50)
    yhat[3] = np.nan
    scale = np.where(np.arange(50) % 7 == 0, 0.0, rng.uniform(0.5, 2.0, 50))
    assert mean_loss(LOSSES["mae"](y, yhat)) == pytest.approx(mae(y, yhat))
    assert mean_loss(LOSSES["mse"](y, yhat)) == pytest.approx(mse(y, yhat))
    assert mean_loss(scaled_abs_error(y, yhat, scale)) == pytest.approx(mase(y, yhat, scale))
    assert {"mae", "mse", "mase", "qlike", "mse_var"} <= set(LOSSES)


def test_point_losses_on_a_frame() -> None:
    frame = pd.DataFrame({"unique_id": ["a", "a", "b"], "y": [1.0, 2.0, 4.0], "yhat": [2.0, 2.0, 1.0],
                          "lo": [0.0, 1.0, 2.0], "hi": [3.0, 3.0, 3.0]})
    scale = pd.Series({"a": 2.0, "b": 0.5})
    assert point_losses(frame, "mase", scale) == pytest.approx([0.5, 0.0, 6.0])
    assert point_losses(frame, "mase", 2.0) == pytest.approx([0.5, 0.0, 1.5])
    assert point_losses(frame, "mae") == pytest.approx([1.0, 0.0, 3.0])
    assert point_losses(frame, "mse_var") == pytest.approx([9.0, 0.0, 225.0])
    expected_crps = crps_from_quantiles(frame["y"], {0.1: frame["lo"], 0.5: frame["yhat"], 0.9: frame["hi"]})
    assert point_losses(frame, "crps") == pytest.approx(expected_crps)
    with pytest.raises(ValueError, match="scale"):
        point_losses(frame, "mase")
    with pytest.raises(ValueError, match="metric"):
        point_losses(frame, "smape")
