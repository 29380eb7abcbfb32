"""Nixtla statsforecast's AutoETS, AutoTheta and AutoARIMA as price baselines on the rolling-origin windows.

Same contract as :func:`models.random_walk.price_forecasts`: every ``(unique_id, cutoff)`` of ``windows`` is
forecast ``h`` positional steps ahead from the rows with ``ds <= cutoff`` only (keys from
:func:`models.baselines.origins`: windows with no such row are dropped). Each model is fitted ONCE per series on
the training part (``ds <= train_end``), as NHITS is, and at every origin the fitted model is applied, with its
parameters fixed, to the series up to that origin: statsforecast's own ``forward(y=history, h=h)``, what its
``cross_validation(refit=False)`` does (the tests compare with it). No forecast sees data after its origin and
no parameter sees the test part (at an origin before ``train_end`` the parameters are in-sample, as in
`models.volatility`).

Fitting window: the fit uses the last ``max_train`` training rows (default ``MAX_TRAIN`` = 2,016: a week of
5-minute bars, more than the bundled daily series have), and every history a fitted model is applied to starts
at the same row (the initial states belong to it). An origin before that row gets NaN. Theta's fit costs the
square of the length in statsforecast 2.1: 20 crypto series of 5,472 training bars took 58 s with the whole
training part, 14 s with the window. ``max_train=None`` fits on the whole training part.

* ``auto_ets``: ``AutoETS(season_length=m)``, model ``ZZZ`` chosen by AICc (Hyndman & Khandakar 2008).
* ``auto_theta``: ``AutoTheta(season_length=m)``, the best of STM/OTM/DSTM/DOTM by in-sample MSE (Fiorucci et
  al. 2016). Its ``forward`` re-runs the state recursion over the whole history (quadratic in statsforecast
  2.1); non-seasonal, :func:`_theta_forecasts` runs it once over the longest history and forecasts every origin
  from its row of the states (the same numbers as ``forward``, checked by the tests).
* ``auto_arima``: ``AutoARIMA(season_length=m, approximation=True)``, stepwise search by AICc with
  conditional-sum-of-squares estimation during the search and a final exact-likelihood fit, R's
  ``auto.arima`` default for series longer than 150 (statsforecast's default is ``approximation=False``: 1.8x
  slower on the equities' 1,000-point series, forecasts within 3.5%).

Season: ``m = season_length if season_length <= max_season else 1``. The default ``max_season = 1`` fits every
price series non-seasonal: on the bundled equities (60 series, ~1,000 daily closes, season 5) AutoETS with
``m = 5`` chose a non-seasonal model for all 60, AutoARIMA a seasonal term for 12, and the seasonal fits cost
~4x (ETS 0.64 s vs 0.055 s a series); 5-minute bars (season 288) are beyond ETS's limit. ``max_season`` may
be raised to ``ETS_MAX_SEASON`` (24, statsforecast's ETS limit) to honour a shorter season.

A series with fewer than ``MIN_TRAIN`` training rows, or one statsforecast cannot fit (it raises), gets NaN for
that model with a logged warning; so does an origin whose ``forward`` raises.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd

from domain.vocabulary import STATISTICAL_BASELINES
from models.baselines import forecast_frame, origins

log = logging.getLogger(__name__)

MIN_TRAIN = 20  # training rows a series needs before any of the three is fitted
MAX_TRAIN = 2016  # the fitting window: the last 2,016 training rows (a week of 5-minute bars; 8 years of days)
ETS_MAX_SEASON = 24  # statsforecast's AutoETS refuses a longer season
_NMSE = 3  # statsforecast's theta default (the in-sample multi-step MSE horizon)


def season_for(season_length: int, max_season: int = 1) -> int:
    """The season the three models are fitted with: ``season_length`` up to ``max_season``, else 1."""
    return int(season_length) if season_length <= max_season else 1


def make_model(name: str, m: int):
    """The unfitted statsforecast model of one baseline name with this module's settings."""
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

    if name == "auto_ets":
        return AutoETS(season_length=m)
    if name == "auto_theta":
        return AutoTheta(season_length=m)
    if name == "auto_arima":
        return AutoARIMA(season_length=m, approximation=True)
    raise ValueError(f"unknown statistical model {name!r}; known: {list(STATISTICAL_BASELINES)}")


