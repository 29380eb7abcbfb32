"""The field's volatility forecasters: HAR, EWMA (RiskMetrics and fitted decay) and GARCH(1,1).

Same contract as :func:`models.baselines.baseline_forecasts`: every ``(unique_id, cutoff)`` of ``windows``
is forecast ``h`` positional steps ahead from the rows with ``ds <= cutoff`` only (windows with no such row
are dropped; a cutoff need not be an observed timestamp). Parameters are estimated once per series on the
training part (``ds <= train_end``), as NHITS is; at a cutoff before ``train_end`` they are in-sample.

* ``har`` (Corsi 2009): ``y_{t+1} = b0 + sum_l b_l mean(y_{t-l+1..t})`` over :func:`har_lags` (1, 5, 22
  bars daily; 1, 12, 288 for 5-minute bars), OLS per series; the h steps iterate the equation, feeding back
  forecasts. Each forecast is clipped at ``FLOOR`` (volatility is positive) before it is fed back.
* ``ewma`` (RiskMetrics): ``s_{t+1} = lam s_t + (1 - lam) y_t^2`` with ``lam = 0.94``; ``s_0`` is the mean
  of the first ``min(30, n)`` squares known at the cutoff; forecast ``sqrt(s_{T+1})``, flat over the horizon.
* ``ewma_fitted``: the same with ``lam`` per series from ``EWMA_GRID`` (0.800, 0.805, ..., 0.995) minimising
  the training one-step QLIKE ``mean(y_t^2 / s_t + log s_t)`` (Patton's QLIKE up to terms free of ``s``; it
  stays finite where ``y_t = 0``).
* ``garch``: GARCH(1,1), constant mean, normal errors (``arch``) on ``r = 100 diff(log close)`` of the
  series' close frame, fitted on the training returns (arch may rescale them by a power of 10: its
  ``res.scale``). The conditional variance ``sigma2_{t+1} = omega + alpha e_t^2 + beta sigma2_t`` (``e = r -
  mu``; started from arch's backcast) runs over all returns with the fitted parameters, and the k-step
  forecast from origin T is arch's analytic one, ``sigma2_{T+k} = omega + (alpha + beta) sigma2_{T+k-1}``
  (arch's loose variance bounds are not applied: they use the whole sample, a look-ahead). Return variance
  is not the target's unit, so ``y_hat = c sqrt(sigma2)`` with ``c = mean(y_train) / mean(sqrt(sigma2_t))``
  over the training part (in-sample conditional variances). Fewer than ``GARCH_MIN_RETURNS`` training
  returns, or an arch fit that fails or does not converge: that series' garch is NaN, with a logged warning.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from domain.vocabulary import VOLATILITY_BASELINES
from models.baselines import forecast_frame, origins

log = logging.getLogger(__name__)

FLOOR = 1e-8  # the smallest HAR forecast (volatility units)
EWMA_LAMBDA = 0.94  # RiskMetrics (1996), daily
EWMA_GRID = np.round(np.arange(0.800, 0.9951, 0.005), 3)
EWMA_INIT = 30  # s_0 = mean of the first min(EWMA_INIT, n) squares
HAR_MIN_ROWS = 20  # regression rows (t with a full longest window and a next value) needed to fit HAR
GARCH_MIN_RETURNS = 50
_DAILY_LAGS, _FIVE_MIN_LAGS = (1, 5, 22), (1, 12, 288)  # day/week/month; 5 min/hour/day
_HAR_LAGS = {"B": _DAILY_LAGS, "D": _DAILY_LAGS, "1d": _DAILY_LAGS, "5min": _FIVE_MIN_LAGS}


def har_lags(freq: str) -> tuple[int, ...]:
    """HAR averaging windows in bars for a frequency alias: daily ('B', 'D', '1d') -> (1, 5, 22), '5min' ->
    (1, 12, 288)."""
    if freq not in _HAR_LAGS:
        raise ValueError(f"no HAR lags known for freq {freq!r}; known: {sorted(_HAR_LAGS)}")
    return _HAR_LAGS[freq]


def _trailing_means(y: np.ndarray, lags: tuple[int, ...]) -> np.ndarray:
    """(n, len(lags)): column j at row t = mean(y[t-l+1..t]) for l = lags[j]; NaN where t < l - 1."""
    csum = np.concatenate([[0.0], np.cumsum(y)])
    out = np.full((len(y), len(lags)), np.nan)
    for j, lag in enumerate(lags):
        out[lag - 1:, j] = (csum[lag:] - csum[:-lag]) / lag
    return out


def har_design(y: np.ndarray, lags: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """HAR regression ``(X, target)``: rows t = max(lags)-1 .. n-2, X = [1, trailing means at t], target y_{t+1}."""
    m = max(lags)
    feats = _trailing_means(y, lags)[m - 1:-1] if len(y) > m else np.empty((0, len(lags)))
    return np.column_stack([np.ones(len(feats)), feats]), np.asarray(y[m:], float)


def har_fit(y_train: np.ndarray, lags: tuple[int, ...]) -> np.ndarray:
    """OLS coefficients ``[b0, b_lags...]`` (numpy lstsq); ValueError with fewer than HAR_MIN_ROWS rows."""
    x, target = har_design(np.asarray(y_train, float), lags)
    if len(target) < HAR_MIN_ROWS:
        raise ValueError(f"{len(target)} HAR regression rows (< {HAR_MIN_ROWS})")
    return np.linalg.lstsq(x, target, rcond=None)[0]


def har_forecast(y: np.ndarray, pos: np.ndarray, coef: np.ndarray, lags: tuple[int, ...], h: int) -> np.ndarray:
    """(len(pos), h) recursive HAR forecasts from last-known positions ``pos`` (NaN where pos < max(lags)-1)."""
    m, lag = max(lags), np.asarray(lags)
    buf = np.empty((len(pos), m + h))
    buf[:, :m] = y[np.clip(pos[:, None] + np.arange(1 - m, 1), 0, None)]
    sums = np.column_stack([buf[:, m - n:m].sum(axis=1) for n in lags])  # trailing window sums
    for k in range(h):  # the recursion: step k needs step k-1; vectorised over all origins
        nxt = np.maximum(coef[0] + (sums / lag) @ coef[1:], FLOOR)
        buf[:, m + k] = nxt
        sums += nxt[:, None] - buf[:, m + k - lag]  # slide every window one bar
    return np.where((pos >= m - 1)[:, None], buf[:, m:], np.nan)


def _ewma_variances(y: np.ndarray, lams: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """(len(lams), len(pos)): ``s_{p+1}`` per decay and last-known position p (see :func:`ewma_variance`)."""
    sq = np.asarray(y, float) ** 2
    pos = np.asarray(pos, int)
    k = np.minimum(pos + 1, EWMA_INIT)
    s0 = np.cumsum(sq)[k - 1] / k
    out = np.empty((len(lams), len(pos)))
    for i, lam in enumerate(lams):  # lfilter: (1 - lam) sum_{j<=p} lam^(p-j) y_j^2, the recursion from s_0 = 0
        out[i] = lam ** (pos + 1.0) * s0 + lfilter([1.0 - lam], [1.0, -lam], sq)[pos]
    return out


def ewma_variance(y: np.ndarray, lam: float, pos: np.ndarray) -> np.ndarray:
    """``s_{p+1}`` for each last-known position p: the EWMA variance from ``y[0..p]`` (s_0 from y[:min(30, p+1)])."""
    return _ewma_variances(y, np.array([lam]), pos)[0]


def _qlikes(y_train: np.ndarray, lams: np.ndarray) -> np.ndarray:
    y = np.asarray(y_train, float)
    s = np.maximum(_ewma_variances(y, lams, np.arange(len(y) - 1)), FLOOR**2)
    return np.mean(y[1:] ** 2 / s + np.log(s), axis=1)


def ewma_qlike(y_train: np.ndarray, lam: float) -> float:
    """Training one-step QLIKE ``mean(y_t^2 / s_t + log s_t)``, t = 1..n-1, s_t the forecast made at t - 1."""
    return float(_qlikes(y_train, np.array([lam]))[0])


def fit_ewma_lambda(y_train: np.ndarray) -> float:
    """The ``EWMA_GRID`` decay with the smallest training QLIKE (the first on ties); ValueError under 2 points."""
    if len(y_train) < 2:
        raise ValueError(f"{len(y_train)} training points (< 2)")
    return float(EWMA_GRID[int(np.argmin(_qlikes(y_train, EWMA_GRID)))])


@dataclass(frozen=True)
class GarchFit:
    """GARCH(1,1) parameters in arch's (rescaled) units, the backcast and the calibration to the target."""

    mu: float
    omega: float
    alpha: float
    beta: float
    scale: float  # arch's res.scale: returns were multiplied by it before fitting
    backcast: float  # arch's pre-sample variance: EWMA(0.94) of the first 75 demeaned squared training returns
    c: float = np.nan  # y_hat = c * sqrt(sigma2); see the module docstring

    def variance_path(self, returns: np.ndarray) -> np.ndarray:
        """sigma2_t (conditional variance of returns[t] given returns[:t]) for every t, plus sigma2_{n} last."""
        e2 = (self.scale * np.asarray(returns, float) - self.mu) ** 2
        drive = self.omega + self.alpha * np.concatenate([[self.backcast], e2])
        return lfilter([1.0], [1.0, -self.beta], drive, zi=[self.beta * self.backcast])[0]

    def forecast(self, returns: np.ndarray, origins: np.ndarray, h: int) -> np.ndarray:
        """(len(origins), h) variance forecasts for returns[q+1..q+h] from returns[:q+1], q in ``origins``."""
        out = np.empty((len(origins), h))
        out[:, 0] = self.variance_path(returns)[np.asarray(origins, int) + 1]
        for k in range(1, h):
            out[:, k] = self.omega + (self.alpha + self.beta) * out[:, k - 1]
        return out


