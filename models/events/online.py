"""The event features of one symbol and bar, updated one event at a time (for the serving process).

Same definitions as :func:`models.events.features.event_features` (a test holds them equal): per symbol (and for the
market-wide headlines, key ``None``) the updater keeps the event times and sentiments in time order, and
answers ``features(symbol, bar_ts)`` from the events strictly before that bar's forecast origin. Events may
arrive out of order. Memory stays bounded: events older than ``retention`` behind the newest one are dropped
(default: 7 days plus both windows and ``news_age``'s cap); ``held_since`` says from when on every event is still
held, and an answer is exact for a bar whose origin is at least :func:`lookback` after it (:meth:`exact`). A
server keeping a model's input window of rows sizes ``retention`` with :func:`warmup_span`.
Plain Python + pandas for the calendar; one update plus one query takes well under a millisecond.
"""

from __future__ import annotations

import bisect
import math

import pandas as pd

from models.events.features import bar_ns, clean_macro, fomc_day, window_bounds
from models.events.spec import FEATURE_COLUMNS, NEUTRAL, Calendar, calendar_for


def to_ns(ts) -> int:
    """A timestamp as int ns UTC (naive = UTC; an int is ns already)."""
    t = pd.Timestamp(ts)
    if t is pd.NaT:
        raise ValueError(f"not a timestamp: {ts!r}")
    if t.tz is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    return int(t.as_unit("ns").value)


