"""Order intents: the forecast service's forecasts of one asset class turned into target positions, many symbols a tick.

A :class:`Trader` holds the volatility service and (optionally) the close service of one asset class, the current
position of every symbol and the strategy. :meth:`Trader.decide` forecasts the bar ahead of all the symbols asked
for with one model call per arm per service (``Predictor.forecast_batch``), then runs the decision rule once over
all of them: :func:`trading.signals.step_positions`, the rule the backtest walks, so what is traded live is what was
judged. Per symbol the inputs are ``vol_hat`` (the volatility model's step-1 forecast, per-bar Garman-Klass vol),
``mu`` (the close model's step-1 forecast / last close - 1) and the current position; the intent's ``change`` is the
order to send (target - current).

A bar goes to every service (each buffers its own target from the OHLC) or to none: all of them check it before
any of them takes it, so the two buffers never disagree on which bars they have seen.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from domain.vocabulary import (
    BARS_PER_YEAR,
    CLOSE,
    DIRECTION,
    STRATEGIES,
    VOL_TARGET,
    VOL_TARGET_DIRECTIONAL,
    VOLATILITY,
    check_member,
)
from serving.buffers import Bar, UnknownSymbol, distinct_runs
from trading.signals import SignalParams, step_positions

PARALLEL_FROM = 32  # symbols in a decision from which the services forecast in threads of their own (cost ~0.1 ms)
MAX_POSITION = 100.0  # |position| in units of capital; no book holds 100x its capital in one symbol


class NoPosition(ValueError):
    """A position that is not a finite number of magnitude <= the trader's ``max_position``."""


@dataclass
class Intent:
    """One symbol's order intent for the bar ahead (``ready`` False: too little history, with the reason)."""

    symbol: str
    ready: bool
    strategy: str
    current: float
    target: float | None = None
    change: float | None = None  # the order to send: target - current
    vol_hat: float | None = None
    mu: float | None = None
    origin_ts: float | None = None
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # per target: what produced the forecast
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {"symbol": self.symbol, "ready": self.ready, "strategy": self.strategy, "current": self.current}
        if not self.ready:
            return {**out, "reason": self.reason}
        origin = datetime.fromtimestamp(self.origin_ts, tz=UTC).isoformat() if self.origin_ts else None
        return {**out, "target": self.target, "change": self.change, "vol_hat": self.vol_hat, "mu": self.mu,
                "origin": origin, "models": self.models}


def _model(service: Any, fc: Any) -> dict[str, Any]:
    """Which model answered: the registered name, the version and kind of what ran, its arm, whether a backup did."""
    return {"name": service.name, "version": fc.model_version, "kind": fc.model_kind, "arm": fc.arm,
            "fallback": fc.fallback, "model": fc.model, "variant": fc.variant}


def _step_one(fc: Any) -> float:
    """The forecast of the bar ahead: the median column (``yhat``) where the model has quantiles."""
    column = fc.output_names.index("yhat") if "yhat" in fc.output_names else 0
    return float(fc.values[0, column])