def log_returns(close: np.ndarray) -> np.ndarray:
    """``100 * diff(log close)`` (percent log returns, arch's customary scale)."""
    return 100.0 * np.diff(np.log(np.asarray(close, float)))


def garch_fit(returns_train: np.ndarray, y_train: np.ndarray) -> GarchFit:
    """Fit GARCH(1,1) with arch on the training returns and calibrate ``c`` on ``y_train``; ValueError when the
    training part is too short or arch fails or does not converge."""
    from arch import arch_model
    from arch.utility.exceptions import ConvergenceWarning

    r = np.asarray(returns_train, float)
    if len(r) < GARCH_MIN_RETURNS:
        raise ValueError(f"{len(r)} training returns (< {GARCH_MIN_RETURNS})")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            res = arch_model(r, mean="Constant", vol="GARCH", p=1, q=1, dist="normal", rescale=True).fit(disp="off")
        except (ConvergenceWarning, ValueError, np.linalg.LinAlgError) as exc:
            raise ValueError(f"arch failed: {exc}") from exc
    if res.convergence_flag != 0:
        raise ValueError(f"arch did not converge (flag {res.convergence_flag})")
    mu, omega, alpha, beta = (float(v) for v in np.asarray(res.params))
    e = res.scale * r - r.mean() * res.scale  # arch's backcast uses the starting-value (sample-mean) residuals
    w = EWMA_LAMBDA ** np.arange(min(75, len(e)))
    fit = GarchFit(mu, omega, alpha, beta, float(res.scale), float(w @ e[:len(w)] ** 2 / w.sum()))
    sigma = np.sqrt(fit.variance_path(r)[:-1])
    return GarchFit(**{**fit.__dict__, "c": float(np.mean(y_train) / np.mean(sigma))})


