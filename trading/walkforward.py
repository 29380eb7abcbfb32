"""Walk-forward strategy inputs from rolling-origin forecasts: for every (symbol, bar) of the test period, what a
trader knew before the bar opened.

The gate's evaluation stores every model's forecasts from each origin (`evaluation_forecasts`: cutoff, step, ds,
yhat, the realised y). A bar ``ds`` is traded on the forecasts of the latest origin before it (``cutoff < ds``), so
no number a strategy uses was computed with data after its origin:

* ``vol_hat``: the volatility model's forecast of bar ``ds``;
* ``mu``: the close model's expected return over bar ``ds``, ``yhat(ds) / yhat(previous bar) - 1`` with the realised
  close at the origin standing in for the previous bar's forecast at step 1.

Perfect foresight replaces both by the realised values (an upper bound no forecaster reaches).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KEY = ["unique_id", "ds"]


def latest_origin(points: pd.DataFrame) -> pd.DataFrame:
    """Per (unique_id, ds) the row of the latest origin before ``ds`` (``cutoff < ds``); rows at or after their
    target bar (none in a rolling-origin evaluation) are refused rather than traded on."""
    if (points["cutoff"] >= points["ds"]).any():
        bad = points[points["cutoff"] >= points["ds"]].iloc[0]
        raise ValueError(f"forecast of {bad.unique_id} at {bad.ds} has origin {bad.cutoff}, not before it")
    ordered = points.sort_values([*KEY, "cutoff"], kind="stable")
    return ordered.drop_duplicates(KEY, keep="last").reset_index(drop=True)


def realised_returns(closes: pd.DataFrame) -> pd.DataFrame:
    """``unique_id, ds, ret``: simple return of each bar close-to-close (a series' first bar has none)."""
    ordered = closes.sort_values(KEY, kind="stable")
    ret = ordered.groupby("unique_id", sort=False)["y"].pct_change()
    return ordered.assign(ret=ret)[[*KEY, "ret"]].dropna().reset_index(drop=True)


def expected_returns(close_points: pd.DataFrame, closes: pd.DataFrame) -> pd.DataFrame:
    """``unique_id, ds, cutoff, mu`` from one close model's rolling-origin forecasts: the forecast return of bar
    ``ds`` against the forecast (or, at step 1, the realised close at the origin) of the bar before it."""
    points = close_points.sort_values(["unique_id", "cutoff", "step"], kind="stable")
    base = points.groupby(["unique_id", "cutoff"], sort=False)["yhat"].shift(1)
    at_origin = closes.rename(columns={"ds": "cutoff", "y": "origin_close"})[["unique_id", "cutoff", "origin_close"]]
    points = points.assign(base=base).merge(at_origin, on=["unique_id", "cutoff"], how="left")
    points["base"] = points["base"].fillna(points["origin_close"])
    points["mu"] = points["yhat"] / points["base"] - 1.0
    return latest_origin(points)[[*KEY, "cutoff", "mu"]]


def forecast_vol(vol_points: pd.DataFrame) -> pd.DataFrame:
    """``unique_id, ds, cutoff, vol_hat`` from one volatility model's rolling-origin forecasts."""
    return latest_origin(vol_points).rename(columns={"yhat": "vol_hat"})[[*KEY, "cutoff", "vol_hat"]]


def foresight_vol(vol_points: pd.DataFrame) -> pd.DataFrame:
    """The realised volatility of each bar as its 'forecast' (perfect foresight, over the same bars)."""
    return latest_origin(vol_points).rename(columns={"y": "vol_hat"})[[*KEY, "cutoff", "vol_hat"]]


def foresight_returns(mu_frame: pd.DataFrame, closes: pd.DataFrame) -> pd.DataFrame:
    """The realised return of each bar of ``mu_frame`` as its expected return (perfect foresight)."""
    realised = realised_returns(closes).rename(columns={"ret": "mu"})
    return mu_frame[[*KEY, "cutoff"]].merge(realised, on=KEY, how="left")


def strategy_inputs(vol: pd.DataFrame | None, mu: pd.DataFrame | None) -> pd.DataFrame:
    """``unique_id, ds, cutoff, vol_hat, mu`` on the bars both inputs cover (either may be absent: a strategy that
    needs only one of them)."""
    if vol is None and mu is None:
        raise ValueError("a strategy needs a volatility forecast, an expected return, or both")
    if mu is None:
        return vol.assign(mu=np.nan)
    if vol is None:
        return mu.assign(vol_hat=np.nan)[[*KEY, "cutoff", "vol_hat", "mu"]]
    both = vol.merge(mu.drop(columns="cutoff"), on=KEY, how="inner")
    return both.sort_values(KEY, kind="stable").reset_index(drop=True)
