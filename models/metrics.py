"""Forecast error metrics (pure numpy / pandas).

All point metrics ignore pairs where the actual or the forecast is NaN.
MASE follows Hyndman & Koehler (2006): each series' absolute errors are scaled
by the in-sample MAE of the one-step naive forecast (seasonality 1) computed on
that series' *training part only*, then averaged over all forecast points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _pair(y: np.ndarray | pd.Series, yhat: np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    y_arr, yhat_arr = np.asarray(y, float), np.asarray(yhat, float)
    if y_arr.shape != yhat_arr.shape:
        raise ValueError(f"y and yhat shapes differ: {y_arr.shape} vs {yhat_arr.shape}")
    ok = np.isfinite(y_arr) & np.isfinite(yhat_arr)
    return y_arr[ok], yhat_arr[ok]


def mse(y: np.ndarray | pd.Series, yhat: np.ndarray | pd.Series) -> float:
    """Mean squared error (NaN if there is no valid pair)."""
    a, b = _pair(y, yhat)
    return float(np.mean((a - b) ** 2)) if a.size else float("nan")


def mae(y: np.ndarray | pd.Series, yhat: np.ndarray | pd.Series) -> float:
    """Mean absolute error (NaN if there is no valid pair)."""
    a, b = _pair(y, yhat)
    return float(np.mean(np.abs(a - b))) if a.size else float("nan")


def naive_scale(train: pd.DataFrame, *, seasonality: int = 1, id_col: str = "unique_id",
                target_col: str = "y") -> pd.Series:
    """Per-series in-sample MAE of the seasonal naive forecast, ``mean |y_t - y_{t-m}|``.

    ``train`` must be sorted by time within each series and hold only the
    training part. Series with fewer than ``seasonality + 1`` points get NaN.
    """
    y = train[target_col].astype(float)
    diffs = (y - y.groupby(train[id_col], sort=False).shift(seasonality)).abs()
    return diffs.groupby(train[id_col], sort=True).mean().rename("scale")


def mase(y: np.ndarray | pd.Series, yhat: np.ndarray | pd.Series, scale: np.ndarray | pd.Series | float) -> float:
    """Mean of ``|y - yhat| / scale``; ``scale`` is per point (broadcast) or a scalar.

    Points whose scale is 0 or NaN (a constant training series) are ignored.
    """
    y_arr, yhat_arr = np.asarray(y, float), np.asarray(yhat, float)
    s_arr = np.broadcast_to(np.asarray(scale, float), y_arr.shape)
    ok = np.isfinite(y_arr) & np.isfinite(yhat_arr) & np.isfinite(s_arr) & (s_arr > 0)
    if not ok.any():
        return float("nan")
    return float(np.mean(np.abs(y_arr[ok] - yhat_arr[ok]) / s_arr[ok]))


def coverage(y: np.ndarray | pd.Series, lo: np.ndarray | pd.Series, hi: np.ndarray | pd.Series) -> float:
    """Share of actuals inside ``[lo, hi]`` (NaN if no interval is available)."""
    y_arr, lo_arr, hi_arr = (np.asarray(v, float) for v in (y, lo, hi))
    ok = np.isfinite(y_arr) & np.isfinite(lo_arr) & np.isfinite(hi_arr)
    if not ok.any():
        return float("nan")
    inside = (y_arr[ok] >= lo_arr[ok]) & (y_arr[ok] <= hi_arr[ok])
    return float(np.mean(inside))


def score_predictions(preds: pd.DataFrame, scale: pd.Series) -> pd.DataFrame:
    """One row per model from a long predictions frame.

    ``preds`` columns: ``model, unique_id, cutoff, ds, y, yhat`` and optional
    ``lo, hi``. ``scale`` is :func:`naive_scale` of the training part. Returns
    ``model, mse, mae, mase, coverage_80, n_windows, n_series, n_points``.
    """
    rows = []
    for model, part in preds.groupby("model", sort=False):
        s = part["unique_id"].map(scale).to_numpy(dtype=float)
        has_interval = {"lo", "hi"} <= set(part.columns)
        rows.append({
            "model": model,
            "mse": mse(part["y"], part["yhat"]),
            "mae": mae(part["y"], part["yhat"]),
            "mase": mase(part["y"], part["yhat"], s),
            "coverage_80": coverage(part["y"], part["lo"], part["hi"]) if has_interval else float("nan"),
            "n_windows": int(part["cutoff"].nunique()),
            "n_series": int(part["unique_id"].nunique()),
            "n_points": int(len(part)),
        })
    return pd.DataFrame(rows)
