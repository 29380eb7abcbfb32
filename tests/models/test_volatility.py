"""models.volatility: HAR, EWMA, fitted EWMA and GARCH(1,1) on the baselines' windows, history <= cutoff only."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from arch import arch_model

from domain.vocabulary import VOLATILITY_BASELINES
from models.baselines import baseline_forecasts
from models.volatility import (
    EWMA_GRID,
    ewma_variance,
    fit_ewma_lambda,
    garch_fit,
    har_fit,
    har_lags,
    log_returns,
    volatility_forecasts,
)

LAGS = (1, 5, 22)


def _garch_series(n: int, seed: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(close prices, per-bar volatility proxy) of a simulated GARCH(1,1) path with log returns ``scale * r``."""
    rng = np.random.default_rng(seed)
    r, s2 = np.zeros(n), np.full(n, 1.0)
    for t in range(1, n):
        s2[t] = 0.05 + 0.1 * r[t - 1] ** 2 + 0.85 * s2[t - 1]
        r[t] = np.sqrt(s2[t]) * rng.standard_normal()
    ret = scale * r / 100.0
    close = 100.0 * np.exp(np.cumsum(ret))
    return close, np.abs(ret) * 0.7 + 0.3 * scale * np.sqrt(s2) / 100.0


def _frames(n: int = 400, ids: tuple[str, ...] = ("a", "b")) -> tuple[pd.DataFrame, pd.DataFrame]:
    ds = pd.bdate_range("2020-01-01", periods=n)
    vol, close = [], []
    for i, uid in enumerate(ids):
        c, y = _garch_series(n, seed=i)
        vol.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": y}))
        close.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": c}))
    return pd.concat(vol, ignore_index=True), pd.concat(close, ignore_index=True)


def _windows(ids, cutoffs) -> pd.DataFrame:
    return pd.DataFrame([(u, pd.Timestamp(c)) for u in ids for c in cutoffs], columns=["unique_id", "cutoff"])


def test_har_lags_follow_the_frequency() -> None:
    assert har_lags("B") == har_lags("D") == (1, 5, 22)
    assert har_lags("5min") == (1, 12, 288)
    with pytest.raises(ValueError, match="freq"):
        har_lags("3min")


def test_har_coefficients_are_ols_on_the_hand_built_design() -> None:
    y = np.random.default_rng(0).uniform(0.1, 2.0, 90)
    rows = [[1.0, y[t], y[t - 4:t + 1].mean(), y[t - 21:t + 1].mean()] for t in range(21, len(y) - 1)]
    expected = np.linalg.lstsq(np.array(rows), y[22:], rcond=None)[0]
    np.testing.assert_allclose(har_fit(y, LAGS), expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="regression rows"):
        har_fit(y[:30], LAGS)


def test_noiseless_har_series_is_recovered_and_forecast_exactly() -> None:
    b = np.array([0.05, 0.4, 0.3, 0.2])
    y = np.empty(200)
    y[:22] = np.random.default_rng(1).uniform(0.1, 1.0, 22)
    for t in range(21, len(y) - 1):
        y[t + 1] = b[0] + b[1] * y[t] + b[2] * y[t - 4:t + 1].mean() + b[3] * y[t - 21:t + 1].mean()
    np.testing.assert_allclose(har_fit(y[:150], LAGS), b, atol=1e-6)
    ds = pd.bdate_range("2020-01-01", periods=len(y))
    hist = pd.DataFrame({"unique_id": "x", "ds": ds, "y": y})
    fc = volatility_forecasts(hist, _windows(["x"], [ds[149], ds[170]]), h=12, freq="B", train_end=ds[149],
                              models=("har",))
    np.testing.assert_allclose(fc["har"].to_numpy(), np.concatenate([y[150:162], y[171:183]]), rtol=1e-9)


def _ewma_loop(y: np.ndarray, lam: float, p: int) -> float:
    """RiskMetrics by hand: s_0 = mean of the first min(30, p+1) squares, then p+1 updates."""
    s = float(np.mean(y[:min(30, p + 1)] ** 2))
    for t in range(p + 1):
        s = lam * s + (1 - lam) * y[t] ** 2
    return s


