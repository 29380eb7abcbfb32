"""News and FOMC events as per-(symbol, bar) features on a training frame's bar grid.

Inputs are the warehouse tables: ``news_events`` (ts UTC, source, symbol or NULL = market-wide, headline,
sentiment in [-1, 1]) and ``macro_events`` (ts UTC, event_type, scheduled, policy_surprise or NULL). Naive
timestamps are read as UTC; tz-aware ones are converted to UTC.

**No look-ahead.** Bars are stamped at their *open*: a bar stamped ``t`` covers ``[t, t + bar)`` (a daily bar
of day D is stamped D 00:00 UTC and covers the UTC day D; a 5-minute bar stamped 10:05 covers [10:05, 10:10)).
Its value is known only when the bar ends, so a forecast whose last input is that bar is made at the
**forecast origin** ``o(t) = t + bar``. A historical feature at bar ``t`` uses only events stamped
**strictly before** ``o(t)``: an event at exactly ``o(t)`` belongs to the next bar. Day-stamped headlines
(23:59:59 UTC of day D) thus reach the daily bar of D, whose forecasts are made at D+1 00:00 UTC, never an
earlier bar; an FOMC statement at 14:15 New York reaches the bar of its day (it is out before the close).
The one future exogenous feature, ``fomc_day``, describes the bar's own day and uses only the meeting
*schedule*, which is published in advance; the policy surprise is historical like the news.

**Windows** count steps back on the model's calendar (:func:`models.events.spec.calendar_for`): the window of
``k`` steps at bar ``t`` is ``[o(t - k steps), o(t))``. Daily bars use business days, short = 1 (the bar's day,
plus the weekend before a Monday), long = 5 (a trading week); hourly 1 and 24; 5-minute 12 (an hour) and 288
(a day). Features (all finite, a symbol without any news gets the neutral values of ``NEUTRAL``):

* ``news_logn_{short,long}``: log1p(number of the symbol's own headlines/tweets in the window);
* ``news_sent_{mean,min,max}_{short,long}``: their VADER sentiment (0 without news);
* ``news_age``: time from the symbol's last headline to the origin, in bars, capped at ``age_cap`` and
  log-scaled to [0, 1]: log1p(min(age, cap)) / log1p(cap) (1 = no news for a long time, or never);
* ``mkt_logn_*``, ``mkt_sent_mean_*``: the same for market-wide headlines (symbol NULL), joined to every symbol;
* ``fomc_surprise``: sum of MP1 policy surprises announced in the short window (0 otherwise);
* ``fomc_day``: 1 on the UTC day of a *scheduled* FOMC meeting, else 0 (future exogenous). "Scheduled" is a
  ``macro_events`` row with ``scheduled`` true, which only the actions file (``fomc_actions``, its "Scheduled FOMC"
  flag, on statements and on the 1990-93 open-market operations / discount-rate releases that announced a scheduled
  meeting's decision) sets; the MP1 file's rows carry no schedule (``scheduled`` NULL, false when unscheduled):
  its meeting list includes open-market-operation days and an unscheduled meeting, which were not known in advance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.events.spec import FEATURE_COLUMNS, NEUTRAL, Calendar, calendar_for


def to_utc_naive(values, what: str) -> pd.DatetimeIndex:
    """Timestamps as naive UTC; tz-aware values are converted, naive ones are taken as UTC."""
    idx = pd.DatetimeIndex(pd.to_datetime(values))
    if idx.hasnans:
        raise ValueError(f"{what}: row {int(np.flatnonzero(idx.isna())[0])} has no timestamp")
    idx = idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None else idx
    return idx.as_unit("ns")  # pandas 3 parses to us or s: every int64 time here is ns


def clean_news(news: pd.DataFrame) -> pd.DataFrame:
    """``t`` (int64 ns UTC), ``symbol`` (None = market-wide), ``sentiment``, ``source``; sorted by time.
    Bad input raises a ValueError naming the row and field."""
    missing = {"ts", "sentiment"} - set(news.columns)
    if missing:
        raise ValueError(f"news_events: missing column(s) {sorted(missing)}; has {list(news.columns)}")
    sent = pd.to_numeric(news["sentiment"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(sent) | (np.abs(sent) > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"news_events row {i}: sentiment '{news['sentiment'].iloc[i]}' is not a number in [-1, 1]")
    symbol = news["symbol"] if "symbol" in news else pd.Series([None] * len(news), index=news.index)
    out = pd.DataFrame({"t": to_utc_naive(news["ts"], "news_events").asi8, "sentiment": sent,
                        "symbol": symbol.astype(object).where(symbol.notna(), None).to_numpy(),
                        "source": news["source"].to_numpy() if "source" in news else "events"})
    return out.sort_values("t", kind="stable", ignore_index=True)


def clean_macro(macro: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scheduled FOMC days as datetime64[D], surprise times ns, surprises)`` from ``macro_events``: a scheduled
    day is one with a row whose ``scheduled`` is true (NULL = unknown and false are not: not known in advance)."""
    if macro is None or macro.empty:
        return np.array([], "datetime64[D]"), np.array([], np.int64), np.array([], float)
    missing = {"ts", "event_type", "scheduled", "policy_surprise"} - set(macro.columns)
    if missing:
        raise ValueError(f"macro_events: missing column(s) {sorted(missing)}; has {list(macro.columns)}")
    ts = to_utc_naive(macro["ts"], "macro_events")
    sched = macro["scheduled"].astype("boolean").fillna(False).to_numpy(bool)
    days = np.unique(ts[sched].to_numpy().astype("datetime64[D]"))
    surprise = pd.to_numeric(macro["policy_surprise"], errors="coerce").to_numpy(float)
    if np.isinf(surprise).any():
        raise ValueError(f"macro_events row {int(np.flatnonzero(np.isinf(surprise))[0])}: policy_surprise is infinite")
    known = np.isfinite(surprise)
    order = np.argsort(ts.asi8[known], kind="stable")
    return days, ts.asi8[known][order], surprise[known][order]


