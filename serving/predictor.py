"""The predictor: ring buffers in, forecasts out, through the A/B router and each arm's guarded model.

``update(bar)`` appends the bar's target value to its symbol's buffer, scores the symbol's pending live
forecasts against it and drops the symbol's cached forecasts. ``forecast(symbol)`` answers from a bounded
LRU cache when nothing changed since, else runs the arm's model on the window. ``forecast_batch(symbols)``
runs one model call per arm for all of them.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from serving.ab import ABRouter
from serving.buffers import Bar, SymbolBuffers, distinct_runs
from serving.live import LiveMetrics

FREQ_SECONDS = {"5min": 300, "min": 60, "1min": 60, "h": 3600, "1h": 3600, "D": 86400}


def future_seconds(origin: float, h: int, freq: str) -> list[float]:
    """Epoch seconds of the h bars after the bar stamped ``origin`` (business days skip weekends for 'B')."""
    if freq in FREQ_SECONDS:
        return [origin + FREQ_SECONDS[freq] * k for k in range(1, h + 1)]
    out, day = [], datetime.fromtimestamp(origin, tz=UTC)
    while len(out) < h:
        day += timedelta(days=1)
        if day.weekday() < 5:
            out.append(day.timestamp())
    return out


def future_ts(origin: float, h: int, freq: str) -> list[str]:
    """ISO timestamps of the h steps after ``origin``."""
    return [datetime.fromtimestamp(t, tz=UTC).isoformat() for t in future_seconds(origin, h, freq)]


class NoForecast(RuntimeError):
    """Neither the model nor its backup gave a finite forecast (the service answers 503, not a non-number)."""


@dataclass
class Forecast:
    symbol: str
    arm: str
    model: str
    model_version: str
    model_kind: str
    variant: str
    fallback: bool
    origin_ts: float
    values: np.ndarray  # (h, n_outputs)
    output_names: list[str]
    count: int  # the symbol's bar count at the origin (cache validity)

    def to_dict(self, freq: str) -> dict[str, Any]:
        cols = {name: self.values[:, i].astype(np.float64).round(8).tolist()
                for i, name in enumerate(self.output_names)}
        return {"symbol": self.symbol, "arm": self.arm, "model": self.model, "model_version": self.model_version,
                "model_kind": self.model_kind, "variant": self.variant, "fallback": self.fallback,
                "origin": datetime.fromtimestamp(self.origin_ts, tz=UTC).isoformat(),
                "ds": future_ts(self.origin_ts, len(self.values), freq), **cols}


class Predictor:
    """Buffers + cache + routing. ``arms()`` returns the current ``{arm: GuardedModel}`` (swapped atomically
    by the service); a missing challenger sends its share to the champion."""

    def __init__(self, buffers: SymbolBuffers, arms: Callable[[], dict[str, Any]], router: ABRouter,
                 live: LiveMetrics | None = None, cache_size: int = 10_000, exog: Any = None,
                 freq: str = "5min") -> None:
        self.buffers, self.arms, self.router, self.live = buffers, arms, router, live
        self.exog, self.freq = exog, freq  # exog: serving.exog.ExogBuffers, for models that read event features
        self.cache: OrderedDict[tuple[str, str], Forecast] = OrderedDict()
        self.cache_size = cache_size
        self.hits = self.misses = 0
        self.lock = threading.RLock()

    def update(self, bar: Bar) -> float | None:
        """Take one bar; a bar that is refused (stale, not finite, …) changes nothing."""
        with self.lock:
            value = self.buffers.check(bar)  # everything that can refuse the bar runs before anything changes
            self.take([bar], [value])
        return value

    def update_many(self, bars: list[Bar]) -> list[tuple[int, Exception]]:
        """Take a list of bars as :meth:`update` would one after the other; returns ``(index, error)`` of each bar
        refused (``StaleBar``, ``OverflowError``, ``ValueError``), which changed nothing."""
        rejected: list[tuple[int, Exception]] = []
        with self.lock:
            for run in distinct_runs(bars):
                taken, values, admitted = [], [], 0
                try:
                    for i in run:
                        try:
                            values.append(self.buffers.check(bars[i], admitted))
                        except (ValueError, OverflowError) as exc:  # StaleBar is a ValueError
                            rejected.append((i, exc))
                            continue
                        admitted += bars[i].symbol not in self.buffers
                        taken.append(bars[i])
                finally:  # an unexpected error still leaves the bars before it taken, as one by one would
                    self.take(taken, values)
        return rejected

    def take(self, bars: list[Bar], values: list[float | None]) -> None:
        """Bars of distinct symbols that :meth:`SymbolBuffers.check` accepted (``values``: what it answered) into the
        buffers, the event rows and the live scoring, each in one pass for all of them."""
        with self.lock:
            valued = [(bar, v) for bar, v in zip(bars, values, strict=True) if v is not None]
            if valued and self.exog is not None:
                self.exog.on_bars([bar.symbol for bar, _ in valued], [bar.ts for bar, _ in valued])
            take, pop = self.buffers.take, self.cache.pop
            for bar, value in zip(bars, values, strict=True):
                take(bar, value)
                pop((bar.symbol, "champion"), None)
                pop((bar.symbol, "challenger"), None)
            if valued and self.live is not None:
                symbols = [bar.symbol for bar, _ in valued]
                buffers = self.buffers.buffers
                self.live.actual_many(symbols, [buffers[s].count for s in symbols], [bar.ts for bar, _ in valued],
                                      [v for _, v in valued])

    def invalidate(self, symbol: str) -> None:
        with self.lock:
            self.cache.pop((symbol, "champion"), None)
            self.cache.pop((symbol, "challenger"), None)

    def _arm(self, symbol: str, arms: dict[str, Any]) -> str:
        arm = self.router.arm(symbol)
        return arm if arm in arms else "champion"

    def forecast(self, symbol: str) -> Forecast:
        return self.forecast_batch([symbol])[0]

    def forecast_batch(self, symbols: list[str], running: threading.Event | None = None) -> list[Forecast]:
        """``running``: set when the model call starts (or nothing is left to run): from then on this thread mostly
        waits on the model, which releases the GIL, so another thread may run Python meanwhile."""
        try:
            return self._forecast_batch(symbols, running)
        finally:
            if running is not None:
                running.set()

    def _forecast_batch(self, symbols: list[str], running: threading.Event | None) -> list[Forecast]:
        out: dict[int, Forecast] = {}
        todo: dict[str, list[int]] = {}
        with self.lock:
            arms = self.arms()  # under the lock: a swap clears the cache under it too, so no old forecast is kept
            for i, symbol in enumerate(symbols):
                arm = self._arm(symbol, arms)
                cached = self.cache.get((symbol, arm))
                if cached is not None and cached.count == self.buffers.get(symbol).count:
                    self.cache.move_to_end((symbol, arm))
                    self.hits += 1
                    out[i] = cached
                else:
                    todo.setdefault(arm, []).append(i)
            for arm, idx in todo.items():
                windows = np.stack([self.buffers.window(symbols[i]) for i in idx])
                exog = self._exog(arms[arm].primary, [symbols[i] for i in idx])
                if running is not None:
                    running.set()
                values, used = arms[arm].run(windows, **exog)
                if not np.isfinite(values).all():  # the backup too: never answer a number that is not one
                    bad = [symbols[i] for row, i in enumerate(idx) if not np.isfinite(values[row]).all()]
                    raise NoForecast(f"no finite forecast for {bad[:5]} ({used.label} answered inf/NaN)")
                self.misses += len(idx)
                made = self._remember([symbols[i] for i in idx], arm, used, arms[arm], values, windows)
                out.update(zip(idx, made, strict=True))
        return [out[i] for i in range(len(symbols))]

    def _exog(self, model: Any, symbols: list[str]) -> dict[str, Any]:
        """``hist_exog`` / ``futr_exog`` for a model that reads event features (none for the others)."""
        if not getattr(model, "needs_exog", False):
            return {}
        if self.exog is None:
            raise RuntimeError(f"{model.label} reads event features but the service has none")
        cols = model.info.extra
        future = [future_seconds(self.buffers.get(s).last_ts, model.h, self.freq) for s in symbols]
        return self.exog.arrays(symbols, future, tuple(cols.get("hist_exog", ())), tuple(cols.get("futr_exog", ())))

    def _remember(self, symbols: list[str], arm: str, used: Any, guarded: Any, values: np.ndarray,
                  windows: np.ndarray) -> list[Forecast]:
        """The forecasts of one model call (``values`` (B, h, n_outputs) on ``windows``): cached (not a backup's
        answer: the next request gives the primary its chance) and remembered for live scoring, all in one go."""
        info = used.info
        fallback = used is not guarded.primary
        names = list(used.output_names)
        buffers = self.buffers.buffers
        made = []
        for row, symbol in enumerate(symbols):
            buf = buffers[symbol]
            fc = Forecast(symbol, arm, used.label, info.version, info.kind, info.variant, fallback,
                          buf.last_ts or time.time(), values[row], names, buf.count)
            made.append(fc)
            if not fallback:
                self.cache[(symbol, arm)] = fc
                while len(self.cache) > self.cache_size:
                    self.cache.popitem(last=False)
        if self.live is not None:
            median = names.index("yhat") if "yhat" in names else 0
            self.live.record_many(symbols, [fc.count for fc in made], [fc.origin_ts for fc in made], arm,
                                  info.version or info.kind, info.kind, values[:, :, median], windows)
        return made
