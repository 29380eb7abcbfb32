"""The evaluation table: one row per model scored on the same windows, with the losses that fit the target.

Every model gets MSE, MAE, MASE and the counts (`models.metrics.score_predictions`); a volatility target adds
QLIKE (Patton 2011, the volatility literature's loss: robust to the noise of the volatility proxy) and MSE on
variances; a model with an 80% interval (quantile / StudentT losses) adds CRPS (from its 10/50/90% quantiles),
coverage and the interval's width."""

from __future__ import annotations

import numpy as np
import pandas as pd

from domain.vocabulary import BASELINES, ENSEMBLE_KIND, PRICE_BASELINES, VOLATILITY_BASELINES
from models.losses import interval_width, mean_loss, point_losses
from models.metrics import score_predictions

EXTRA = ("qlike", "mse_var", "crps", "interval_width")


def family(model: str) -> str:
    """``neural`` (NHITS, the benchmark's models), ``ensemble`` (NHITS + a served baseline), ``naive``
    (models.baselines) or ``field`` (HAR, EWMA, GARCH, random walk with drift, statsforecast's): how reports group
    the rows."""
    if model == ENSEMBLE_KIND:
        return "ensemble"
    if model in BASELINES:
        return "naive"
    if model in VOLATILITY_BASELINES or model in PRICE_BASELINES:
        return "field"
    return "neural"


def score_table(preds: pd.DataFrame, scale: pd.Series, *, target: str | None = None) -> pd.DataFrame:
    """One row per model of the long ``preds`` (``model, unique_id, cutoff, ds, step, y, yhat, lo, hi``):
    ``mse, mae, mase, coverage_80, n_windows, n_series, n_points`` plus ``qlike, mse_var`` (volatility target;
    NaN otherwise), ``crps, interval_width`` (NaN without an interval) and ``model_family``."""
    table = score_predictions(preds, scale)
    extra = []
    for model, part in preds.groupby("model", sort=False):
        row = dict.fromkeys(EXTRA, float("nan"))
        if target == "volatility":
            row["qlike"] = mean_loss(point_losses(part, "qlike"))
            row["mse_var"] = mean_loss(point_losses(part, "mse_var"))
        if {"lo", "hi"} <= set(part.columns) and np.isfinite(part[["lo", "hi"]].to_numpy(float)).any():
            row["crps"] = mean_loss(point_losses(part, "crps"))
            row["interval_width"] = interval_width(part["lo"], part["hi"])
        extra.append({"model": model, **row, "model_family": family(str(model))})
    return table.merge(pd.DataFrame(extra), on="model", how="left")
