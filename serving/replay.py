"""Stream bars into the service in time order and measure tick -> forecast latency.

Input is pluggable: a *source* is any iterable of ticks (lists of :class:`~serving.buffers.Bar` sharing a
timestamp). :func:`warehouse_ticks` replays the warehouse's bars at the model's frequency (crypto 1-minute
bars resampled to 5 minutes, as for training); :func:`csv_ticks` reads a canonical bar file. A message-bus
consumer (e.g. Kafka) is one more such iterable: decode each message to a ``Bar`` and yield ticks.
A *sink* takes one tick and returns the forecasts it produced: :class:`ServiceSink` calls the service in
process, :class:`HttpSink` posts to a running ``tradecast serve`` (``POST /bars?forecast=true``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC
from itertools import groupby
from typing import Any

import numpy as np

from serving.buffers import Bar

Tick = list[Bar]


def _ticks(frame: Any) -> Iterator[Tick]:
    rows = frame.sort_values(["ts", "symbol"], kind="stable").itertuples(index=False)
    bars = (Bar(r.symbol, float(r.ts), float(r.open), float(r.high), float(r.low), float(r.close),
                None if r.volume != r.volume else float(r.volume)) for r in rows)
    for _, tick in groupby(bars, key=lambda b: b.ts):
        yield list(tick)


def warehouse_bars(asset_class: str, *, home: str | None = None, last: int = 500) -> Any:
    """The last ``last`` bars per symbol at the class's model frequency (``ts`` as epoch seconds)."""
    from models.frames import select_bars
    from storage.duck import open_waiting
    from storage.home import warehouse_path

    con = open_waiting(warehouse_path(home), read_only=True)
    try:
        bars = con.execute("SELECT * FROM bars WHERE asset_class = ? ORDER BY symbol, freq, ts", [asset_class]).df()
    finally:
        con.close()
    selected, _ = select_bars(bars, asset_class)
    selected = selected.sort_values(["symbol", "ts"]).groupby("symbol", sort=True).tail(last)
    out = selected[["symbol", "ts", "open", "high", "low", "close", "volume"]].copy()
    out["ts"] = _epoch_seconds(out["ts"])
    return out.reset_index(drop=True)


def _epoch_seconds(ts: Any) -> Any:
    import pandas as pd

    return (pd.to_datetime(ts, utc=True) - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)


def warehouse_ticks(asset_class: str, **kwargs: Any) -> Iterator[Tick]:
    return _ticks(warehouse_bars(asset_class, **kwargs))


def csv_ticks(path: str) -> Iterator[Tick]:
    """Ticks from a canonical file ``ts,symbol,open,high,low,close[,volume]`` (ts parsed as UTC)."""
    import pandas as pd

    frame = pd.read_csv(path)
    missing = [c for c in ("ts", "symbol", "open", "high", "low", "close") if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: no column {missing}; the file has {list(frame.columns)}")
    frame["ts"] = _epoch_seconds(frame["ts"])
    return _ticks(frame.assign(volume=frame.get("volume", float("nan"))))


class ServiceSink:
    """In process: ``service.ingest`` each bar, then one batched forecast of the tick's ready symbols."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def send(self, tick: Tick, forecast: bool = True) -> int:
        for bar in tick:
            self.service.ingest(bar)
        if not forecast:
            return 0
        ready = [b.symbol for b in tick if self.service.buffers.get(b.symbol).ready]
        return len(self.service.predictor.forecast_batch(ready)) if ready else 0


class HttpSink:
    """Over HTTP to ``tradecast serve``: one ``POST /bars?forecast=true`` per tick."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        import httpx

        self.client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)

    def send(self, tick: Tick, forecast: bool = True) -> int:
        from datetime import datetime

        body = [{"symbol": b.symbol, "ts": datetime.fromtimestamp(b.ts, tz=UTC).isoformat(), "open": b.open,
                 "high": b.high, "low": b.low, "close": b.close, "volume": b.volume} for b in tick]
        response = self.client.post("/bars", params={"forecast": forecast}, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"POST /bars -> {response.status_code}: {response.text[:300]}")
        payload = response.json()
        if payload["rejected"]:
            raise RuntimeError(f"the service rejected bars: {payload['rejected'][:3]} (start it with --cold to "
                               "replay history, or replay in process)")
        return len(payload.get("forecasts", []))


@dataclass
class ReplayStats:
    ticks: int
    bars: int
    forecasts: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    speed: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def replay(sink: Any, ticks: Iterable[Tick], *, speed: float = 0.0, warmup_ticks: int = 0,
           max_ticks: int | None = None) -> ReplayStats:
    """Send ``ticks`` in order; the first ``warmup_ticks`` only fill the buffers. ``speed`` > 0 sleeps the
    (scaled) market time between ticks (``speed=100``: 100x real time); 0 sends as fast as possible."""
    latencies, n_bars, n_forecasts, n_ticks = [], 0, 0, 0
    started, prev_ts = time.perf_counter(), None
    for i, tick in enumerate(ticks):
        if i < warmup_ticks:
            sink.send(tick, forecast=False)
            continue
        if max_ticks is not None and n_ticks >= max_ticks:
            break
        if speed > 0 and prev_ts is not None:
            time.sleep(max(0.0, (tick[0].ts - prev_ts) / speed))
        prev_ts = tick[0].ts
        t0 = time.perf_counter()
        n_forecasts += sink.send(tick)
        latencies.append((time.perf_counter() - t0) * 1e3)
        n_bars += len(tick)
        n_ticks += 1
    arr = np.asarray(latencies) if latencies else np.asarray([float("nan")])
    return ReplayStats(n_ticks, n_bars, n_forecasts, time.perf_counter() - started, float(np.median(arr)),
                       float(np.percentile(arr, 99)), float(arr.max()), speed)
