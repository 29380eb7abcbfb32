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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from domain.vocabulary import BARS_PER_YEAR, DIRECTION, STRATEGIES, VOL_TARGET, VOL_TARGET_DIRECTIONAL, check_member
from serving.buffers import Bar, UnknownSymbol
from trading.signals import SignalParams, step_positions

MAX_POSITION = 100.0  # |position| in units of capital; no book holds 100x its capital in one symbol
VOLATILITY, CLOSE = "volatility", "close"  # the two services' targets (domain.vocabulary.TARGETS)


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
        for service in others:
            service.buffers.check(bar)
        first.ingest(bar)
        for service in others:
            service.ingest(bar)

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
    def _forecasts(self, symbols: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Per target, the step-1 forecasts of the symbols ready in that service (one model call per arm); and why
        each symbol that lacks one is not ready."""
        out: dict[str, dict[str, Any]] = {}
        why: dict[str, str] = {}
        for target, service in self.services.items():
            ready = []
            for s in symbols:
                buf = service.buffers.buffers.get(s)
                if buf is not None and buf.ready:
                    ready.append(s)
                elif target in self.needs and s not in why:
                    why[s] = (f"{s}: no bar seen by the {target} service" if buf is None else
                              f"{s}: {buf.count} of {service.input_size} bars needed for a {target} forecast")
            out[target] = dict(zip(ready, service.predictor.forecast_batch(ready), strict=True)) if ready else {}
        return out, why

    def decide(self, symbols: list[str]) -> list[Intent]:
        """The intents of ``symbols`` (in that order; duplicates answered once each): one forecast batch per service,
        one :func:`step_positions` over every ready symbol. Unknown symbols raise ``UnknownSymbol``."""
        unknown = [s for s in symbols if s not in self]
        if unknown:
            raise UnknownSymbol(unknown[0])
        symbols = list(dict.fromkeys(symbols))
        forecasts, why = self._forecasts(symbols)
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
        decided = {}
        for i, s in enumerate(ready):
            target = float(targets[i])
            used = {t: _model(self.services[t], f[s]) for t, f in forecasts.items() if s in f}
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


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