def window_bounds(ds: pd.DatetimeIndex, cal: Calendar) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(origin, short window start, long window start)`` in ns for bars stamped ``ds`` (naive UTC)."""
    bar, ds = pd.Timedelta(cal.bar).as_unit("ns"), pd.DatetimeIndex(ds).as_unit("ns")

    def back(k: int) -> pd.DatetimeIndex:
        offset = pd.offsets.BDay(k) if cal.step == "B" else pd.Timedelta(cal.step) * k
        return (ds - offset + bar).as_unit("ns")

    return (ds + bar).asi8, back(cal.short).asi8, back(cal.long).asi8


def bar_ns(cal: Calendar) -> int:
    return int(pd.Timedelta(cal.bar).as_unit("ns").value)


def fomc_day(ds, fomc_days: np.ndarray) -> np.ndarray:
    """1.0 where the bar's UTC day is a scheduled FOMC day (known in advance), else 0.0."""
    days = pd.DatetimeIndex(ds).to_numpy().astype("datetime64[D]")
    return np.isin(days, fomc_days).astype(float)


def _range_reduce(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, ufunc) -> np.ndarray:
    """``ufunc.reduce(values[lo:hi])`` per query (a sparse table; 0 for an empty range)."""
    out = np.zeros(len(lo))
    ok = hi > lo
    if not ok.any():
        return out
    table = [values]
    while (1 << len(table)) <= len(values):
        prev, half = table[-1], 1 << (len(table) - 1)
        table.append(ufunc(prev[:-half], prev[half:]))
    lo_ok, hi_ok = lo[ok], hi[ok]
    level = np.floor(np.log2(hi_ok - lo_ok)).astype(int)
    res = np.empty(len(lo_ok))
    for j in np.unique(level):
        m = level == j
        res[m] = ufunc(table[j][lo_ok[m]], table[j][hi_ok[m] - (1 << j)])
    out[ok] = res
    return out