def lookback(cal: Calendar) -> pd.Timedelta:
    """How long before a bar's forecast origin an event can still change the bar's features: the long window
    (business days: plus the weekends it spans) or ``news_age``'s cap, whichever is longer."""
    step = pd.Timedelta(days=1) if cal.step == "B" else pd.Timedelta(cal.step)
    weekends = pd.Timedelta(days=2 * (cal.long // 5 + 1)) if cal.step == "B" else pd.Timedelta(0)
    return max(step * cal.long + weekends, pd.Timedelta(cal.bar) * cal.age_cap)


def warmup_span(freq: str, input_size: int, *, short: int | None = None, long: int | None = None) -> pd.Timedelta:
    """How far before the newest bar a server needs the events to fill a window of ``input_size`` bars: the window
    (``input_size`` bars; business days counted at no more than 250 sessions a year, which covers weekends and
    market holidays, plus a week) and the :func:`lookback` of its oldest bar."""
    cal = calendar_for(freq, short, long)
    bar = pd.Timedelta(cal.bar)
    if cal.step == "B":
        window = pd.Timedelta(days=math.ceil(input_size * 365.25 / 250) + 7)
    else:
        window = pd.Timedelta(cal.step) * input_size
    return window + bar + lookback(cal)


class OnlineEventFeatures:
    """Trailing event state per symbol; ``update(...)`` adds one headline and returns the symbol's features."""

    def __init__(self, freq: str, macro: pd.DataFrame | None = None, *, short: int | None = None,
                 long: int | None = None, retention: pd.Timedelta | None = None) -> None:
        self.cal = calendar_for(freq, short, long)
        self._days, sur_t, sur_v = clean_macro(macro)
        self._sur_t, self._sur_v = sur_t.tolist(), sur_v.tolist()
        self._t: dict[str | None, list[int]] = {}
        self._s: dict[str | None, list[float]] = {}
        span = pd.Timedelta(days=7) + pd.Timedelta(self.cal.bar) * (self.cal.long * 2 + self.cal.age_cap)
        self.retention = int((retention or span).value)
        self._newest = None
        self.held_since: int | None = None  # every event at or after this time (ns) is held; None = all of them
        self._lookback = int(lookback(self.cal).value)
        self._cache: dict[int, tuple[int, int, int, float]] = {}
        self._bar_ns = bar_ns(self.cal)

    @classmethod
    def from_events(cls, freq: str, news: pd.DataFrame, macro: pd.DataFrame | None = None, *, since=None,
                    **kwargs):
        """An updater warmed with a ``news_events`` frame in one pass (e.g. the warehouse table at start-up);
        ``since``: the frame holds every event from then on (a query's lower bound) and keeps them all (the
        retention grows to reach back to it); without it, events beyond the retention are dropped."""
        from models.events.features import clean_news

        state = cls(freq, macro, **kwargs)
        state.held_since = None if since is None else to_ns(since)
        ev = clean_news(news)
        if ev.empty:
            return state
        state._newest = int(ev["t"].iloc[-1])
        if state.held_since is not None:
            state.retention = max(state.retention, state._newest - state.held_since)
        if int(ev["t"].iloc[0]) < state._newest - state.retention:
            state._held(state._newest - state.retention)
            ev = ev[ev["t"] >= state._newest - state.retention]
        for key, part in ev.groupby("symbol", dropna=False, sort=False):
            key = None if pd.isna(key) else str(key)  # NULL symbol = market-wide
            state._t[key], state._s[key] = part["t"].tolist(), part["sentiment"].tolist()
        return state

    def add(self, ts, sentiment: float, symbol: str | None = None) -> None:
        """One headline (``symbol`` None = market-wide). ``ts`` naive = UTC."""
        s = float(sentiment)
        if not (math.isfinite(s) and -1.0 <= s <= 1.0):
            raise ValueError(f"event sentiment {sentiment!r} is not a number in [-1, 1]")
        t = to_ns(ts)
        symbol = None if symbol is None or pd.isna(symbol) else str(symbol)  # NaN / NA from a frame = market-wide
        times, sents = self._t.setdefault(symbol, []), self._s.setdefault(symbol, [])
        i = bisect.bisect_right(times, t)
        times.insert(i, t)
        sents.insert(i, s)
        if self._newest is None or t > self._newest:
            self._newest = t
            self._prune(t - self.retention)

    def _prune(self, before: int) -> None:
        for key, times in self._t.items():
            cut = bisect.bisect_left(times, before)
            if cut > 1024:  # prune in chunks: keeps add() O(log n) amortized
                del times[:cut]
                del self._s[key][:cut]
                self._held(before)

    def _held(self, since: int) -> None:
        self.held_since = since if self.held_since is None else max(self.held_since, since)

    def exact(self, bar_ts) -> bool:
        """Whether ``features(..., bar_ts)`` sees every event it should (none has been dropped that it needs)."""
        return self.held_since is None or self._bounds(to_ns(bar_ts))[0] - self._lookback >= self.held_since

    def update(self, ts, sentiment: float, symbol: str | None = None, *, bar_ts, for_symbol: str | None = None):
        """``add`` one event, then the features of ``for_symbol`` (default: the event's symbol) at ``bar_ts``."""
        self.add(ts, sentiment, symbol)
        return self.features(for_symbol if for_symbol is not None else symbol, bar_ts)

    def features(self, symbol: str | None, bar_ts) -> dict[str, float]:
        """All ``FEATURE_COLUMNS`` for ``symbol`` at the bar stamped ``bar_ts`` (naive = UTC)."""
        origin, lo_s, lo_l, is_fomc = self._bounds(to_ns(bar_ts))
        out = dict(NEUTRAL)
        if symbol is not None and self._t.get(symbol):
            self._window(out, "news", symbol, (("short", lo_s), ("long", lo_l)), origin, extremes=True)
            times = self._t[symbol]
            i = bisect.bisect_left(times, origin)
            if i:
                age = min((origin - times[i - 1]) / self._bar_ns, self.cal.age_cap)
                out["news_age"] = math.log1p(age) / math.log1p(self.cal.age_cap)
        if self._t.get(None):
            self._window(out, "mkt", None, (("short", lo_s), ("long", lo_l)), origin, extremes=False)
        a, b = bisect.bisect_left(self._sur_t, lo_s), bisect.bisect_left(self._sur_t, origin)
        out["fomc_surprise"] = float(sum(self._sur_v[a:b])) if b > a else 0.0
        out["fomc_day"] = is_fomc
        return out

    def _bounds(self, bar: int) -> tuple[int, int, int, float]:
        """(origin, short start, long start, fomc_day) of a bar, cached: serving asks about the same bar often."""
        found = self._cache.get(bar)
        if found is None:
            ds = pd.DatetimeIndex([bar]).as_unit("ns")
            origin, lo_s, lo_l = (int(x[0]) for x in window_bounds(ds, self.cal))
            found = (origin, lo_s, lo_l, float(fomc_day(ds, self._days)[0]))
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[bar] = found
        return found

    def _window(self, out: dict, prefix: str, key, spans, origin: int, extremes: bool) -> None:
        times, sents = self._t[key], self._s[key]
        b = bisect.bisect_left(times, origin)
        for span, lo in spans:
            window = sents[bisect.bisect_left(times, lo):b]
            out[f"{prefix}_logn_{span}"] = math.log1p(len(window))
            out[f"{prefix}_sent_mean_{span}"] = sum(window) / len(window) if window else 0.0
            if extremes:
                out[f"{prefix}_sent_min_{span}"] = min(window) if window else 0.0
                out[f"{prefix}_sent_max_{span}"] = max(window) if window else 0.0

    def vector(self, symbol: str | None, bar_ts) -> list[float]:
        """``features`` in ``FEATURE_COLUMNS`` order."""
        feats = self.features(symbol, bar_ts)
        return [feats[c] for c in FEATURE_COLUMNS]
