"""The statistical price baseline of the field: the random walk with drift (Hyndman & Athanasopoulos, FPP 5.2),
refitted at every origin with the data up to it: ``yhat_k = y_T + k * (y_T - y_1) / (T - 1)``.

The closed form needs no library and gives statsforecast's RandomWalkWithDrift forecasts exactly; statsforecast's
AutoETS, AutoTheta and AutoARIMA are in `models.statistical`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from domain.vocabulary import RANDOM_WALK_BASELINES
from models.baselines import forecast_frame, origins


def price_forecasts(history: pd.DataFrame, windows: pd.DataFrame, *, h: int,
                    models: tuple[str, ...] = RANDOM_WALK_BASELINES) -> pd.DataFrame:
    """Forecast ``h`` steps after every ``(unique_id, cutoff)`` of ``windows`` from ``history`` (``unique_id, ds,
    y``) up to the cutoff: the keys and contract of `models.baselines.baseline_forecasts` (the last observation
    ``<= cutoff`` is the origin; windows without one are dropped; steps are positional). A series with a single
    point up to its cutoff has no drift (0)."""
    unknown = [m for m in models if m not in RANDOM_WALK_BASELINES]
    if unknown:
        raise ValueError(f"unknown random-walk model(s) {unknown}; known: {list(RANDOM_WALK_BASELINES)}")
    if not isinstance(h, int | np.integer) or h <= 0:
        raise ValueError(f"h must be a positive integer (got {h!r})")
    parts = []
    for o in origins(history, windows):
        drift = np.where(o.pos > 0, (o.y[o.pos] - o.y[0]) / np.maximum(o.pos, 1), 0.0)
        forecast = o.y[o.pos][:, None] + drift[:, None] * np.arange(1, h + 1)[None, :]
        parts.append({**o.keys(h), "rw_drift": forecast.ravel()})
    return forecast_frame(parts, models)
