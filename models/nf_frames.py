"""neuralforecast's frames in and out: the columns a model reads (its exogenous lists) and its raw output mapped to
``yhat, lo, hi``. Shared by evaluation (`models.evaluation`) and forecasting (`models.forecasting`)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd


def nf_output_columns(columns: list[str], alias: str = "NHITS") -> dict[str, str | None]:
    """Map neuralforecast output columns to ``yhat``/``lo``/``hi`` (the 80% interval)."""
    point = alias if alias in columns else f"{alias}-median"
    if point not in columns:
        raise ValueError(f"no point forecast column for {alias!r} in {columns}")
    lo = [c for c in columns if re.fullmatch(rf"{re.escape(alias)}-lo-80(\.0)?", c)]
    hi = [c for c in columns if re.fullmatch(rf"{re.escape(alias)}-hi-80(\.0)?", c)]
    return {"yhat": point, "lo": lo[0] if lo else None, "hi": hi[0] if hi else None}


def tidy_nf_output(raw: pd.DataFrame, alias: str = "NHITS") -> pd.DataFrame:
    """``raw`` with neuralforecast's model columns replaced by float ``yhat, lo, hi``.

    MQLoss does not prevent quantile crossing (common after few steps), so
    quantile outputs are rearranged (sorted per row: lo <= median <= hi), which
    never increases the quantile loss. A mean point forecast (StudentT) is kept
    as is; only lo/hi are ordered. ``lo``/``hi`` are NaN without an interval.
    """
    cols = nf_output_columns(list(raw.columns), alias)
    out = raw.drop(columns=[c for c in raw.columns if c == alias or c.startswith(f"{alias}-")])
    for key, col in cols.items():
        out[key] = raw[col].to_numpy(dtype=float) if col else np.nan
    if cols["lo"] and cols["hi"]:
        if cols["yhat"].endswith("-median"):
            out[["lo", "yhat", "hi"]] = np.sort(out[["lo", "yhat", "hi"]].to_numpy(), axis=1)
        else:
            bounds = out[["lo", "hi"]].to_numpy()
            out["lo"], out["hi"] = bounds.min(axis=1), bounds.max(axis=1)
    return out


def exog_of(nf: Any) -> tuple[list[str], list[str]]:
    """``(historical, future)`` exogenous columns of a fitted or loaded NeuralForecast's first model."""
    model = nf.models[0]
    return list(getattr(model, "hist_exog_list", None) or []), list(getattr(model, "futr_exog_list", None) or [])


def model_columns(frame: pd.DataFrame, exog=()) -> pd.DataFrame:
    """``unique_id, ds, y`` and the exogenous columns a model reads; a missing or empty exogenous value is an
    error naming the column and the first row (the features are computed, never imputed, here)."""
    exog = list(exog)
    missing = [c for c in exog if c not in frame.columns]
    if missing:
        raise ValueError(f"the model reads exogenous column(s) {missing}, which the frame lacks "
                         f"(it has {list(frame.columns)}); join event features first")
    out = frame[["unique_id", "ds", "y", *exog]]
    for col in exog:
        bad = out[col].isna().to_numpy()
        if bad.any():
            row = out[bad].iloc[0]
            raise ValueError(f"exogenous column {col!r} is empty for {row.unique_id} at {row.ds}")
    return out