class Trader:
    """Forecasts of one asset class in, order intents out (see the module docstring)."""

    def __init__(self, volatility: Any, close: Any = None, *, strategy: str | None = None,
                 params: SignalParams | None = None, max_position: float = MAX_POSITION) -> None:
        if volatility is None and close is None:
            raise ValueError("a trader needs a volatility service, a close service, or both")
        services = {t: s for t, s in ((VOLATILITY, volatility), (CLOSE, close)) if s is not None}
        for target, service in services.items():
            if service.config.target != target:
                raise ValueError(f"the {target} service serves {service.name} (target {service.config.target!r})")
        classes = {s.config.asset_class for s in services.values()}
        if len(classes) != 1:
            raise ValueError(f"the services serve different asset classes: {sorted(classes)}")
        self.asset_class = classes.pop()
        self.services = services
        self.strategy = check_member("strategy", strategy or (VOL_TARGET_DIRECTIONAL if close is not None
                                                             else VOL_TARGET), STRATEGIES)
        needed = {VOL_TARGET: (VOLATILITY,), VOL_TARGET_DIRECTIONAL: (VOLATILITY, CLOSE), DIRECTION: (CLOSE,)}
        self.needs = needed[self.strategy]
        missing = [t for t in self.needs if t not in services]
        if missing:
            raise ValueError(f"strategy {self.strategy!r} needs the {' and '.join(missing)} model's forecasts: "
                             f"start the {'/'.join(missing)} service too")
        self.params = params or SignalParams()
        self.bars_per_year = BARS_PER_YEAR[self.asset_class]
        self.max_position = float(max_position)
        self.positions: dict[str, float] = {}
        self.decisions = 0  # step_positions calls (one per tick, whatever the number of symbols)
        self._lock = threading.Lock()
        self._bars = threading.Lock()  # bars go in one call at a time: nothing lands between a check and its take
        self._pool: ThreadPoolExecutor | None = None
        self._seconds: dict[str, float] = {}  # per target: how long its last forecast batch took

    # ---- state --------------------------------------------------------------------------------------
    def __contains__(self, symbol: str) -> bool:
        return any(symbol in s.buffers for s in self.services.values())

    @property
    def symbols(self) -> list[str]:
        return sorted({s for service in self.services.values() for s in service.buffers.buffers})

    def set_positions(self, positions: dict[str, float]) -> dict[str, float]:
        """Set the current holdings of the symbols given (others keep theirs); all or nothing. Returns them all."""
        for symbol, value in positions.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or abs(value) > self.max_position:
                raise NoPosition(f"{symbol}: position {value!r} is not a finite number of magnitude <= "
                                 f"{self.max_position:g}")
        with self._lock:
            self.positions.update({s: float(v) for s, v in positions.items()})
            return dict(sorted(self.positions.items()))

    def position(self, symbol: str) -> float:
        return self.positions.get(symbol, 0.0)

    # ---- bars and headlines -------------------------------------------------------------------------
    def ingest(self, bar: Bar) -> None:
        """One bar into every service's buffer, or (StaleBar, OverflowError, ValueError) into none: the services after
        the first check it first; the first checks it itself before it changes anything."""
        first, *others = self.services.values()
        with self._bars:
            for service in others:
                service.buffers.check(bar)
            first.ingest(bar)
            for service in others:
                service.ingest(bar)

    def ingest_many(self, bars: list[Bar]) -> list[tuple[int, Exception]]:
        """Bars as :meth:`ingest` one after the other would take them (each into every service or none, refused with
        the error the first service to refuse it gives), a run of distinct symbols at once in each service; returns
        ``(index, error)`` of each refused bar (``StaleBar``, ``OverflowError``, ``ValueError``)."""
        rejected: list[tuple[int, Exception]] = []
        with self._bars:
            self._take_runs(bars, distinct_runs(bars), rejected)
        return rejected

    def tick(self, bars: list[Bar]) -> tuple[list[tuple[int, Exception]], list[Intent]]:
        """:meth:`ingest_many` then :meth:`decide` of the symbols of the bars taken (first seen first), in one call:
        ``(refused, intents)``. Each service takes its bars and forecasts them in a thread of its own, so one service's
        model call (which releases the GIL) runs while another's Python does; the results are those of the two calls.
        """
        rejected: list[tuple[int, Exception]] = []
        with self._bars:
            runs = distinct_runs(bars)
            self._take_runs(bars, runs[:-1], rejected)  # the last run is taken by each service's own thread
            taken, values = self._check_run(bars, runs[-1], rejected) if runs else ([], {})
            refused = {i for i, _ in rejected}
            symbols = list(dict.fromkeys(b.symbol for i, b in enumerate(bars) if i not in refused))
            take = lambda service: service.predictor.take(taken, values[service.config.target])  # noqa: E731
            return rejected, self.decide(symbols, before=take) if symbols else []

    def _take_runs(self, bars: list[Bar], runs: list[list[int]], rejected: list) -> None:
        """Each run of distinct symbols: checked by every service (:meth:`_check_run`), then taken by all of them."""
        for run in runs:
            taken, values = self._check_run(bars, run, rejected)
            for service in self.services.values():
                service.predictor.take(taken, values[service.config.target])

    def _check_run(self, bars: list[Bar], run: list[int], rejected: list) -> tuple[list[Bar], dict[str, list]]:
        """Every service checks each bar of a run of distinct symbols (the last service first, as :meth:`ingest`):
        the bars all accept, and per service (target) the values they give; the refused go to ``rejected``."""
        first, *others = self.services.values()
        order = [*others, first]
        taken: list[Bar] = []
        values: dict[str, list[float | None]] = {s.config.target: [] for s in order}
        admitted = dict.fromkeys(values, 0)  # new symbols accepted in this run, not taken yet (max_symbols)
        for i in run:
            bar, got = bars[i], []
            try:
                for service in order:
                    got.append(service.buffers.check(bar, admitted[service.config.target]))
            except (ValueError, OverflowError) as exc:  # StaleBar is a ValueError
                rejected.append((i, exc))
                continue
            except Exception:  # unexpected: the bars before it are taken, as one by one would
                for service in self.services.values():
                    service.predictor.take(taken, values[service.config.target])
                raise
            for service, value in zip(order, got, strict=True):
                admitted[service.config.target] += bar.symbol not in service.buffers
                values[service.config.target].append(value)
            taken.append(bar)
        return taken, values

    def post_event(self, ts: float, headline: str, symbol: str | None = None,
                   sentiment: float | None = None) -> tuple[float, dict[str, list], list[Intent]]:
        """A headline into every service's event state (scored once), then the intents of the affected symbols:
        ``(sentiment, {target: updated forecasts}, intents)``. A late headline (``LateEvent``) is refused by the
        first service before any other sees it; the others hold feature rows at the same bar stamps (the same bars
        reached them all), so they would refuse it alike."""
        import pandas as pd

        if sentiment is None:
            from ingest.sentiment import score

            sentiment = float(score(pd.Series([headline])).iloc[0])
        forecasts, affected = {}, {}
        for target, service in self.services.items():
            _, forecasts[target] = service.post_event(ts, headline, symbol, sentiment)
            affected.update(dict.fromkeys([symbol] if symbol is not None else service.buffers.buffers))
        return sentiment, forecasts, self.decide([s for s in affected if s in self])

    # ---- decisions ----------------------------------------------------------------------------------
    def _forecast(self, target: str, symbols: list[str], before: Callable | None,
                  running: threading.Event | None = None) -> tuple[dict, list]:
        """One service: ``before(service)`` (if given), then the step-1 forecasts of the symbols ready in it (one
        model call per arm) and ``(symbol, why)`` of each that is not; ``running`` is set once its model runs."""
        started = time.perf_counter()
        service = self.services[target]
        try:
            if before is not None:
                before(service)
            ready, why = [], []
            for s in symbols:
                buf = service.buffers.buffers.get(s)
                if buf is not None and buf.ready:
                    ready.append(s)
                elif target in self.needs:
                    why.append((s, f"{s}: no bar seen by the {target} service" if buf is None else
                                f"{s}: {buf.count} of {service.input_size} bars needed for a {target} forecast"))
            made = service.predictor.forecast_batch(ready, running) if ready else []
            return dict(zip(ready, made, strict=True)), why
        finally:
            if running is not None:
                running.set()
            self._seconds[target] = time.perf_counter() - started

    def _forecasts(self, symbols: list[str], before: Callable | None = None) -> tuple[dict[str, dict], dict[str, str]]:
        """Per target, :meth:`_forecast`; and why each symbol that lacks a needed forecast is not ready (the first
        service's reason first). For a batch the services run in threads, the slowest last time first: this thread
        goes on to the next only once that one's model runs (releasing the GIL), so the slow model starts first."""
        targets = sorted(self.services, key=lambda t: -self._seconds.get(t, 0.0))
        if len(targets) > 1 and len(symbols) >= PARALLEL_FROM:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(len(targets) - 1, thread_name_prefix="tradecast-trader")
            futures = []
            for t in targets[:-1]:
                running = threading.Event()
                futures.append(self._pool.submit(self._forecast, t, symbols, before, running))
                running.wait()
            try:
                last = self._forecast(targets[-1], symbols, before)
            finally:  # every service is done (has taken its bars) before any error is raised
                wait(futures)
            done = dict(zip(targets, [f.result() for f in futures] + [last], strict=True))
        else:
            done = {t: self._forecast(t, symbols, before) for t in targets}
        why: dict[str, str] = {}
        for t in self.services:
            for s, reason in done[t][1]:
                why.setdefault(s, reason)
        return {t: done[t][0] for t in self.services}, why

    def decide(self, symbols: list[str], before: Callable | None = None) -> list[Intent]:
        """The intents of ``symbols`` (in that order; duplicates answered once each): one forecast batch per service,
        one :func:`step_positions` over every ready symbol. Unknown symbols raise ``UnknownSymbol``. ``before``: run
        on each service first (:meth:`tick`: its bars)."""
        unknown = [s for s in symbols if s not in self] if before is None else []
        if unknown:
            raise UnknownSymbol(unknown[0])
        symbols = list(dict.fromkeys(symbols))
        forecasts, why = self._forecasts(symbols, before)
        with self._lock:
            current = {s: self.position(s) for s in symbols}
        ready = [s for s in symbols if s not in why]
        vol = forecasts.get(VOLATILITY, {})
        close = forecasts.get(CLOSE, {})
        vol_hat = np.array([_step_one(vol[s]) if s in vol else np.nan for s in ready])
        mu = np.array([self._expected_return(s, close[s]) if s in close else np.nan for s in ready])
        previous = np.array([current[s] for s in ready])
        targets = np.zeros(0)
        if ready:
            targets = step_positions(self.strategy, vol_hat, mu, previous, bars_per_year=self.bars_per_year,
                                     params=self.params)
            self.decisions += 1
        decided, models = {}, {}
        for i, s in enumerate(ready):
            target = float(targets[i])
            used = {}
            for t, f in forecasts.items():
                if s in f:  # what answered: the same for every symbol of a model call, built once per call
                    fc = f[s]
                    key = (t, fc.arm, fc.model, fc.model_version, fc.model_kind, fc.variant, fc.fallback)
                    if key not in models:
                        models[key] = _model(self.services[t], fc)
                    used[t] = dict(models[key])
            origin = (vol.get(s) or close.get(s)).origin_ts
            decided[s] = Intent(s, True, self.strategy, current[s], target, target - current[s],
                                _finite(vol_hat[i]), _finite(mu[i]), origin, used)
        return [decided.get(s) or Intent(s, False, self.strategy, current[s], reason=why[s]) for s in symbols]

    def _expected_return(self, symbol: str, fc: Any) -> float:
        """The close model's step-1 forecast / the last close - 1: the expected return of the bar ahead."""
        buffers = self.services[CLOSE].buffers
        last = buffers.get(symbol).last_close
        if not last:
            last = float(buffers.window(symbol)[-1])
        return _step_one(fc) / last - 1.0

    def status(self) -> dict[str, Any]:
        return {"asset_class": self.asset_class, "strategy": self.strategy, "params": dataclasses.asdict(self.params),
                "services": {t: s.name for t, s in self.services.items()}, "needs": list(self.needs),
                "positions": len(self.positions), "max_position": self.max_position, "decisions": self.decisions}

    def start(self) -> None:
        for service in self.services.values():
            service.start()

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