@pytest.mark.parametrize("n", [10, 45])
def test_ewma_recursion_equals_a_hand_loop(n: int) -> None:
    y = np.random.default_rng(n).uniform(0.01, 0.05, n)
    expected = [_ewma_loop(y, 0.94, p) for p in range(n)]
    np.testing.assert_allclose(ewma_variance(y, 0.94, np.arange(n)), expected, rtol=1e-12)
    ds = pd.bdate_range("2021-01-01", periods=n)
    hist = pd.DataFrame({"unique_id": "x", "ds": ds, "y": y})
    fc = volatility_forecasts(hist, _windows(["x"], ds[[2, n - 1]]), h=3, freq="B", train_end=ds[-1],
                              models=("ewma",))
    np.testing.assert_allclose(fc["ewma"], np.sqrt(np.repeat([expected[2], expected[n - 1]], 3)), rtol=1e-12)


def _qlike_loop(y: np.ndarray, lam: float) -> float:
    s = [_ewma_loop(y, lam, t - 1) for t in range(1, len(y))]
    return float(np.mean([y[t] ** 2 / s[t - 1] + np.log(s[t - 1]) for t in range(1, len(y))]))


def test_ewma_fitted_lambda_is_the_grid_minimum_of_training_qlike() -> None:
    y = np.random.default_rng(3).uniform(0.5, 1.5, 150) * 0.01  # no clustering: heavy smoothing wins
    lam = fit_ewma_lambda(y)
    losses = [_qlike_loop(y, g) for g in EWMA_GRID]
    assert lam in EWMA_GRID and 0.94 in EWMA_GRID
    assert lam == EWMA_GRID[int(np.argmin(losses))] and lam != 0.94
    assert _qlike_loop(y, lam) <= _qlike_loop(y, 0.94)
    ds = pd.bdate_range("2021-01-01", periods=180)
    hist = pd.DataFrame({"unique_id": "x", "ds": ds, "y": np.concatenate([y, np.full(30, 0.2)])})
    fc = volatility_forecasts(hist, _windows(["x"], [ds[160]]), h=2, freq="B", train_end=ds[149],
                              models=("ewma_fitted",))
    np.testing.assert_allclose(fc["ewma_fitted"], np.sqrt(_ewma_loop(hist["y"].to_numpy(), lam, 160)), rtol=1e-12)


@pytest.mark.parametrize("scale", [1.0, 0.02])  # 0.02: intraday-sized returns, which arch rescales
def test_garch_matches_arch_forecast_and_documented_calibration(scale: float) -> None:
    close, y = _garch_series(600, seed=7, scale=scale)
    r, n_train = log_returns(close), 450
    fit = garch_fit(r[:n_train], y[: n_train + 1])
    res = arch_model(r, mean="Constant", vol="GARCH", p=1, q=1, dist="normal", rescale=True).fit(
        last_obs=n_train, disp="off")
    assert (fit.scale == 1.0) == (scale == 1.0)
    np.testing.assert_allclose([fit.mu, fit.omega, fit.alpha, fit.beta], np.asarray(res.params), rtol=1e-8)
    sigma_in = np.asarray(res.conditional_volatility)[:n_train]
    np.testing.assert_allclose(np.sqrt(fit.variance_path(r)[:n_train]), sigma_in, rtol=1e-8)
    arch_var = res.forecast(horizon=5, start=n_train + 10, reindex=False).variance.to_numpy()
    origins = np.arange(n_train + 10, len(r))
    np.testing.assert_allclose(fit.forecast(r, origins, 5), arch_var, rtol=1e-8)
    assert fit.c == pytest.approx(np.mean(y[: n_train + 1]) / np.mean(sigma_in), rel=1e-8)
    # the entry point: y rows <= train_end calibrate c, the forecast is c * sqrt(arch's variance); r[i] is the
    # return of bar i+1, so the cutoff ds[n_train + 20] is arch's origin n_train + 19 (row 9 of arch_var)
    ds = pd.bdate_range("2019-01-01", periods=len(close))
    hist = pd.DataFrame({"unique_id": "x", "ds": ds, "y": y})
    fc = volatility_forecasts(hist, _windows(["x"], [ds[n_train + 20]]), h=5, freq="B", train_end=ds[n_train],
                              close=hist.assign(y=close), models=("garch",))
    np.testing.assert_allclose(fc["garch"], fit.c * np.sqrt(arch_var[9]), rtol=1e-8)


