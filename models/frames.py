"""Turn the ``bars`` table into neuralforecast's long frame ``unique_id, ds, y``.

Bar frequencies are data (``bars.freq``, canonically spelled by
``ingest.catalog.canonical_freq``). A model trains at one frequency F: by default
crypto 5-minute bars, equities and fx daily bars (see :func:`class_freq`); the
benchmark asks for fx ``1h``. Per symbol (:func:`select_bars`):

* native F bars are used as they are (they win over any other frequency);
* a symbol without F bars is resampled to F from its finest bars whose frequency
  divides F evenly (1min -> 5min, 15min or 30min -> 1h, 4h or 1h -> 1d): open
  first, high max, low min, close last, volume sum; bins closed/labelled on the
  left, so the 5-minute bar stamped 10:05 covers [10:05, 10:10) and a daily bar
  covers one UTC calendar day [00:00, 24:00) UTC (not an exchange session);
* coarser bars (crypto ``1h``/``1d`` at 5 minutes) and bars whose frequency
  does not divide F (e.g. 45min at 1h) are never used.

Targets:

* ``close``      -> the bar's close price.
* ``volatility`` -> per-bar Garman-Klass volatility
  ``sqrt(0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2)``. Where the bar is degenerate
  (``high == low``, e.g. close-only fx sources or an untraded crypto minute) GK
  carries no information (it is 0), so the absolute log return of the close,
  ``|ln(C_t / C_{t-1})|``, is used instead; a degenerate first bar of a series
  has no previous close and is dropped. Both are per-bar (not annualised)
  scales in log-return units, so they are comparable within one series.

Only pandas/numpy are imported here (cheap to import from a Dagster code location).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from domain.vocabulary import CLASS_BAR_FREQ, CLASS_FREQ, DAILY_BAR_FREQ, TARGETS, check_member
from ingest.catalog import canonical_freq, freq_step
from models.configs import spec_for

Target = Literal["close", "volatility"]
_NF_FREQ = {"1min": "min", "1h": "h"}  # neuralforecast's spelling where it differs from the bar frequency
_SEASON = {"min": 1440, "1min": 1440, "5min": 288, "h": 24, "1h": 24, "B": 5, "D": 5, "1d": 5}
_GK_K = 2.0 * np.log(2.0) - 1.0


def class_freq(asset_class: str) -> str:
    """neuralforecast frequency alias for an asset class.

    ``crypto`` trades 24/7, so its 5-minute grid is regular: ``'5min'``.
    ``equities`` and ``fx`` use ``'B'`` (business day), not ``'D'``: their daily
    bars exist Monday-Friday only. neuralforecast treats a series as a sequence
    of observations (windows are positional, it never fills gaps), and uses
    ``freq`` only to stamp the future ``ds`` after the last bar and for
    cross-validation dates; with ``'D'`` the h=30 forecast dates would include
    weekends, so "30 steps ahead" would silently mean ~21 trading days. ``'B'``
    still ignores exchange holidays (they are simply absent rows, i.e. one
    trading day = one step), which is the right semantics for a trading-day model.
    """
    return CLASS_FREQ[check_member("asset_class", asset_class, CLASS_FREQ)]


def season_length(freq: str) -> int:
    """Bars per seasonal period: 5min -> 288 (one day), 1h -> 24, daily ('B'/'D'/'1d') -> 5 (one week)."""
    if freq not in _SEASON:
        raise ValueError(f"no season length known for freq {freq!r}; known: {sorted(_SEASON)}")
    return _SEASON[freq]


def resample_ohlcv(bars: pd.DataFrame, rule: str | pd.Timedelta = "5min") -> pd.DataFrame:
    """Aggregate finer OHLCV bars per symbol into ``rule`` bars (left-closed, left-labelled).

    Bins start at midnight of the index's time zone (UTC for warehouse bars), so daily bins are calendar days.

    Empty bins (no source bar at all) are dropped, not filled. Volume is summed
    with ``min_count=1`` so an all-NaN volume stays NaN.
    """
    cols = ["symbol", "ts", "open", "high", "low", "close", "volume"]
    if bars.empty:
        return bars.reindex(columns=cols)
    resampler = bars.set_index("ts").sort_index().groupby("symbol", sort=True).resample(
        rule, label="left", closed="left"
    )
    agg = pd.DataFrame(
        {
            "open": resampler["open"].first(),
            "high": resampler["high"].max(),
            "low": resampler["low"].min(),
            "close": resampler["close"].last(),
            "volume": resampler["volume"].sum(min_count=1),
        }
    )
    agg = agg.dropna(subset=["open", "high", "low", "close"]).reset_index()
    return agg[cols]


def garman_klass(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Per-bar Garman-Klass volatility ``sqrt(0.5 ln(H/L)^2 - (2ln2-1) ln(C/O)^2)`` (clipped at 0)."""
    hl = np.log(np.asarray(high, float) / np.asarray(low, float))
    co = np.log(np.asarray(close, float) / np.asarray(open_, float))
    return np.sqrt(np.clip(0.5 * hl**2 - _GK_K * co**2, 0.0, None))