def window_stats(t: np.ndarray, s: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> dict[str, np.ndarray]:
    """Count, mean, min, max of sentiments ``s`` of events at sorted times ``t`` with ``lo <= t < hi``."""
    a, b = np.searchsorted(t, lo, "left"), np.searchsorted(t, hi, "left")
    n = b - a
    csum = np.concatenate([[0.0], np.cumsum(s)])
    mean = np.divide(csum[b] - csum[a], n, out=np.zeros(len(n)), where=n > 0)
    return {"n": n, "mean": mean, "min": _range_reduce(s, a, b, np.minimum),
            "max": _range_reduce(s, a, b, np.maximum)}


def news_age(t: np.ndarray, origin: np.ndarray, cal: Calendar) -> np.ndarray:
    """Scaled time since the last event strictly before each origin (1.0 when none)."""
    last = np.searchsorted(t, origin, "left") - 1
    age = np.full(len(origin), float(cal.age_cap))
    has = last >= 0
    age[has] = (origin[has] - t[last[has]]) / bar_ns(cal)
    return np.log1p(np.minimum(age, cal.age_cap)) / np.log1p(cal.age_cap)


def _fill(out: dict, rows, prefix: str, stats_s: dict, stats_l: dict, extremes: bool) -> None:
    for span, st in (("short", stats_s), ("long", stats_l)):
        out[f"{prefix}_logn_{span}"][rows] = np.log1p(st["n"])
        out[f"{prefix}_sent_mean_{span}"][rows] = st["mean"]
        if extremes:
            out[f"{prefix}_sent_min_{span}"][rows] = st["min"]
            out[f"{prefix}_sent_max_{span}"][rows] = st["max"]


def event_features(grid: pd.DataFrame, news: pd.DataFrame, macro: pd.DataFrame | None, freq: str, *,
                   short: int | None = None, long: int | None = None) -> pd.DataFrame:
    """``grid`` (``unique_id, ds`` naive UTC bar stamps) with one column per feature (``FEATURE_COLUMNS``);
    ``freq`` is the grid's neuralforecast frequency ('B', 'D', 'h', '5min', 'min'). Never NaN."""
    cal = calendar_for(freq, short, long)
    ev, (days, sur_t, sur_v) = clean_news(news), clean_macro(macro)
    out_frame = grid[["unique_id", "ds"]].copy()
    out_frame["ds"] = to_utc_naive(out_frame["ds"], "grid")
    out_frame = out_frame.sort_values(["unique_id", "ds"], kind="stable", ignore_index=True)
    ds = pd.DatetimeIndex(out_frame["ds"])
    origin, lo_s, lo_l = window_bounds(ds, cal)
    out = {c: np.full(len(out_frame), NEUTRAL[c]) for c in FEATURE_COLUMNS}
    ticker = ev[ev["symbol"].notna()]
    by_symbol = {k: v for k, v in ticker.groupby("symbol", sort=False)}
    for uid, rows in out_frame.groupby("unique_id", sort=False).indices.items():
        own = by_symbol.get(uid)
        if own is None:
            continue
        t, s = own["t"].to_numpy(), own["sentiment"].to_numpy()
        _fill(out, rows, "news", window_stats(t, s, lo_s[rows], origin[rows]),
              window_stats(t, s, lo_l[rows], origin[rows]), extremes=True)
        out["news_age"][rows] = news_age(t, origin[rows], cal)
    market = ev[ev["symbol"].isna()]
    if len(market):
        t, s = market["t"].to_numpy(), market["sentiment"].to_numpy()
        every = np.arange(len(out_frame))
        _fill(out, every, "mkt", window_stats(t, s, lo_s, origin), window_stats(t, s, lo_l, origin), extremes=False)
    if len(sur_t):
        a, b = np.searchsorted(sur_t, lo_s, "left"), np.searchsorted(sur_t, origin, "left")
        csum = np.concatenate([[0.0], np.cumsum(sur_v)])
        out["fomc_surprise"] = csum[b] - csum[a]
    out["fomc_day"] = fomc_day(ds, days)
    return pd.concat([out_frame, pd.DataFrame(out)], axis=1)


def attach(frame: pd.DataFrame, features: pd.DataFrame, columns) -> pd.DataFrame:
    """``frame`` (``unique_id, ds, y``) with the feature ``columns`` of the same (symbol, bar); every row must
    have its features (a clear error names the first one that does not)."""
    columns = list(columns)
    if not columns:
        return frame
    unknown = set(columns) - set(FEATURE_COLUMNS)
    if unknown:
        raise ValueError(f"unknown event feature(s) {sorted(unknown)}; known: {FEATURE_COLUMNS}")
    feats = features.rename(columns={"symbol": "unique_id"})[["unique_id", "ds", *columns]]
    out = frame.drop(columns=[c for c in columns if c in frame]).merge(feats, on=["unique_id", "ds"], how="left")
    lacking = out[columns].isna().any(axis=1)
    if lacking.any():
        row = out[lacking].iloc[0]
        raise ValueError(f"no event features for {int(lacking.sum())} row(s), e.g. {row.unique_id} at {row.ds}: "
                         "materialize event_features for this asset class after the bars")
    out.attrs = dict(frame.attrs)
    return out


def future_rows(frame: pd.DataFrame, h: int, freq: str, macro: pd.DataFrame | None, futr_columns) -> pd.DataFrame:
    """The ``h`` bars after each series' last ``ds`` on the ``freq`` calendar, ``y`` empty, with the future
    exogenous columns (only ``fomc_day``: the meeting schedule is known in advance)."""
    days = clean_macro(macro)[0]
    last = frame.groupby("unique_id")["ds"].max()
    parts = [pd.DataFrame({"unique_id": uid, "ds": pd.date_range(end, periods=h + 1, freq=freq)[1:]})
             for uid, end in last.items()]
    out = pd.concat(parts, ignore_index=True).assign(y=np.nan)
    for col in futr_columns:
        if col != "fomc_day":
            raise ValueError(f"{col!r} is not a future exogenous feature (only 'fomc_day' is known in advance)")
        out[col] = fomc_day(out["ds"], days)
    return out
