"""Event features for the service: per-symbol rows of the event features at each bar in the buffer, fed by
:class:`models.events.online.OnlineEventFeatures` (the same definitions as the ``event_features`` asset).

* Start-up (:meth:`ExogBuffers.from_warehouse`) reads the headlines from far enough back for the whole input
  window: the oldest bar of any symbol's last ``input_size`` training-frame bars, less the longest look-back of
  a feature (:func:`models.events.online.lookback`); :meth:`load` then gives those bars the asset's own rows.
* A new bar appends the features at that bar (events strictly before its close, the training rule); the row
  before it, if a headline had moved it to "now", gets its own bar's features back.
* ``POST /events`` adds the headline. One after the newest row's origin recomputes that row as of the event
  time: the forecast is then re-issued from origin "now" with every event up to now and none after. A late one
  (before the newest row's origin) is folded into every row whose window it falls in, each at its own origin, as
  the batch features would have it; a row never moves to an earlier origin. A headline that would change a row
  whose older events the state no longer holds is refused (:class:`LateEvent`) before anything changes.
* A model reads its own columns: ``hist_exog`` (B, input_size, n) from the rows, ``futr_exog``
  (B, input_size + h, n) from the rows plus the scheduled-meeting flag of the h future bars.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.events.spec import FEATURE_COLUMNS

NO_ROW = np.iinfo(np.int64).min


class LateEvent(ValueError):
    """A headline that would change feature rows this service cannot recompute exactly (nothing was changed)."""


class ExogBuffers:
    def __init__(self, input_size: int, freq: str, macro: Any = None, news: Any = None, since: Any = None) -> None:
        """``news``: the headlines to warm from, holding every one from ``since`` on (None: all there are)."""
        import pandas as pd

        from models.events.features import bar_ns
        from models.events.online import OnlineEventFeatures, warmup_span

        self.input_size = input_size
        self.news = news if news is not None else pd.DataFrame({"ts": [], "symbol": [], "sentiment": []})
        # keep every event a row of the window may need: all that was read, and the window's span behind the newest
        self.online = OnlineEventFeatures.from_events(freq, self.news, macro, since=since,
                                                      retention=warmup_span(freq, input_size))
        self.freq, self.macro, self._bar_ns = freq, macro, bar_ns(self.online.cal)
        self.rows: dict[str, np.ndarray] = {}  # (2 * input_size, n_features): each row stored twice, like y
        self.stamps: dict[str, np.ndarray] = {}  # (input_size,) ns: the bar stamp each row was computed at
        self.pos: dict[str, int] = {}
        self.last_bar: dict[str, int] = {}  # ns: each symbol's newest bar
        self.index = {c: i for i, c in enumerate(FEATURE_COLUMNS)}

    @classmethod
    def from_warehouse(cls, con: Any, asset_class: str, target: str, freq: str, input_size: int) -> ExogBuffers:
        """Event state from the warehouse (an open DuckDB connection): the FOMC calendar and surprises, and the
        headlines from the look-back of the oldest bar the service warms (each symbol's last ``input_size`` bars
        of the training frame); with no training frame, from :func:`warmup_span` before the newest bar."""
        import pandas as pd

        from models.events.online import lookback, warmup_span
        from models.events.spec import calendar_for

        oldest = con.execute(
            "SELECT min(ds) FROM (SELECT ds, row_number() OVER (PARTITION BY unique_id ORDER BY ds DESC) AS k "
            "FROM training_frames WHERE asset_class = ? AND target = ?) WHERE k <= ?",
            [asset_class, target, input_size]).fetchone()[0]
        if oldest is not None:
            since = pd.Timestamp(oldest, tz="UTC") - lookback(calendar_for(freq))
        else:
            newest = con.execute("SELECT max(ts) FROM bars WHERE asset_class = ?", [asset_class]).fetchone()[0]
            since = None if newest is None else pd.Timestamp(newest).tz_convert("UTC") - warmup_span(freq, input_size)
        macro = con.execute("SELECT * FROM macro_events").df()
        news = con.execute("SELECT ts, symbol, sentiment FROM news_events WHERE ? IS NULL OR ts >= ? ORDER BY ts",
                           [since, since]).df()
        return cls(input_size, freq, macro, news, since=since)

    def _put(self, symbol: str, row: Any, stamp: int) -> None:
        """Append the row of the bar stamped ``stamp`` (ns)."""
        if symbol not in self.rows:
            self.rows[symbol] = np.zeros((2 * self.input_size, len(FEATURE_COLUMNS)), dtype=np.float32)
            self.stamps[symbol] = np.full(self.input_size, NO_ROW, dtype=np.int64)
            self.pos[symbol] = 0
        self._set(symbol, 0, row, stamp, slot=self.pos[symbol])
        self.pos[symbol] = (self.pos[symbol] + 1) % self.input_size
        self.last_bar[symbol] = stamp

    def _set(self, symbol: str, back: int, row: Any, stamp: int, slot: int | None = None) -> None:
        """Overwrite the row ``back`` rows behind the newest (0 = the newest) with ``row`` computed at ``stamp``."""
        slot = (self.pos[symbol] - 1 - back) % self.input_size if slot is None else slot
        buf = self.rows[symbol]
        buf[slot] = buf[slot + self.input_size] = row
        self.stamps[symbol][slot] = stamp

    def _stamp(self, symbol: str, back: int) -> int:
        return int(self.stamps[symbol][(self.pos[symbol] - 1 - back) % self.input_size])

    def load(self, grid: Any) -> None:
        """Warm from history: ``grid`` (``unique_id, ds`` naive UTC bar stamps, oldest first per symbol) gets its
        features in one vectorized pass (:func:`models.events.features.event_features`, the asset's own code)."""
        from models.events.features import event_features

        feats = event_features(grid, self.news, self.macro, self.freq)
        for symbol, part in feats.groupby("unique_id", sort=False):
            part = part.iloc[-self.input_size:]
            for row, stamp in zip(part[FEATURE_COLUMNS].to_numpy(dtype=np.float32), part["ds"].to_numpy("int64"),
                                  strict=True):
                self._put(symbol, row, int(stamp))

    def on_bar(self, symbol: str, bar_ts: float) -> None:
        self.on_bars([symbol], [bar_ts])

    def on_bars(self, symbols: list[str], bar_ts: list[float]) -> None:
        """:meth:`on_bar` for a tick of bars of distinct symbols. A symbol without headlines of its own has the
        market-wide features only, the same for every such symbol at one stamp: computed once per stamp."""
        from models.events.online import to_ns

        stamps: dict[float, int] = {}
        shared: dict[int, np.ndarray] = {}
        own = self.online._t  # the symbols with headlines of their own (key None: the market-wide ones)
        size, rows, pos, last_bar = self.input_size, self.rows, self.pos, self.last_bar
        for symbol, ts in zip(symbols, bar_ts, strict=True):
            stamp = stamps.get(ts)
            if stamp is None:
                stamp = stamps[ts] = to_ns(self._ts(ts))
            last = last_bar.get(symbol)
            if last is not None and self.stamps[symbol][(pos[symbol] - 1) % size] != last:  # moved to "now" by a
                self._set(symbol, 0, self.online.vector(symbol, last), last)  # headline: back to its own bar
            if own.get(symbol):
                row = np.asarray(self.online.vector(symbol, stamp), dtype=np.float32)
            elif (row := shared.get(stamp)) is None:
                row = shared[stamp] = np.asarray(self.online.vector(None, stamp), dtype=np.float32)
            if last is None:
                self._put(symbol, row, stamp)
                continue
            slot = pos[symbol]  # _put, inline: a tick runs this for every symbol
            buf = rows[symbol]
            buf[slot] = buf[slot + size] = row
            self.stamps[symbol][slot] = stamp
            pos[symbol] = (slot + 1) % size
            last_bar[symbol] = stamp

    def on_event(self, ts: Any, sentiment: float, symbol: str | None, symbols: list[str]) -> list[str]:
        """Add one headline and recompute the rows it changes of every affected symbol; returns those symbols.
        Raises :class:`LateEvent` (and adds nothing) when a row it changes cannot be recomputed exactly."""
        from models.events.online import to_ns

        t = to_ns(ts)
        affected = [s for s in symbols if s in self.rows] if symbol is None else [s for s in [symbol]
                                                                                   if s in self.rows]
        plan = {s: self._changed_rows(s, t) for s in affected}
        for s, rows in plan.items():
            stale = [stamp for _, stamp in rows if not self.online.exact(stamp)]
            if stale:
                raise LateEvent(self._refusal(ts, s, stale[-1]))
        self.online.add(ts, sentiment, symbol)
        for s, rows in plan.items():
            for back, stamp in rows:
                self._set(s, back, self.online.vector(s, stamp), stamp)
        return affected

    def _changed_rows(self, symbol: str, t: int) -> list[tuple[int, int]]:
        """``(rows behind the newest, bar stamp to compute at)`` of the rows an event at ``t`` (ns) changes."""
        newest = self._stamp(symbol, 0)
        if t >= newest + self._bar_ns:  # after the newest row's origin: that row, as of the event (1 us after it)
            return [(0, t - self._bar_ns + 1000)]
        rows, back = [], 0  # late: every row whose origin is after it, each at its own stamp
        while back < self.input_size and (stamp := self._stamp(symbol, back)) != NO_ROW and stamp + self._bar_ns > t:
            rows.append((back, stamp))
            back += 1
        return rows

    def _refusal(self, ts: Any, symbol: str, stamp: int) -> str:
        import pandas as pd

        held = pd.Timestamp(self.online.held_since)
        return (f"headline at {pd.Timestamp(ts)} is older than {symbol}'s newest feature row (bar "
                f"{pd.Timestamp(self.last_bar[symbol])}, features as of "
                f"{pd.Timestamp(self._stamp(symbol, 0) + self._bar_ns)}) "
                f"and would change its row of {pd.Timestamp(stamp)}, whose window reaches before {held} (UTC), the "
                "oldest event this service still holds: not applied (it reaches the model with the next "
                "event_features materialization)")

    @staticmethod
    def _ts(seconds: float) -> Any:
        import pandas as pd

        return pd.Timestamp(seconds, unit="s")

    def arrays(self, symbols: list[str], future: list[list[float]], hist_cols: tuple[str, ...],
               futr_cols: tuple[str, ...]) -> dict[str, np.ndarray | None]:
        """``hist_exog`` / ``futr_exog`` for a model reading those columns; ``future`` holds each symbol's h future
        bar stamps (epoch seconds) for the scheduled-meeting flag."""
        out: dict[str, np.ndarray | None] = {"hist_exog": None, "futr_exog": None}
        windows = np.stack([self.rows[s][self.pos[s]:self.pos[s] + self.input_size] for s in symbols])
        if hist_cols:
            out["hist_exog"] = windows[:, :, [self.index[c] for c in hist_cols]]
        if futr_cols:
            ahead = np.stack([[[self.online.features(None, self._ts(t))[c] for c in futr_cols] for t in steps]
                              for steps in future]).astype(np.float32)
            out["futr_exog"] = np.concatenate([windows[:, :, [self.index[c] for c in futr_cols]], ahead], axis=1)
        return out
