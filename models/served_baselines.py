"""The baselines a registered version can hold and the forecast service runs (``SERVED_BASELINES``): naive,
seasonal naive, window mean (:mod:`models.baselines`) and RiskMetrics EWMA (:mod:`models.volatility`), each read
from the last ``input_size`` values of a series, the service's window.

* ``naive`` / ``seasonal_naive`` / ``window_mean``: exactly :func:`models.baselines.baseline_forecasts`.
* ``ewma``: the judged recursion of :func:`models.volatility.ewma_variance` (``lam = EWMA_LAMBDA = 0.94``, ``s_0``
  = mean of the first ``min(EWMA_INIT, n)`` squares, ``s_{t+1} = lam s_t + (1 - lam) y_t^2``, forecast
  ``sqrt(s_{T+1})`` flat over ``h``) run over the window ``y[T - L + 1 .. T]`` (``L = input_size``, fewer values
  when the series is shorter) instead of the whole history. The two differ only through the start value: the
  window's ``s_0`` carries weight ``lam^L`` in ``s_{T+1}`` where the full history's carries ``lam^(T+1)``, both
  tiny, and the older squares the window leaves out carry ``lam^L`` in total. So the window forecast equals the
  full-history one up to ``O(lam^L)`` relative (``0.94^288 ~ 2e-8`` for 5-minute bars, ``0.94^365 ~ 2e-10``
  daily): what is judged (full history) is what is served, to float precision.

:class:`BaselineForecaster` is the one a baseline registered version holds; its JSON parameters are
``name, h, input_size, season_length, freq``. It lives here, not in :mod:`models.baselines`, because
:mod:`models.volatility` imports :mod:`models.baselines` (an import cycle otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from domain.vocabulary import BASELINES, SERVED_BASELINES
from models.baselines import baseline_forecasts, forecast_frame, origins
from models.volatility import EWMA_LAMBDA, ewma_variance

PARAMS = ("name", "h", "input_size", "season_length", "freq")  # BaselineForecaster's JSON parameters


def ewma_window_forecast(y: np.ndarray, pos: np.ndarray, h: int, input_size: int,
                         lam: float = EWMA_LAMBDA) -> np.ndarray:
    """(len(pos), h): ``sqrt(s_{p+1})`` of the EWMA run over the window ``y[p - input_size + 1 .. p]`` (from the
    series' start when shorter) for each last-known position ``p``, flat over the horizon."""
    out = np.empty((len(pos), h))
    for i, p in enumerate(np.asarray(pos, int)):
        window = np.asarray(y[max(p + 1 - input_size, 0):p + 1], float)
        out[i] = np.sqrt(ewma_variance(window, lam, np.array([len(window) - 1]))[0])
    return out


def served_forecasts(history: pd.DataFrame, windows: pd.DataFrame, *, name: str, h: int, input_size: int,
                     season_length: int) -> pd.DataFrame:
    """One served baseline's forecasts ``h`` steps after every ``(unique_id, cutoff)`` of ``windows``, from the
    rows with ``ds <= cutoff`` (the same contract and keys as :func:`models.baselines.baseline_forecasts`):
    ``unique_id, cutoff, step, <name>``."""
    if name not in SERVED_BASELINES:
        raise ValueError(f"unknown served baseline {name!r}; known: {list(SERVED_BASELINES)}")
    if name in BASELINES:
        return baseline_forecasts(history, windows, h=h, input_size=input_size, season_length=season_length,
                                  models=(name,))
    parts = []
    for o in origins(history, windows):
        frame = o.keys(h)
        frame[name] = ewma_window_forecast(o.y, o.pos, h, input_size).ravel()
        parts.append(frame)
    return forecast_frame(parts, (name,))


@dataclass(frozen=True)
class BaselineForecaster:
    """A fitted-free served baseline with a ``predict`` suited to wrapping as a pyfunc model.

    ``name`` is one of ``SERVED_BASELINES``. ``predict(history)`` forecasts the ``h`` steps after each series'
    last observation from its last ``input_size`` values; future ``ds`` are generated with ``freq`` (a pandas
    offset alias such as ``'5min'`` or ``'B'``).
    """

    name: str
    h: int
    input_size: int
    season_length: int
    freq: str = "B"

    def __post_init__(self) -> None:
        if self.name not in SERVED_BASELINES:
            raise ValueError(f"BaselineForecaster.name must be one of {list(SERVED_BASELINES)} (got {self.name!r})")
        for field_name in ("h", "input_size", "season_length"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
                raise ValueError(f"BaselineForecaster.{field_name} must be > 0 (got {value!r})")

    @classmethod
    def from_params(cls, params: object) -> BaselineForecaster:
        """From its JSON parameters (a dict with exactly the keys of ``PARAMS``, ``freq`` optional); a
        ValueError naming what is wrong otherwise."""
        if not isinstance(params, dict):
            raise ValueError(f"baseline parameters must be a JSON object with keys {list(PARAMS)} (got "
                             f"{type(params).__name__})")
        unknown = sorted(set(params) - set(PARAMS))
        missing = [k for k in PARAMS[:-1] if k not in params]
        if unknown or missing:
            raise ValueError(f"baseline parameters must have keys {list(PARAMS)}: unknown {unknown}, missing "
                             f"{missing}")
        return cls(**params)

    def params(self) -> dict:
        """Its JSON parameters (``name, h, input_size, season_length, freq``)."""
        return {k: getattr(self, k) for k in PARAMS}

    def predict(self, history: pd.DataFrame) -> pd.DataFrame:
        """Forecast frame ``unique_id, ds, step, yhat`` for every series in ``history``."""
        last = history.groupby("unique_id", sort=True)["ds"].max().rename("cutoff").reset_index()
        fc = served_forecasts(history, last, name=self.name, h=self.h, input_size=self.input_size,
                              season_length=self.season_length)
        offset = pd.tseries.frequencies.to_offset(self.freq)
        future = pd.DataFrame(
            [
                (uid, step, ds)
                for uid, cutoff in zip(last["unique_id"], last["cutoff"], strict=True)
                for step, ds in enumerate(pd.date_range(cutoff, periods=self.h + 1, freq=offset)[1:], start=1)
            ],
            columns=["unique_id", "step", "ds"],
        )
        out = future.merge(fc.rename(columns={self.name: "yhat"}), on=["unique_id", "step"], how="left")
        return out[["unique_id", "ds", "step", "yhat"]]