def _fitted(model: str, uid: object, fit, *args):
    """``fit(*args)``, or None with a logged warning (that series' ``model`` forecasts are then NaN)."""
    try:
        return fit(*args)
    except ValueError as exc:
        log.warning("%s: series %r cannot be fitted (%s); its %s forecasts are NaN", model, uid, exc, model)
        return None


def volatility_forecasts(
    history: pd.DataFrame,
    windows: pd.DataFrame,
    *,
    h: int,
    freq: str,
    train_end: pd.Timestamp | str,
    close: pd.DataFrame | None = None,
    models: tuple[str, ...] = VOLATILITY_BASELINES,
) -> pd.DataFrame:
    """Volatility forecasts ``h`` steps after every ``(unique_id, cutoff)`` of ``windows``.

    ``history`` is the volatility frame ``unique_id, ds, y`` (NaN-free), ``close`` the close-price frame
    ``unique_id, ds, y`` of the same series (needed by ``garch`` only), ``freq`` the frame's frequency alias
    (picks the HAR lags), ``train_end`` the end of the training part the parameters are fitted on. Returns
    ``unique_id, cutoff, step, <one column per model>`` sorted by those keys, the same keys as
    :func:`models.baselines.baseline_forecasts` for the same windows.
    """
    unknown = [m for m in models if m not in VOLATILITY_BASELINES]
    if unknown:
        raise ValueError(f"unknown volatility model(s) {unknown}; known: {list(VOLATILITY_BASELINES)}")
    if not isinstance(h, int | np.integer) or h <= 0:
        raise ValueError(f"h must be a positive integer (got {h!r})")
    if "garch" in models and close is None:
        raise ValueError("garch needs close= (the close-price frame unique_id, ds, y of the same series)")
    lags = har_lags(freq) if "har" in models else ()
    closes = {}
    if "garch" in models:
        cl = close.sort_values(["unique_id", "ds"], kind="stable")
        closes = {uid: cl.iloc[idx] for uid, idx in cl.groupby("unique_id", sort=False).indices.items()}
    parts = []
    for o in origins(history, windows):
        end = pd.Timestamp(train_end).to_datetime64().astype(o.ds.dtype)
        y_train = o.y[: np.searchsorted(o.ds, end, side="right")]
        frame = o.keys(h)
        for model in models:
            frame[model] = _series_forecast(model, o.uid, o.y, y_train, o.pos, o.cutoffs, h, lags, closes.get(o.uid),
                                            end)
        parts.append(frame)
    return forecast_frame(parts, models)


