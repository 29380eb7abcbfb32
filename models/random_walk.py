"""The statistical price baseline of the field: the random walk with drift (Hyndman & Athanasopoulos, FPP 5.2),
refitted at every origin with the data up to it: ``yhat_k = y_T + k * (y_T - y_1) / (T - 1)``.

Nixtla's statsforecast (AutoETS, AutoTheta, AutoARIMA, RandomWalkWithDrift) was the plan; its 2.1 release pins
pandas < 3 (and imports fugue, also pandas < 3), and the project runs on pandas 3.1: under pandas 2.3 four of the
fault corpus's ingest guards (NUL bytes, 1e400, far-future stamps) regressed. The closed form needs no library and
gives statsforecast's RandomWalkWithDrift forecasts exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd

from domain.vocabulary import PRICE_BASELINES

KEYS = ["unique_id", "cutoff", "step"]


def price_forecasts(history: pd.DataFrame, windows: pd.DataFrame, *, h: int,
                    models: tuple[str, ...] = PRICE_BASELINES) -> pd.DataFrame:
    """Forecast ``h`` steps after every ``(unique_id, cutoff)`` of ``windows`` from ``history`` (``unique_id, ds,
    y``) up to the cutoff: the keys and contract of `models.baselines.baseline_forecasts` (the last observation
    ``<= cutoff`` is the origin; windows without one are dropped; steps are positional). A series with a single
    point up to its cutoff has no drift (0)."""
    unknown = [m for m in models if m not in PRICE_BASELINES]
    if unknown:
        raise ValueError(f"unknown price model(s) {unknown}; known: {list(PRICE_BASELINES)}")
    if not isinstance(h, int | np.integer) or h <= 0:
        raise ValueError(f"h must be a positive integer (got {h!r})")
    hist = history.sort_values(["unique_id", "ds"], kind="stable")
    steps = np.arange(1, h + 1)
    parts = []
    for uid, w in windows[["unique_id", "cutoff"]].drop_duplicates().groupby("unique_id", sort=True):
        series = hist[hist["unique_id"] == uid]
        ds, y = series["ds"].to_numpy(), series["y"].to_numpy(dtype=float)
        cutoffs = w["cutoff"].to_numpy(dtype=ds.dtype) if len(ds) else w["cutoff"].to_numpy()
        pos = np.searchsorted(ds, cutoffs, side="right") - 1
        keep = pos >= 0
        pos, cutoffs = pos[keep], cutoffs[keep]
        if not len(pos):
            continue
        drift = np.where(pos > 0, (y[pos] - y[0]) / np.maximum(pos, 1), 0.0)
        forecast = y[pos][:, None] + drift[:, None] * steps[None, :]
        parts.append(pd.DataFrame({"unique_id": np.repeat(uid, len(pos) * h), "cutoff": np.repeat(cutoffs, h),
                                   "step": np.tile(steps, len(pos)), "rw_drift": forecast.ravel()}))
    if not parts:
        return pd.DataFrame(columns=[*KEYS, *models])
    return pd.concat(parts, ignore_index=True).sort_values(KEYS, ignore_index=True)
