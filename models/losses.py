"""Per-point forecast losses that fit the target (issue 16), for paired tests (models.significance) and their means.

Every per-point function takes arrays and returns a float array of the same shape, NaN where the pair is invalid
(the actual or the forecast is NaN or infinite), so per-point losses of two models stay aligned row by row; the
means (:func:`mean_loss`) ignore NaN like :mod:`models.metrics`.

Volatility target: ``y`` and ``yhat`` are volatilities (standard deviations of returns), so QLIKE and the variance
MSE square them. A volatility below 0 is not a volatility: it is clipped to 0 before squaring (a negative forecast
is judged as a zero forecast, never rewarded by its square).

QLIKE guard rule (one rule, for actuals and forecasts alike): both variances are floored at
``floor = FLOOR_REL * mean(y**2 over the finite positive actuals)`` -- relative to the scale of the series, computed
from the actuals only, so two models compared on the same actuals share it. A zero actual (a flat bar) or a zero /
negative forecast then gives a finite loss: a floored forecast under an actual of typical size costs about
``1 / FLOOR_REL`` (~1e8: the gate must not crash on a bad model, but must not promote it either), a floored actual
under a sensible forecast about ``-ln(FLOOR_REL) - 1`` (~17). :func:`point_losses` floors each series
(``unique_id``) at its own scale; if a series has no positive actual the floor is ``FLOOR_REL`` itself (unit
scale). :func:`qlike_floored` counts the floored points.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from models.metrics import coverage

ArrayLike = np.ndarray | pd.Series | list | float

FLOOR_REL = 1e-8  # QLIKE variance floor, relative to the mean positive actual variance
INTERVAL_TAUS = (0.1, 0.5, 0.9)  # the quantiles of a predictions frame's (lo, yhat, hi): the 80% interval + median


def _pair(y: ArrayLike, yhat: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float arrays of ``y`` and ``yhat`` (same shape required) and the mask of finite pairs."""
    y_arr, yhat_arr = np.asarray(y, float), np.asarray(yhat, float)
    if y_arr.shape != yhat_arr.shape:
        raise ValueError(f"y and yhat shapes differ: {y_arr.shape} vs {yhat_arr.shape}")
    return y_arr, yhat_arr, np.isfinite(y_arr) & np.isfinite(yhat_arr)