def test_garch_without_enough_training_returns_is_nan_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    vol, close = _frames(n=200)
    ds = vol["ds"].unique()
    short = close[(close.unique_id == "b") & (close.ds >= ds[140])]  # b: 19 training returns
    with caplog.at_level(logging.WARNING, logger="models.volatility"):
        fc = volatility_forecasts(vol, _windows(["a", "b"], [ds[160]]), h=3, freq="B", train_end=ds[159],
                                  close=pd.concat([close[close.unique_id == "a"], short]))
    assert fc.loc[fc.unique_id == "b", "garch"].isna().all()
    assert fc.loc[fc.unique_id == "a", "garch"].notna().all()
    assert fc.drop(columns="garch").notna().all().all()
    assert any("'b'" in rec.getMessage() and "garch" in rec.getMessage() for rec in caplog.records)


def test_values_after_a_cutoff_change_nothing_forecast_up_to_it() -> None:
    vol, close = _frames()
    ds = vol["ds"].unique()
    cutoffs = [ds[300], ds[320], ds[340]]
    windows = _windows(["a", "b"], cutoffs)
    kwargs = {"h": 10, "freq": "B", "train_end": ds[300]}
    base = volatility_forecasts(vol, windows, close=close, **kwargs)
    after = vol["ds"] > cutoffs[1]
    tampered = volatility_forecasts(vol.assign(y=vol["y"].where(~after, 1e6)), windows,
                                    close=close.assign(y=close["y"].where(~after, close["y"] * 1e6)), **kwargs)
    early = base["cutoff"] <= cutoffs[1]
    pd.testing.assert_frame_equal(base[early], tampered[early])
    assert base[early][list(VOLATILITY_BASELINES)].notna().all().all()
    late = base[~early][list(VOLATILITY_BASELINES)].to_numpy()
    assert (late != tampered[~early][list(VOLATILITY_BASELINES)].to_numpy()).all()  # the tamper does reach them


def test_keys_match_the_baselines_and_inputs_are_checked() -> None:
    vol, close = _frames(n=260)
    ds = vol["ds"].unique()
    windows = pd.DataFrame({
        "unique_id": ["a", "a", "b", "b", "ghost"],
        "cutoff": [ds[200], pd.Timestamp(ds[230]) + pd.Timedelta(days=1), ds[0] - pd.Timedelta(days=3), ds[220],
                   ds[220]],
    })  # a cutoff between bars, one before any bar, one for an unknown series
    fc = volatility_forecasts(vol, windows, h=4, freq="B", train_end=ds[200], close=close)
    ref = baseline_forecasts(vol, windows, h=4, input_size=10, season_length=5)
    pd.testing.assert_frame_equal(fc[["unique_id", "cutoff", "step"]], ref[["unique_id", "cutoff", "step"]])
    assert list(fc.columns) == ["unique_id", "cutoff", "step", *VOLATILITY_BASELINES]
    assert (fc[list(VOLATILITY_BASELINES)] > 0).all().all()
    with pytest.raises(ValueError, match="close"):
        volatility_forecasts(vol, windows, h=4, freq="B", train_end=ds[200])
    with pytest.raises(ValueError, match="unknown volatility model.*'gjr'"):
        volatility_forecasts(vol, windows, h=4, freq="B", train_end=ds[200], models=("har", "gjr"))
    for h in (0, -2):
        with pytest.raises(ValueError, match="h must be"):
            volatility_forecasts(vol, windows, h=h, freq="B", train_end=ds[200], close=close)
    with pytest.raises(ValueError, match="freq"):
        volatility_forecasts(vol, windows, h=4, freq="W", train_end=ds[200], models=("har",))