def _series_forecast(model: str, uid: object, y: np.ndarray, y_train: np.ndarray, pos: np.ndarray,
                     cutoffs: np.ndarray, h: int, lags: tuple[int, ...], close: pd.DataFrame | None,
                     end: np.datetime64) -> np.ndarray:
    """One model's raveled (len(pos) * h) forecasts for one series."""
    nan = np.full(len(pos) * h, np.nan)
    if model == "har":
        coef = _fitted(model, uid, har_fit, y_train, lags)
        return nan if coef is None else har_forecast(y, pos, coef, lags, h).ravel()
    if model in ("ewma", "ewma_fitted"):
        lam = EWMA_LAMBDA if model == "ewma" else _fitted(model, uid, fit_ewma_lambda, y_train)
        return nan if lam is None else np.repeat(np.sqrt(ewma_variance(y, lam, pos)), h)
    if close is None or close.empty:
        log.warning("garch: series %r has no close prices; its garch forecasts are NaN", uid)
        return nan
    ds_c = close["ds"].to_numpy()
    returns, ds_r = log_returns(close["y"].to_numpy(dtype=float)), ds_c[1:]
    finite = np.isfinite(returns)
    returns, ds_r = returns[finite], ds_r[finite]
    n_train = int(np.searchsorted(ds_r, end.astype(ds_r.dtype), side="right"))
    fit = _fitted(model, uid, garch_fit, returns[:n_train], y_train)
    if fit is None:
        return nan
    origins = np.searchsorted(ds_r, cutoffs.astype(ds_r.dtype), side="right") - 1
    var = fit.forecast(returns, np.maximum(origins, 0), h)
    return np.where((origins >= 0)[:, None], fit.c * np.sqrt(var), np.nan).ravel()