def _where(ok: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.where(ok, values, np.nan)


def mean_loss(losses: ArrayLike) -> float:
    """Mean of the finite per-point losses (NaN if there is none)."""
    arr = np.asarray(losses, float)
    ok = np.isfinite(arr)
    return float(arr[ok].mean()) if ok.any() else float("nan")


def abs_error(y: ArrayLike, yhat: ArrayLike) -> np.ndarray:
    """``|y - yhat|`` per point (its mean is :func:`models.metrics.mae`)."""
    y_arr, yhat_arr, ok = _pair(y, yhat)
    return _where(ok, np.abs(y_arr - yhat_arr))


def squared_error(y: ArrayLike, yhat: ArrayLike) -> np.ndarray:
    """``(y - yhat)**2`` per point (its mean is :func:`models.metrics.mse`)."""
    y_arr, yhat_arr, ok = _pair(y, yhat)
    return _where(ok, (y_arr - yhat_arr) ** 2)


def scaled_abs_error(y: ArrayLike, yhat: ArrayLike, scale: ArrayLike) -> np.ndarray:
    """``|y - yhat| / scale`` per point; NaN where the scale is 0 or NaN, so the mean is :func:`models.metrics.mase`."""
    y_arr, yhat_arr, ok = _pair(y, yhat)
    s_arr = np.broadcast_to(np.asarray(scale, float), y_arr.shape)
    ok = ok & np.isfinite(s_arr) & (s_arr > 0)
    return _where(ok, np.abs(y_arr - yhat_arr) / np.where(ok, s_arr, 1.0))


def _variance(vol: np.ndarray) -> np.ndarray:
    return np.clip(vol, 0.0, None) ** 2


def variance_floor(y: ArrayLike, groups: ArrayLike | None = None) -> float | np.ndarray:
    """The QLIKE floor: ``FLOOR_REL * mean(y**2)`` over the finite positive actuals (``FLOOR_REL`` if none).

    With ``groups`` (e.g. ``unique_id`` per point) one floor per group, returned per point.
    """
    y_arr = np.asarray(y, float)
    positive = np.isfinite(y_arr) & (y_arr > 0)
    var = np.where(positive, _variance(np.where(positive, y_arr, 0.0)), np.nan)
    if groups is None:
        return FLOOR_REL * (mean_loss(var) if np.isfinite(var).any() else 1.0)
    means = pd.Series(var).groupby(np.asarray(groups), sort=False).transform("mean").to_numpy(float)
    return FLOOR_REL * np.where(np.isfinite(means), means, 1.0)


def _floored_variances(y: ArrayLike, yhat: ArrayLike, floor: ArrayLike | None):
    y_arr, yhat_arr, ok = _pair(y, yhat)
    f = np.broadcast_to(np.asarray(variance_floor(y_arr) if floor is None else floor, float), y_arr.shape)
    if not np.all(np.isfinite(f) & (f > 0)):
        raise ValueError("the QLIKE floor must be finite and > 0")
    v, vhat = _variance(np.where(ok, y_arr, 1.0)), _variance(np.where(ok, yhat_arr, 1.0))
    floored = ok & ((v < f) | (vhat < f))
    return np.maximum(v, f), np.maximum(vhat, f), ok, floored


def qlike(y: ArrayLike, yhat: ArrayLike, floor: ArrayLike | None = None) -> np.ndarray:
    """Patton (2011) QLIKE of volatility forecasts, per point: ``r - ln(r) - 1`` with ``r = y**2 / yhat**2``.

    ``>= 0``, 0 when ``yhat == y``; robust to noise in the volatility proxy (Patton 2011). Variances are floored
    at ``floor`` (default :func:`variance_floor` of ``y``; scalar or per point) -- the guard rule of the module
    docstring. NaN where ``y`` or ``yhat`` is NaN or infinite.
    """
    v, vhat, ok, _ = _floored_variances(y, yhat, floor)
    r = v / vhat
    return _where(ok, r - np.log(r) - 1.0)


def qlike_floored(y: ArrayLike, yhat: ArrayLike, floor: ArrayLike | None = None) -> int:
    """How many valid points :func:`qlike` floored (actual or forecast variance below the floor)."""
    return int(_floored_variances(y, yhat, floor)[3].sum())


def mse_variance(y: ArrayLike, yhat: ArrayLike) -> np.ndarray:
    """Squared error of the variances, ``(y**2 - yhat**2)**2`` per point (negative volatilities clipped to 0)."""
    y_arr, yhat_arr, ok = _pair(y, yhat)
    return _where(ok, (_variance(np.where(ok, y_arr, 0.0)) - _variance(np.where(ok, yhat_arr, 0.0))) ** 2)


def pinball(y: ArrayLike, q_forecast: ArrayLike, tau: float) -> np.ndarray:
    """Pinball (quantile) loss of the ``tau``-quantile forecast: ``max(tau * (y - q), (tau - 1) * (y - q))``."""
    if not 0.0 < tau < 1.0:
        raise ValueError(f"tau must be in (0, 1) (got {tau})")
    y_arr, q_arr, ok = _pair(y, q_forecast)
    u = y_arr - q_arr
    return _where(ok, np.maximum(tau * u, (tau - 1.0) * u))


def crps_from_quantiles(y: ArrayLike, quantiles: Mapping[float, ArrayLike]) -> np.ndarray:
    """CRPS approximated from quantile forecasts: ``2 * mean over taus of pinball(y, q_tau, tau)``, per point.

    The CRPS is ``2 * integral_0^1 pinball_tau dtau``; the mean over the given taus is its quadrature on them
    (the "mean scaled quantile loss" of the literature; coarse with only (0.1, 0.5, 0.9)). A point forecast given
    as every quantile scores its absolute error, the CRPS of a point mass, when the taus are symmetric about 0.5.
    NaN where any quantile is missing.
    """
    if not quantiles:
        raise ValueError("crps_from_quantiles needs at least one quantile forecast")
    per_tau = np.stack([pinball(y, q, float(tau)) for tau, q in quantiles.items()])
    return 2.0 * per_tau.mean(axis=0)


def interval_coverage(y: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> float:
    """Share of actuals inside ``[lo, hi]`` (:func:`models.metrics.coverage`: NaN triples ignored)."""
    return coverage(y, lo, hi)


def interval_width(lo: ArrayLike, hi: ArrayLike) -> float:
    """Mean width ``hi - lo`` of the (80%) interval over finite pairs; a crossed pair (``lo > hi``) is empty: width
    0 (and a miss for :func:`interval_coverage`). NaN if no interval is available."""
    lo_arr, hi_arr, ok = _pair(lo, hi)
    return mean_loss(_where(ok, np.clip(hi_arr - lo_arr, 0.0, None)))


LossFn = Callable[..., np.ndarray]
# name -> per-point loss f(y, yhat) (mase: f(y, yhat, scale)); lower is better for all
LOSSES: dict[str, LossFn] = {
    "mae": abs_error,
    "mse": squared_error,
    "mase": scaled_abs_error,
    "qlike": qlike,
    "mse_var": mse_variance,
}
SCALED_LOSSES = frozenset({"mase"})
FRAME_LOSSES = (*LOSSES, "crps")  # what point_losses accepts


def _frame_scale(frame: pd.DataFrame, scale: pd.Series | ArrayLike | None) -> np.ndarray:
    if scale is None:
        raise ValueError("metric 'mase' needs a scale (models.metrics.naive_scale of the training part)")
    if isinstance(scale, pd.Series):
        return frame["unique_id"].map(scale).to_numpy(float)  # per series, as score_predictions does
    return np.broadcast_to(np.asarray(scale, float), (len(frame),))


def point_losses(frame: pd.DataFrame, metric: str, scale: pd.Series | ArrayLike | None = None) -> np.ndarray:
    """Per-row losses of a long predictions frame (columns ``y, yhat``; ``unique_id`` for QLIKE and MASE).

    ``metric`` is one of :data:`FRAME_LOSSES`. ``mase`` needs ``scale``: a Series indexed by ``unique_id``
    (:func:`models.metrics.naive_scale`), or values per row / a scalar. ``qlike`` floors each ``unique_id`` at its
    own scale (:func:`variance_floor`). ``crps`` reads ``lo, yhat, hi`` as the quantiles :data:`INTERVAL_TAUS`.
    """
    if metric not in FRAME_LOSSES:
        raise ValueError(f"metric must be one of {sorted(FRAME_LOSSES)} (got {metric!r})")
    y, yhat = frame["y"].to_numpy(float), frame["yhat"].to_numpy(float)
    if metric == "crps":
        cols = (frame["lo"], frame["yhat"], frame["hi"])
        return crps_from_quantiles(y, {tau: c.to_numpy(float) for tau, c in zip(INTERVAL_TAUS, cols, strict=True)})
    if metric in SCALED_LOSSES:
        return LOSSES[metric](y, yhat, _frame_scale(frame, scale))
    if metric == "qlike" and "unique_id" in frame.columns:
        return qlike(y, yhat, floor=variance_floor(y, groups=frame["unique_id"].to_numpy()))
    return LOSSES[metric](y, yhat)
