"""Is the challenger's lower loss real? Diebold-Mariano (1995) with the Harvey-Leybourne-Newbold (1997) correction.

:func:`dm_test` works on two aligned per-point loss series (``a`` = challenger, ``b`` = champion). With the loss
differential ``d = loss_a - loss_b`` (NaN pairs dropped, ``n`` left) and
``gamma_k = (1/n) * sum_{t>k} (d_t - dbar)(d_{t-k} - dbar)``, the long-run variance of ``dbar`` is

    V = (gamma_0 + 2 * sum_{k=1}^{h-1} w_k * gamma_k) / n

with the rectangular kernel of DM (``w_k = 1``: an optimal h-step forecast error is MA(h-1)). That estimate can be
<= 0 (strong negative autocorrelation); then the Bartlett / Newey-West kernel (``w_k = 1 - k/h``, never negative)
is used instead and ``DMResult.kernel`` says ``"bartlett"``. The statistic is ``dbar / sqrt(V)`` times the HLN
factor ``sqrt((n + 1 - 2h + h(h-1)/n) / n)``, referred to Student's t with ``n - 1`` degrees of freedom. For
``h = 1`` that is exactly the one-sample t statistic of ``d`` (the HLN factor ``sqrt((n-1)/n)`` undoes DM's
``1/n`` variance). Degenerate cases: ``d`` all 0 gives statistic 0 and p-value 1.0 (no evidence either way);
``d`` constant and non-zero gives statistic +-inf and p-value 0 or 1. "0" and "constant" are up to rounding:
``ROUNDING`` (1e-12) times the largest absolute loss, so two code paths computing the same losses never produce a
spurious infinitely significant difference.

:func:`dm_on_windows` applies it to rolling-origin predictions: errors are correlated within a window (across
series and steps) and between overlapping windows, so the test runs on the per-cutoff mean loss -- one value per
forecast origin, in time order -- with ``h' = max(1, ceil(h / step))``: windows ``j`` origins apart overlap iff
``j * step < h``, i.e. up to lag ``h' - 1``, exactly the lags ``dm_test(h=h')`` uses (``step >= h``: no
overlap, lag 0 only).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from models.losses import FRAME_LOSSES, ArrayLike, point_losses

ALTERNATIVES = ("less", "greater", "two-sided")
ROUNDING = 1e-12  # differentials within this share of the loss scale are rounding (see dm_test)
WINDOW_KEY = ("unique_id", "cutoff", "step")


class WindowMismatch(ValueError):
    """The two prediction frames were not scored on the same ``(unique_id, cutoff, step)`` windows."""


@dataclasses.dataclass(frozen=True)
class DMResult:
    """One Diebold-Mariano test. ``alternative='less'``: H1 is that ``a`` (the challenger) has lower expected loss;
    ``mean_diff`` is the mean of ``loss_a - loss_b`` (negative when ``a`` did better)."""

    statistic: float
    p_value: float
    n: int
    mean_diff: float
    h: int
    alternative: str
    kernel: str  # "rectangular" (DM) or "bartlett" (fallback when the rectangular variance was <= 0)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class WindowDMResult(DMResult):
    """:func:`dm_on_windows`: the test on the per-cutoff mean losses (``n`` = ``n_windows`` there, ``h`` = the
    overlap lags ``max(1, ceil(horizon / step))``), plus what it was computed from."""

    n_windows: int
    n_points: int
    metric: str
    horizon: int
    step: int


def _autocov(d: np.ndarray, k: int) -> float:
    c = d - d.mean()
    return float(np.dot(c[k:], c[: len(c) - k]) / len(c))


def hln_factor(n: int, h: int) -> float:
    """The Harvey-Leybourne-Newbold small-sample factor ``sqrt((n + 1 - 2h + h(h-1)/n) / n)``."""
    return math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)


def _p_value(statistic: float, df: int, alternative: str) -> float:
    if alternative == "less":
        return float(stats.t.cdf(statistic, df))
    if alternative == "greater":
        return float(stats.t.sf(statistic, df))
    return float(min(1.0, 2.0 * stats.t.sf(abs(statistic), df)))


def dm_test(loss_a: ArrayLike, loss_b: ArrayLike, h: int, *, alternative: str = "less") -> DMResult:
    """Diebold-Mariano test with the HLN correction on aligned per-point (or per-origin) losses.

    ``h`` is the forecast horizon of the series: autocovariances up to lag ``h - 1`` enter (see the module
    docstring). The series must be in time order. Raises ValueError if fewer than 2 finite pairs remain, if the
    shapes differ, or if ``h`` is not in ``1 .. n - 1``.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES} (got {alternative!r})")
    a, b = np.asarray(loss_a, float).ravel(), np.asarray(loss_b, float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"loss_a and loss_b shapes differ: {a.shape} vs {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    n = int(d.size)
    if n < 2:
        raise ValueError(f"the DM test needs at least 2 finite loss pairs (got {n} of {a.size})")
    if not (isinstance(h, int | np.integer) and 1 <= h < n):
        raise ValueError(f"h must be an integer in 1 .. n-1 = {n - 1} (got {h!r})")
    h = int(h)
    dbar = float(d.mean())
    result = dict(n=n, mean_diff=dbar, h=h, alternative=alternative)
    tol = ROUNDING * max(float(np.abs(a[ok]).max()), float(np.abs(b[ok]).max()), np.finfo(float).tiny)
    if float(np.ptp(d)) <= tol:  # constant d, up to rounding
        if abs(dbar) <= tol:
            return DMResult(statistic=0.0, p_value=1.0, kernel="rectangular", **result)
        stat = math.copysign(math.inf, dbar)
        return DMResult(statistic=stat, p_value=_p_value(stat, n - 1, alternative), kernel="rectangular", **result)
    gammas = np.array([_autocov(d, k) for k in range(h)])
    kernel, var = "rectangular", (gammas[0] + 2.0 * gammas[1:].sum()) / n
    if var <= 0:
        weights = 1.0 - np.arange(1, h) / h
        kernel, var = "bartlett", (gammas[0] + 2.0 * (weights * gammas[1:]).sum()) / n
    if var <= 0:  # cannot happen for a non-constant d with the Bartlett kernel; kept as a guard
        stat = 0.0 if dbar == 0.0 else math.copysign(math.inf, dbar)
    else:
        stat = dbar / math.sqrt(var) * hln_factor(n, h)
    return DMResult(statistic=float(stat), p_value=_p_value(stat, n - 1, alternative), kernel=kernel, **result)


def overlap_lags(horizon: int, step: int) -> int:
    """``max(1, ceil(horizon / step))``: the ``h`` of :func:`dm_test` for per-origin losses of overlapping windows."""
    if horizon < 1 or step < 1:
        raise ValueError(f"horizon and step must be >= 1 (got horizon={horizon}, step={step})")
    return max(1, math.ceil(horizon / step))


def check_same_windows(frame_a: pd.DataFrame, frame_b: pd.DataFrame, key: Sequence[str] = WINDOW_KEY) -> pd.DataFrame:
    """``frame_a`` and ``frame_b`` joined on ``key`` (columns ``y_a, yhat_a, ..., y_b, ...``); raises
    WindowMismatch if a key is duplicated, the key sets differ (how many, and an example) or the actuals differ."""
    key = list(key)
    for name, frame in (("a", frame_a), ("b", frame_b)):
        missing = [c for c in [*key, "y"] if c not in frame.columns]
        if missing:
            raise WindowMismatch(f"frame {name} lacks columns {missing}")
        dup = frame.duplicated(key)
        if dup.any():
            example = tuple(frame.loc[dup, key].iloc[0])
            raise WindowMismatch(f"frame {name} repeats {int(dup.sum())} window keys {key}, e.g. {example}")
    joined = frame_a.merge(frame_b, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    only_a, only_b = joined["_merge"] == "left_only", joined["_merge"] == "right_only"
    if only_a.any() or only_b.any():
        example = tuple(joined.loc[only_a | only_b, key].iloc[0])
        raise WindowMismatch(
            f"the two frames differ in {int(only_a.sum() + only_b.sum())} window keys {key}: {int(only_a.sum())} "
            f"only in a, {int(only_b.sum())} only in b; e.g. {example} (of {len(frame_a)} and {len(frame_b)} rows)")
    ya, yb = joined["y_a"].to_numpy(float), joined["y_b"].to_numpy(float)
    differ = ~((ya == yb) | (np.isnan(ya) & np.isnan(yb)))
    if differ.any():
        example = tuple(joined.loc[differ, key].iloc[0])
        raise WindowMismatch(f"the actuals y differ on {int(differ.sum())} of {len(joined)} windows, e.g. {example}")
    return joined.drop(columns="_merge")


def _side(joined: pd.DataFrame, suffix: str) -> pd.DataFrame:
    cols = {c: c[: -len(suffix)] for c in joined.columns if c.endswith(suffix)}
    return joined.rename(columns=cols).assign(y=joined["y_a"])


def dm_on_windows(frame_a: pd.DataFrame, frame_b: pd.DataFrame, *, metric: str, h: int, step: int,
                  key: Sequence[str] = WINDOW_KEY, time: str = "cutoff",
                  scale: pd.Series | ArrayLike | None = None, alternative: str = "less") -> WindowDMResult:
    """DM test of challenger ``frame_a`` against champion ``frame_b`` on the same rolling-origin windows.

    Both are long predictions frames (``unique_id, cutoff, step, y, yhat``; ``lo, hi`` for ``crps``) with
    IDENTICAL ``key`` sets and actuals (else :class:`WindowMismatch`). Per-point losses
    (:func:`models.losses.point_losses`, ``scale`` for mase) are kept where both are finite, averaged per ``time``
    (the forecast origin, one of ``key``) in time order, and tested with ``dm_test(h=overlap_lags(h, step))`` (see
    the module docstring). ``n`` and ``n_windows`` count the origins, ``n_points`` the paired points.
    """
    if metric not in FRAME_LOSSES:
        raise ValueError(f"metric must be one of {sorted(FRAME_LOSSES)} (got {metric!r})")
    key = list(key)
    if time not in key:
        raise ValueError(f"time column {time!r} must be one of the key columns {key}")
    joined = check_same_windows(frame_a, frame_b, key)
    loss_a = point_losses(_side(joined, "_a"), metric, scale)
    loss_b = point_losses(_side(joined, "_b"), metric, scale)
    ok = np.isfinite(loss_a) & np.isfinite(loss_b)
    per_origin = (pd.DataFrame({"t": joined[time].to_numpy(), "a": loss_a, "b": loss_b})[ok]
                  .groupby("t", sort=True)[["a", "b"]].mean())
    lags = overlap_lags(h, step)
    if len(per_origin) <= lags:
        raise ValueError(f"{len(per_origin)} windows with finite losses: too few for a DM test with h={lags} "
                         f"(need more than {lags})")
    res = dm_test(per_origin["a"].to_numpy(), per_origin["b"].to_numpy(), lags, alternative=alternative)
    return WindowDMResult(**res.as_dict(), n_windows=len(per_origin), n_points=int(ok.sum()), metric=metric,
                          horizon=h, step=step)
