"""statsforecast's AutoETS / AutoTheta / AutoARIMA as price baselines: statsforecast's own refit=False
cross-validation numbers, no look-ahead, NaN for a series that cannot be fitted, the baselines' window keys."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from models.random_walk import price_forecasts
from models.statistical import MIN_TRAIN, _theta_forecasts, statistical_forecasts

MODELS = {"auto_ets": "AutoETS", "auto_theta": "AutoTheta", "auto_arima": "AutoARIMA"}


def walk(n: int, uid: str, seed: int, level: float = 50.0) -> pd.DataFrame:
    """A positive random walk with drift on a daily grid."""
    steps = np.random.default_rng(seed).normal(0.15, 1.0, n)
    return pd.DataFrame({"unique_id": uid, "ds": pd.date_range("2021-01-04", periods=n, freq="D"),
                         "y": level + np.cumsum(steps)})


def grid_windows(hist: pd.DataFrame, cutoffs) -> pd.DataFrame:
    return pd.DataFrame([(u, c) for u in sorted(hist.unique_id.unique()) for c in cutoffs],
                        columns=["unique_id", "cutoff"])


@pytest.fixture(scope="module")
def toy() -> pd.DataFrame:
    return pd.concat([walk(160, "a", 1), walk(160, "b", 2, level=80.0)], ignore_index=True)


@pytest.mark.filterwarnings("ignore:possible convergence problem")  # the reference's ARIMA search (ours is quiet)
def test_forecasts_are_statsforecasts_own_cross_validation_without_refit(toy):
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

    h, n_windows, step = 5, 6, 3
    sf = StatsForecast(models=[AutoETS(season_length=1), AutoTheta(season_length=1),
                               AutoARIMA(season_length=1, approximation=True)], freq="D")
    cv = sf.cross_validation(df=toy, h=h, n_windows=n_windows, step_size=step, refit=False)
    cv = cv.sort_values(["unique_id", "cutoff", "ds"], ignore_index=True)
    cutoffs = np.sort(cv.cutoff.unique())
    assert len(cutoffs) == n_windows
    # statsforecast fits once on the first window's training part (ds <= first cutoff), then forwards; season 5
    # is above the default max_season (1), so ours are non-seasonal like the reference
    out = statistical_forecasts(toy, grid_windows(toy, cutoffs), h=h, season_length=5, train_end=cutoffs[0])
    assert len(out) == len(cv) == 2 * n_windows * h
    assert (out.cutoff.to_numpy() == cv.cutoff.to_numpy()).all()
    for ours, theirs in MODELS.items():
        assert np.isfinite(out[ours]).all()
        np.testing.assert_allclose(out[ours], cv[theirs], rtol=1e-9, err_msg=ours)


@pytest.mark.parametrize("kind", ["STM", "OTM", "DSTM", "DOTM"])
def test_the_one_pass_theta_path_is_forward_at_every_origin(kind):
    from statsforecast.models import AutoTheta

    y = walk(120, "a", 3).y.to_numpy()
    fitted = AutoTheta(season_length=1, model=kind).fit(y[:80])
    pos = np.array([2, 3, 10, 79, 80, 95, 113])  # 3 values or fewer: forward refuses ("tiny datasets")
    fast = _theta_forecasts(fitted.model_, y, pos, 6)
    assert np.isnan(fast[0]).all()
    expected = np.array([fitted.forward(y=y[: p + 1], h=6)["mean"] for p in pos[1:]])
    np.testing.assert_allclose(fast[1:], expected, rtol=1e-10)


def test_a_planted_future_jump_changes_no_forecast_made_before_it(toy):
    days = toy.ds.drop_duplicates().sort_values().to_numpy()
    cutoffs = days[[120, 123, 126, 129, 132, 135]]
    windows = grid_windows(toy, cutoffs)
    before = statistical_forecasts(toy, windows, h=4, season_length=1, train_end=cutoffs[0])
    jumped = toy.assign(y=np.where(toy.ds > cutoffs[2], toy.y * 10, toy.y))
    after = statistical_forecasts(jumped, windows, h=4, season_length=1, train_end=cutoffs[0])
    early = before.cutoff <= cutoffs[2]
    pd.testing.assert_frame_equal(before[early], after[early])
    for name in MODELS:  # and the later origins do see it: the comparison can fail
        assert (after.loc[~early, name] != before.loc[~early, name]).all(), name


def test_rows_before_the_fitting_window_change_nothing(toy):
    days = toy.ds.drop_duplicates().sort_values().to_numpy()
    cutoffs = days[[130, 140]]
    windows = grid_windows(toy, cutoffs)
    kwargs = dict(h=3, season_length=1, train_end=cutoffs[0], max_train=60)  # window: rows 71..130
    base = statistical_forecasts(toy, windows, **kwargs)
    early = toy.assign(y=np.where(toy.ds < days[71], toy.y * 10, toy.y))
    pd.testing.assert_frame_equal(base, statistical_forecasts(early, windows, **kwargs))
    full = statistical_forecasts(early, windows, **{**kwargs, "max_train": None})
    assert not np.allclose(full.auto_ets, base.auto_ets)  # the whole training part does see them


def test_a_too_short_series_is_nan_and_the_others_are_not(toy, caplog):
    # days 152 - MIN_TRAIN .. 159 of the toy's grid: MIN_TRAIN - 1 rows up to day 150, the training part
    short = walk(MIN_TRAIN + 8, "short", 4).assign(ds=lambda f: f.ds + pd.Timedelta(days=152 - MIN_TRAIN))
    hist = pd.concat([toy, short], ignore_index=True)
    days = toy.ds.sort_values().unique()
    cutoffs = days[[150, 153]]
    with caplog.at_level(logging.WARNING, logger="models.statistical"):
        out = statistical_forecasts(hist, grid_windows(hist, cutoffs), h=3, season_length=1, train_end=cutoffs[0])
    assert set(out.unique_id) == {"a", "b", "short"}
    for name in MODELS:
        assert out.loc[out.unique_id == "short", name].isna().all()
        assert np.isfinite(out.loc[out.unique_id != "short", name]).all()
        assert any(name in r.message and "'short'" in r.message for r in caplog.records), name


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"models": ("auto_ets", "prophet")}, "prophet"),
    ({"h": 0}, "h must"), ({"h": 2.5}, "h must"), ({"h": True}, "h must"),
    ({"season_length": 0}, "season_length"),
    ({"max_season": 25}, "max_season"),
    ({"max_train": 5}, "max_train"),
])
def test_bad_arguments_are_named(toy, kwargs, named):
    windows = grid_windows(toy, [toy.ds.iloc[100]])
    args = {"h": 3, "season_length": 1, "train_end": toy.ds.iloc[100], **kwargs}
    with pytest.raises(ValueError, match=named):
        statistical_forecasts(toy, windows, **args)


def test_keys_are_those_of_the_random_walk_for_the_same_windows(toy):
    days = toy.ds.drop_duplicates().sort_values()
    windows = pd.DataFrame({
        "unique_id": ["b", "a", "a", "b", "a", "ghost"],
        "cutoff": [days.iloc[140], days.iloc[140], days.iloc[150] + pd.Timedelta(hours=6),  # between two bars
                   days.iloc[145], days.iloc[0] - pd.Timedelta(days=3), days.iloc[140]],  # before any data; unknown
    })
    out = statistical_forecasts(toy, windows, h=4, season_length=1, train_end=days.iloc[140])
    rw = price_forecasts(toy, windows, h=4)
    keys = ["unique_id", "cutoff", "step"]
    pd.testing.assert_frame_equal(out[keys], rw[keys])
    assert list(out.columns) == [*keys, *MODELS]
    assert len(out) == 4 * 4  # a: 2 cutoffs, b: 2; the early cutoff and the unknown series are dropped
    empty = statistical_forecasts(toy, windows.iloc[[4, 5]], h=4, season_length=1, train_end=days.iloc[140])
    assert list(empty.columns) == [*keys, *MODELS] and empty.empty