@contextmanager
def _quiet():
    """Silence statsforecast's per-fit chatter (ARIMA's 'possible convergence problem', ETS's divide-by-zero)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def fit_model(name: str, y_train: np.ndarray, m: int):
    """``make_model(name, m).fit(y_train)``; ValueError when the series is shorter than MIN_TRAIN or
    statsforecast cannot fit it (its own error in the message)."""
    if len(y_train) < MIN_TRAIN:
        raise ValueError(f"{len(y_train)} training rows (< {MIN_TRAIN})")
    try:
        with _quiet():
            return make_model(name, m).fit(np.asarray(y_train, dtype=float))
    except Exception as exc:  # statsforecast raises Exception, KeyError, NotImplementedError, LinAlgError...
        raise ValueError(f"statsforecast: {type(exc).__name__}: {exc}") from exc


def _theta_forecasts(model_: dict, y: np.ndarray, pos: np.ndarray, h: int) -> np.ndarray | None:
    """(len(pos), h) forecasts of a fitted non-seasonal theta model (statsforecast's ``model_`` dict) from the
    last-known positions ``pos``: ``forward(y[:p + 1], h)`` for every p, computed from one pass.

    The state recursion (level, running mean, A_n, B_n) is causal, so the rows of one pass over ``y[:max(pos)
    + 1]`` are those a pass over ``y[:p + 1]`` has; only STM/OTM's A_n, B_n are the OLS line of the whole
    history passed in, so row p gets the line of ``y[:p + 1]`` before statsforecast forecasts from it. None
    where the recursion stopped early (statsforecast's NA sentinel): then only per-origin ``forward`` is exact."""
    from statsforecast._lib import theta as _theta
    from statsforecast.theta import switch_theta

    par, kind = model_["par"], switch_theta(model_["modeltype"])
    alpha, theta = par["alpha"], par["theta"]
    y = np.asarray(y[: int(pos.max()) + 1], dtype=np.float64)
    _, _, states, mse = _theta.pegels_resid(y, kind, par["initial_smoothed"], alpha, theta, _NMSE)
    if np.isnan(mse):
        return None
    states = np.ascontiguousarray(states)
    if kind in (_theta.ModelType.STM, _theta.ModelType.OTM):  # init_state's A_n, B_n of the first n values
        n = np.arange(1, len(y) + 1, dtype=np.float64)
        mean, weighted = np.cumsum(y) / n, np.cumsum(y * n) / n
        with np.errstate(divide="ignore", invalid="ignore"):
            states[:, 3] = 6 * (2 * weighted - (n + 1) * mean) / (n * n - 1)
        states[:, 2] = mean - (n + 1) * states[:, 3] / 2
    out = np.full((len(pos), h), np.nan)
    for i, p in enumerate(pos):  # forecast reads row p only (and p + 1 as the time index)
        if p + 1 > 3:  # forward refuses a history of 3 or fewer values ("tiny datasets"): NaN, as there
            _theta.forecast(states[: p + 1], int(p) + 1, kind, out[i], alpha, theta)
    return out


def _forward_forecasts(model, y: np.ndarray, pos: np.ndarray, h: int, name: str, uid: object) -> np.ndarray:
    """(len(pos), h): ``model.forward(y=y[:p + 1], h=h)['mean']`` per last-known position p (NaN where it raises)."""
    out = np.full((len(pos), h), np.nan)
    failed = []
    for i, p in enumerate(pos):
        try:
            out[i] = model.forward(y=y[: p + 1], h=h)["mean"]
        except Exception as exc:  # one origin statsforecast cannot apply the model to: NaN for it alone
            failed.append(f"{p + 1} rows: {type(exc).__name__}: {exc}")
    if failed:
        log.warning("%s: series %r: forward failed at %d of %d origins (first: %s); those forecasts are NaN",
                    name, uid, len(failed), len(pos), failed[0])
    return out


def series_forecasts(name: str, uid: object, y: np.ndarray, n_train: int, pos: np.ndarray, h: int,
                     m: int) -> np.ndarray:
    """One model's (len(pos), h) forecasts for one series ``y``: fitted on ``y[:n_train]``, applied at the
    last-known positions ``pos`` (NaN where ``pos < 0``: an origin before the series' fitting window)."""
    out = np.full((len(pos), h), np.nan)
    try:
        fitted = fit_model(name, y[:n_train], m)
    except ValueError as exc:
        log.warning("%s: series %r cannot be fitted (%s); its %s forecasts are NaN", name, uid, exc, name)
        return out
    ok = pos >= 0
    if ok.any():
        with _quiet():
            # theta's forward re-tests seasonality on every history when m >= 4: the one-pass path is for m < 4
            fast = _theta_forecasts(fitted.model_, y, pos[ok], h) if name == "auto_theta" and m < 4 else None
            out[ok] = fast if fast is not None else _forward_forecasts(fitted, y, pos[ok], h, name, uid)
    return out


def _check_int(field: str, value: object, low: int, high: int | None = None) -> None:
    """ValueError naming ``field`` unless ``value`` is an integer in ``low..high``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low or (
            high is not None and value > high):
        raise ValueError(f"{field} must be an integer {f'in {low}..{high}' if high else f'>= {low}'} (got {value!r})")


def statistical_forecasts(history: pd.DataFrame, windows: pd.DataFrame, *, h: int, season_length: int,
                          train_end: pd.Timestamp | str, models: tuple[str, ...] = STATISTICAL_BASELINES,
                          max_season: int = 1, max_train: int | None = MAX_TRAIN) -> pd.DataFrame:
    """AutoETS / AutoTheta / AutoARIMA forecasts ``h`` steps after every ``(unique_id, cutoff)`` of ``windows``.

    ``history`` is the close frame ``unique_id, ds, y`` (NaN-free), ``season_length`` the frame's season in
    bars (used when ``<= max_season``: see the module docstring), ``train_end`` the end of the training part the
    models are fitted on: its last ``max_train`` rows (None: all of it), the series' fitting window, which also
    starts every history the fitted models are applied to. Returns ``unique_id, cutoff, step, <one column per
    model>`` sorted by those keys, the keys of :func:`models.random_walk.price_forecasts` for the same windows.
    """
    unknown = [m for m in models if m not in STATISTICAL_BASELINES]
    if unknown:
        raise ValueError(f"unknown statistical model(s) {unknown}; known: {list(STATISTICAL_BASELINES)}")
    _check_int("h", h, 1)
    _check_int("season_length", season_length, 1)
    _check_int("max_season", max_season, 1, ETS_MAX_SEASON)
    if max_train is not None:
        _check_int("max_train", max_train, MIN_TRAIN)
    m = season_for(season_length, max_season)
    parts = []
    for o in origins(history, windows):
        n_train = int(pd.Index(o.ds).searchsorted(train_end, side="right"))  # any ds dtype, tz-aware too
        start = max(n_train - max_train, 0) if max_train is not None else 0
        frame = o.keys(h)
        for name in models:
            frame[name] = series_forecasts(name, o.uid, o.y[start:], n_train - start, o.pos - start, h, m).ravel()
        parts.append(frame)
    return forecast_frame(parts, models)
