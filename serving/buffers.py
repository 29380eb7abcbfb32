"""Per-symbol ring buffers of the last ``input_size`` target values (numpy, preallocated).

Each buffer stores every value twice (at ``i`` and ``i + size`` of a ``2 * size`` array), so the current
window is always one contiguous slice: an update is O(1) and reading a window copies nothing until the
caller stacks windows into a batch. A bar becomes the model's target value the way the training frame
made it (``models.frames``): ``close``, or per-bar Garman-Klass volatility with ``|log return|`` where
the bar has no range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from domain.vocabulary import TARGETS

_GK_K = 2.0 * math.log(2.0) - 1.0


class UnknownSymbol(KeyError):
    """No bar of this symbol has been seen."""


class NotReady(ValueError):
    """The symbol has fewer bars than the model's input window."""


class StaleBar(ValueError):
    """A bar not newer than the symbol's last one (streams are in time order; replays must be too)."""


@dataclass(frozen=True)
class Bar:
    symbol: str
    ts: float  # seconds since the epoch, UTC
    open: float
    high: float
    low: float
    close: float
    volume: float | None = None


def bar_value(target: str, bar: Bar, prev_close: float | None) -> float | None:
    """The bar's target value; ``None`` for a degenerate first volatility bar (no previous close)."""
    if target == "close":
        return bar.close
    if bar.high > bar.low:
        hl, co = math.log(bar.high / bar.low), math.log(bar.close / bar.open)
        return math.sqrt(max(0.5 * hl * hl - _GK_K * co * co, 0.0))
    return abs(math.log(bar.close / prev_close)) if prev_close else None


class RingBuffer:
    """The last ``size`` values of one symbol."""

    __slots__ = ("size", "data", "pos", "count", "last_ts", "last_close")

    def __init__(self, size: int) -> None:
        self.size = size
        self.data = np.zeros(2 * size, dtype=np.float32)
        self.pos = 0  # where the next value goes
        self.count = 0  # values ever appended
        self.last_ts: float | None = None
        self.last_close: float | None = None

    def append(self, value: float) -> None:
        self.data[self.pos] = self.data[self.pos + self.size] = value
        self.pos = (self.pos + 1) % self.size
        self.count += 1

    @property
    def ready(self) -> bool:
        return self.count >= self.size

    def window(self) -> np.ndarray:
        """The last ``size`` values, oldest first (a view: copy it before the next append)."""
        return self.data[self.pos:self.pos + self.size]


class SymbolBuffers:
    """One :class:`RingBuffer` per symbol, fed with bars, for one target."""

    def __init__(self, input_size: int, target: str, max_symbols: int = 10_000) -> None:
        if target not in TARGETS:
            raise ValueError(f"target must be one of {list(TARGETS)} (got {target!r})")
        self.input_size, self.target, self.max_symbols = input_size, target, max_symbols
        self.buffers: dict[str, RingBuffer] = {}

    def __contains__(self, symbol: str) -> bool:
        return symbol in self.buffers

    def __len__(self) -> int:
        return len(self.buffers)

    def get(self, symbol: str) -> RingBuffer:
        try:
            return self.buffers[symbol]
        except KeyError:
            raise UnknownSymbol(symbol) from None

    def check(self, bar: Bar, admitted: int = 0) -> float | None:
        """The value ``bar`` would append, or an error (:class:`StaleBar`, ``OverflowError``, ``ValueError`` for a
        value that is not finite); changes nothing, so a refused bar leaves every buffer as it was. ``admitted``: new
        symbols of the same batch accepted before this bar and not taken yet (they count towards ``max_symbols``)."""
        buf = self.buffers.get(bar.symbol)
        if buf is None and len(self.buffers) + admitted >= self.max_symbols:
            raise OverflowError(f"already {self.max_symbols} symbols; refusing new symbol {bar.symbol!r}")
        if buf is not None and buf.last_ts is not None and bar.ts <= buf.last_ts:
            raise StaleBar(f"{bar.symbol}: bar at {bar.ts} is not newer than the last one ({buf.last_ts})")
        value = bar_value(self.target, bar, buf.last_close if buf else None)
        if value is not None and not (math.isfinite(value) and abs(value) < 3e38):  # float32's range
            raise ValueError(f"{bar.symbol}: the bar's {self.target} value {value!r} is not a finite float32")
        return value

    def update(self, bar: Bar) -> float | None:
        """Append the bar's value (returns it; ``None`` when the bar gives none, see :func:`bar_value`)."""
        value = self.check(bar)
        self.take(bar, value)
        return value

    def take(self, bar: Bar, value: float | None) -> None:
        """Append ``value``, what :meth:`check` answered for ``bar`` (nothing changed since)."""
        buf = self.buffers.get(bar.symbol)
        if buf is None:
            buf = self.buffers[bar.symbol] = RingBuffer(self.input_size)
        buf.last_ts, buf.last_close = bar.ts, bar.close
        if value is not None:  # RingBuffer.append, inline: a tick runs this for every symbol
            data, pos = buf.data, buf.pos
            data[pos] = data[pos + buf.size] = value
            buf.pos = (pos + 1) % buf.size
            buf.count += 1

    def load(self, symbol: str, values: np.ndarray, last_ts: float, last_close: float | None = None) -> None:
        """Warm a symbol with history (oldest first), e.g. the end of the training frame."""
        buf = self.buffers[symbol] = RingBuffer(self.input_size)
        for value in np.asarray(values, dtype=np.float32)[-self.input_size:]:
            buf.append(float(value))
        buf.last_ts, buf.last_close = last_ts, last_close

    def window(self, symbol: str) -> np.ndarray:
        buf = self.get(symbol)
        if not buf.ready:
            raise NotReady(f"{symbol}: {buf.count} of {self.input_size} bars needed for a forecast")
        return buf.window()


def distinct_runs(bars: list[Bar]) -> list[list[int]]:
    """The indices of ``bars`` cut into consecutive runs in which no symbol comes twice: a batch takes a run at once
    (its bars touch different buffers, so the order within it does not matter) and the runs one after the other."""
    runs: list[list[int]] = [[]]
    seen: set[str] = set()
    for i, bar in enumerate(bars):
        if bar.symbol in seen:
            runs.append([])
            seen = set()
        seen.add(bar.symbol)
        runs[-1].append(i)
    return [run for run in runs if run]
