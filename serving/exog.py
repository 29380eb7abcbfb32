"""Event features for the service: per-symbol rows of the event features at each bar in the buffer, fed by
:class:`models.event_online.OnlineEventFeatures` (the same definitions as the ``event_features`` asset).

* A new bar appends the features at that bar (events strictly before its close, the training rule).
* ``POST /events`` adds the headline and recomputes each affected symbol's *last* row as of the event time:
  the forecast is then re-issued from origin "now" with every event up to now and none after, so the
  updated forecast uses the news without look-ahead.
* A model reads its own columns: ``hist_exog`` (B, input_size, n) from the rows, ``futr_exog``
  (B, input_size + h, n) from the rows plus the scheduled-meeting flag of the h future bars.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.event_spec import FEATURE_COLUMNS


class ExogBuffers:
    def __init__(self, input_size: int, freq: str, bar_seconds: float, macro: Any = None,
                 news: Any = None) -> None:
        import pandas as pd

        from models.event_online import OnlineEventFeatures

        self.input_size, self.bar_seconds = input_size, bar_seconds
        self.news = news if news is not None else pd.DataFrame({"ts": [], "symbol": [], "sentiment": []})
        self.online = OnlineEventFeatures.from_events(freq, self.news, macro)  # one pass, not one add per row
        self.freq, self.macro = freq, macro
        self.rows: dict[str, np.ndarray] = {}  # (2 * input_size, n_features): each row stored twice, like y
        self.pos: dict[str, int] = {}
        self.index = {c: i for i, c in enumerate(FEATURE_COLUMNS)}

    @staticmethod
    def _ts(seconds: float) -> Any:
        import pandas as pd

        return pd.Timestamp(seconds, unit="s")

    def _put(self, symbol: str, row: list[float], append: bool) -> None:
        buf = self.rows.get(symbol)
        if buf is None:
            buf = self.rows[symbol] = np.zeros((2 * self.input_size, len(FEATURE_COLUMNS)), dtype=np.float32)
            self.pos[symbol] = 0
        pos = self.pos[symbol] if append else (self.pos[symbol] - 1) % self.input_size
        buf[pos] = buf[pos + self.input_size] = row
        if append:
            self.pos[symbol] = (pos + 1) % self.input_size

    def load(self, grid: Any) -> None:
        """Warm from history: ``grid`` (``unique_id, ds`` naive UTC bar stamps, oldest first per symbol) gets its
        features in one vectorized pass (:func:`models.events.event_features`, the asset's own code)."""
        from models.events import event_features

        feats = event_features(grid, self.news, self.macro, self.freq)
        for symbol, part in feats.groupby("unique_id", sort=False):
            for row in part[FEATURE_COLUMNS].to_numpy(dtype=np.float32)[-self.input_size:]:
                self._put(symbol, row, append=True)

    def on_bar(self, symbol: str, bar_ts: float) -> None:
        self._put(symbol, self.online.vector(symbol, self._ts(bar_ts)), append=True)

    def on_event(self, ts: Any, sentiment: float, symbol: str | None, symbols: list[str]) -> list[str]:
        """Add one headline; recompute the last row of every affected symbol as of ``ts``; returns them."""
        import pandas as pd

        self.online.add(ts, sentiment, symbol)
        affected = [s for s in symbols if s in self.rows] if symbol is None else [s for s in [symbol]
                                                                                   if s in self.rows]
        # a "bar" whose close (the forecast origin) is just after the headline: it counts, nothing later does
        as_of = pd.Timestamp(ts) - pd.Timedelta(seconds=self.bar_seconds) + pd.Timedelta(microseconds=1)
        if as_of.tzinfo is not None:
            as_of = as_of.tz_convert("UTC").tz_localize(None)
        for s in affected:
            self._put(s, self.online.vector(s, as_of), append=False)
        return affected

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