def bar_volatility(bars: pd.DataFrame) -> pd.Series:
    """GK volatility per bar, ``|log return|`` of close where ``high == low``.

    ``bars`` must hold one symbol sorted by time (or a ``symbol`` column, used
    to compute the previous close per symbol). NaN where neither is defined.
    """
    gk = garman_klass(bars["open"], bars["high"], bars["low"], bars["close"])
    close = bars["close"].astype(float)
    prev = close.groupby(bars["symbol"]).shift(1) if "symbol" in bars else close.shift(1)
    abs_ret = np.abs(np.log(close / prev))
    degenerate = (bars["high"] <= bars["low"]).to_numpy()
    return pd.Series(np.where(degenerate, abs_ret, gk), index=bars.index, name="volatility")


def select_bars(bars: pd.DataFrame, asset_class: str, freq: str | None = None) -> tuple[pd.DataFrame, str]:
    """Bars of one class at the model frequency, plus that frequency's neuralforecast alias.

    ``freq`` is any bar frequency ('5min', '1h', '1d'; 'B' or 'D' mean daily), by default the class's
    (crypto 5min, equities/fx 1d). Per symbol: its native bars at that frequency, else its finest bars
    whose frequency divides it evenly, resampled (see the module docstring); other bars are ignored.
    """
    class_freq(asset_class)  # an unknown class fails here, naming the known ones
    target = DAILY_BAR_FREQ if freq in ("B", "D") else canonical_freq(freq or CLASS_BAR_FREQ[asset_class])
    step = freq_step(target)
    part = bars[bars["asset_class"] == asset_class]
    rank = _usable(part["freq"].unique(), target)
    part = part[part["freq"].isin(list(rank))]
    keys = part["freq"].map(rank)
    chosen = part[keys == keys.groupby(part["symbol"]).transform("min")]
    native, finer = chosen[chosen["freq"] == target], chosen[chosen["freq"] != target]
    if not finer.empty:
        resampled = resample_ohlcv(finer.assign(ts=pd.to_datetime(finer["ts"], utc=True)), step)
        if target == DAILY_BAR_FREQ and class_freq(asset_class) == "B":  # a business-day model has no weekend
            resampled = resampled[resampled["ts"].dt.dayofweek < 5]  # bins (after-hours / Sunday-open minutes)
        native = pd.concat([native, resampled.assign(asset_class=asset_class, freq=target)], ignore_index=True)
    if target == DAILY_BAR_FREQ:
        return native, class_freq(asset_class) if asset_class != "crypto" else "D"
    return native, _NF_FREQ.get(target, target)


def _usable(freqs, target: str) -> dict[str, pd.Timedelta]:
    """The bar frequencies usable at model frequency ``target``, ranked: native first (0), then the finer
    ones that divide it evenly, finest first. Coarser, non-dividing and unknown frequencies are left out."""
    step = freq_step(target)
    rank = {}
    for freq in freqs:
        try:
            bar = freq_step(freq)
        except ValueError:  # not a bar frequency (CatalogError is a ValueError)
            continue
        if freq == target:
            rank[freq] = pd.Timedelta(0)
        elif bar < step and step % bar == pd.Timedelta(0):
            rank[freq] = bar
    return rank


def to_training_frame(
    bars: pd.DataFrame,
    asset_class: str,
    target: Target,
    *,
    freq: str | None = None,
    max_series: int | None = None,
    min_length: int | None = None,
) -> pd.DataFrame:
    """Long frame ``unique_id, ds, y`` for one asset class and target.

    ``ds`` is tz-naive UTC, rows sorted by ``(unique_id, ds)``, duplicates
    (same symbol and timestamp, e.g. from two sources) keep the last row.
    ``freq`` overrides the class's model frequency (any bar frequency, e.g. '1min',
    '1h' or '1d'; see :func:`select_bars`). Series shorter than ``min_length`` (default: the class spec's
    ``min_length`` = input_size + val + test windows + h) are dropped; with
    ``max_series`` only the most recent, then longest, series are kept (ties by
    name). The neuralforecast frequency alias is stored in ``frame.attrs['freq']``.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {list(TARGETS)} (got {target!r})")
    if min_length is None:
        min_length = spec_for(asset_class, "quick").min_length
    selected, nf_freq = select_bars(bars, asset_class, freq)
    df = selected[["symbol", "ts", "open", "high", "low", "close"]].copy()
    ts = pd.to_datetime(df["ts"], utc=True)
    df["ts"] = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    df = df.drop_duplicates(["symbol", "ts"], keep="last").sort_values(["symbol", "ts"], kind="stable")
    if target == "close":
        df["y"] = df["close"].astype(float)
    else:
        df["y"] = bar_volatility(df.reset_index(drop=True)).to_numpy()
    out = df.rename(columns={"symbol": "unique_id", "ts": "ds"})[["unique_id", "ds", "y"]]
    out = out[np.isfinite(out["y"])].reset_index(drop=True)
    out = _keep_series(out, min_length, max_series)
    out.attrs["freq"] = nf_freq
    return out


def _keep_series(frame: pd.DataFrame, min_length: int, max_series: int | None) -> pd.DataFrame:
    stats = frame.groupby("unique_id", sort=True)["ds"].agg(["size", "max"])
    stats = stats[stats["size"] >= min_length]
    if max_series is not None:
        stats = stats.reset_index().sort_values(
            ["max", "size", "unique_id"], ascending=[False, False, True], kind="stable"
        ).head(max_series).set_index("unique_id")
    kept = frame[frame["unique_id"].isin(stats.index)]
    return kept.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
