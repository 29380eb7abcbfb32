"""Baseline forecasts: naive (last value), seasonal naive, input-window mean.

Each forecast at a cutoff uses only observations with ``ds <= cutoff`` of its
own series. Steps are positional (step k = the k-th bar after the cutoff), the
same convention neuralforecast uses.

* ``naive``          yhat_k = y_T
* ``seasonal_naive`` yhat_k = y_{T + k - m * ceil(k / m)}  (m = season_length);
  NaN when the series has fewer than m points up to the cutoff.
* ``window_mean``    yhat_k = mean of the last ``input_size`` values (fewer if
  the series is shorter) -- the "information set" NHITS sees.

The forecaster a baseline version holds (these and EWMA, with ``predict``) is
:class:`models.served_baselines.BaselineForecaster`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from domain.vocabulary import BASELINES

KEYS = ["unique_id", "cutoff", "step"]


@dataclass(frozen=True)
class Origins:
    """One series' history (sorted by ``ds``) and its forecast origins: ``pos[i]`` is the position of the last
    observation ``<= cutoffs[i]``."""

    uid: str
    ds: np.ndarray
    y: np.ndarray
    pos: np.ndarray
    cutoffs: np.ndarray

    def keys(self, h: int) -> dict[str, np.ndarray]:
        """The ``unique_id, cutoff, step`` columns of its ``h``-step forecasts, origin by origin."""
        return {"unique_id": np.repeat(self.uid, len(self.pos) * h), "cutoff": np.repeat(self.cutoffs, h),
                "step": np.tile(np.arange(1, h + 1), len(self.pos))}


def origins(history: pd.DataFrame, windows: pd.DataFrame):
    """Per series of ``windows`` (``unique_id, cutoff``), sorted: its :class:`Origins` in ``history``
    (``unique_id, ds, y``). A cutoff need not be an observed timestamp; one with no observation up to it is dropped,
    and so is a series left without origins. The one place every baseline finds "the data up to the cutoff"."""
    hist = history.sort_values(["unique_id", "ds"], kind="stable")
    groups = hist.groupby("unique_id", sort=False).indices
    ds_all, y_all = hist["ds"].to_numpy(), hist["y"].to_numpy(dtype=float)
    for uid, w in windows[["unique_id", "cutoff"]].drop_duplicates().groupby("unique_id", sort=True):
        idx = groups.get(uid, np.empty(0, int))
        ds, y = ds_all[idx], y_all[idx]
        cutoffs = w["cutoff"].to_numpy(dtype=ds.dtype) if len(ds) else w["cutoff"].to_numpy()
        pos = np.searchsorted(ds, cutoffs, side="right") - 1
        keep = pos >= 0
        if keep.any():
            yield Origins(uid, ds, y, pos[keep], cutoffs[keep])


def forecast_frame(parts: list[dict], models) -> pd.DataFrame:
    """The wide forecasts ``unique_id, cutoff, step, <model>...`` sorted by the keys (empty with the columns)."""
    if not parts:
        return pd.DataFrame(columns=[*KEYS, *models])
    return pd.concat([pd.DataFrame(p) for p in parts], ignore_index=True).sort_values(KEYS, ignore_index=True)


def _forecast_positions(y: np.ndarray, pos: np.ndarray, model: str, h: int, input_size: int,
                        season_length: int) -> np.ndarray:
    """(n_windows, h) forecasts from one series' values ``y`` at last-known positions ``pos``."""
    steps = np.arange(1, h + 1)
    if model == "naive":
        return np.repeat(y[pos][:, None], h, axis=1)
    if model == "seasonal_naive":
        m = season_length
        lag = steps - m * np.ceil(steps / m).astype(int)  # in (-m, 0]
        idx = pos[:, None] + lag[None, :]
        out = y[np.clip(idx, 0, None)]
        return np.where((pos + 1 >= m)[:, None], out, np.nan)
    if model == "window_mean":
        csum = np.concatenate([[0.0], np.cumsum(y)])
        start = np.maximum(pos + 1 - input_size, 0)
        mean = (csum[pos + 1] - csum[start]) / (pos + 1 - start)
        return np.repeat(mean[:, None], h, axis=1)
    raise ValueError(f"unknown baseline {model!r}; known: {list(BASELINES)}")


def baseline_forecasts(
    history: pd.DataFrame,
    windows: pd.DataFrame,
    *,
    h: int,
    input_size: int,
    season_length: int,
    models: tuple[str, ...] = BASELINES,
) -> pd.DataFrame:
    """Forecast ``h`` steps after every ``(unique_id, cutoff)`` in ``windows``.

    ``history`` is a long frame ``unique_id, ds, y`` (NaN-free ``y``). A cutoff
    need not be an observed timestamp: the last observation ``<= cutoff`` is the
    forecast origin; windows with no such observation are dropped. Returns
    ``unique_id, cutoff, step, <one column per model>`` sorted by those keys.
    """
    parts = []
    for o in origins(history, windows):
        frame = o.keys(h)
        for model in models:
            frame[model] = _forecast_positions(o.y, o.pos, model, h, input_size, season_length).ravel()
        parts.append(frame)
    return forecast_frame(parts, models)
