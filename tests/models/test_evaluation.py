"""models.evaluation: time split, no look-ahead, rolling-origin metrics vs baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.configs import spec_for
from models.evaluation import TrainResult, time_split, train_and_evaluate
from models.frames import to_training_frame

MODELS = {"nhits", "naive", "seasonal_naive", "window_mean"}


def _toy(n: int = 30) -> pd.DataFrame:
    ds = pd.bdate_range("2024-01-01", periods=n)
    frames = [pd.DataFrame({"unique_id": "a", "ds": ds, "y": np.arange(n, dtype=float)}),
              pd.DataFrame({"unique_id": "b", "ds": ds[2:], "y": np.ones(n - 2)}),
              pd.DataFrame({"unique_id": "gone", "ds": ds[:20], "y": np.ones(20)})]  # ends before the test
    return pd.concat(frames, ignore_index=True)


def test_time_split_cutoffs_and_parts() -> None:
    frame = _toy()
    split = time_split(frame, h=3, n_windows=3, step_size=2)  # test_size = 3 + 2*2 = 7
    grid = sorted(frame["ds"].unique())
    assert split.train_end == grid[-8] and split.test_start == grid[-7]
    assert split.cutoffs == (grid[-8], grid[-6], grid[-4])
    assert split.train["ds"].max() == split.train_end
    assert split.dropped_series == ("gone",)
    assert set(split.full["unique_id"]) == {"a", "b"}
    with pytest.raises(ValueError, match="too few"):
        time_split(frame, h=10, n_windows=5)


@pytest.fixture(scope="module")
def crypto_result(crypto_1min: pd.DataFrame) -> tuple[pd.DataFrame, TrainResult]:
    frame = to_training_frame(crypto_1min, "crypto", "volatility")
    spec = spec_for("crypto", "quick", max_steps=5, val_check_steps=5, n_windows=3)
    return frame, train_and_evaluate(frame, spec, accelerator="cpu")


@pytest.mark.slow
def test_crypto_evaluation_finite_for_all_models(crypto_result: tuple[pd.DataFrame, TrainResult]) -> None:
    _, res = crypto_result
    table = res.evaluation.set_index("model")
    assert set(table.index) == MODELS
    assert np.isfinite(table[["mse", "mae", "mase"]].to_numpy()).all()
    assert table["coverage_80"].isna().all()  # MAE loss: no interval
    assert (table["n_windows"] == 3).all() and (table["n_series"] == 2).all()
    assert res.train_seconds > 0 and res.freq == "5min"
    assert res.train_loss is not None and np.isfinite(res.train_loss)
    assert res.val_loss is not None and np.isfinite(res.val_loss)  # quick hft spec keeps val_size=12


@pytest.mark.slow
def test_no_look_ahead(crypto_result: tuple[pd.DataFrame, TrainResult]) -> None:
    frame, res = crypto_result
    preds = res.predictions
    # every test window starts after the last training timestamp
    assert (preds["cutoff"] >= res.train_end).all()
    assert preds["ds"].min() == res.test_start > res.train_end
    assert (preds["ds"] > preds["cutoff"]).all()
    # the model was fitted on data up to train_end only
    assert pd.Timestamp(max(res.nf.last_dates)) == res.train_end
    # each window's forecast equals a forecast made from data truncated at its cutoff
    from models.forecasting import forecast

    last_cutoff = preds["cutoff"].max()
    truncated = forecast(res.nf, frame[frame["ds"] <= last_cutoff])
    window = preds[(preds.model == "nhits") & (preds.cutoff == last_cutoff)].sort_values(["unique_id", "ds"])
    np.testing.assert_allclose(window["yhat"].to_numpy(), truncated["yhat"].to_numpy(), rtol=1e-5)
    assert window["ds"].tolist() == truncated["ds"].tolist()


@pytest.mark.slow
def test_baselines_share_the_nhits_windows(crypto_result: tuple[pd.DataFrame, TrainResult]) -> None:
    frame, res = crypto_result
    preds = res.predictions
    keys = ["unique_id", "cutoff", "ds", "step", "y"]
    ref = preds[preds.model == "nhits"][keys].reset_index(drop=True)
    for model in MODELS - {"nhits"}:
        pd.testing.assert_frame_equal(preds[preds.model == model][keys].reset_index(drop=True), ref)
    naive = preds[preds.model == "naive"].iloc[0]
    series = frame[(frame.unique_id == naive.unique_id) & (frame.ds <= naive.cutoff)]
    assert naive.yhat == series["y"].iloc[-1]


@pytest.mark.slow
def test_equity_evaluation_with_interval(equities_daily: pd.DataFrame) -> None:
    frame = to_training_frame(equities_daily, "equities", "close", max_series=4)
    spec = spec_for("equities", "quick", max_steps=3, val_check_steps=3, loss="quantile",
                    mlp_units=((64, 64),) * 3, n_windows=2)
    res = train_and_evaluate(frame, spec, accelerator="cpu")
    table = res.evaluation.set_index("model")
    assert set(table.index) == MODELS
    assert np.isfinite(table[["mse", "mae", "mase"]].to_numpy()).all()
    assert 0.0 <= table.loc["nhits", "coverage_80"] <= 1.0
    assert table.drop(index="nhits")["coverage_80"].isna().all()
    assert (table["n_series"] == 4).all() and (table["n_points"] == 4 * 2 * 30).all()
    assert res.predictions["ds"].min() > res.train_end
