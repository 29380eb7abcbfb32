"""Bar -> forecast -> order intent latency (:func:`decision_latency`), on the registered champions of one asset class.

The models are the ones ``tradecast serve --decide`` would serve: the champions of ``nhits-<class>-volatility`` and
``nhits-<class>-close`` with their ONNX exports, in ``$TRADECAST_HOME`` (``make run`` trains and exports both; the
service refuses to start without them and says so). The symbols are synthetic (a random walk with a range, 5-minute
bars), as many as asked, warmed with ``input_size`` bars each through the trader (the real ingest path), so any
number of symbols can be timed; their live error is not written to the warehouse (``live_metrics`` stays the real
symbols'). Measured, p50 / p99 in ms, each sample one new bar per symbol:

* in process: ``Trader.ingest_many`` of the bar(s) then ``Trader.decide`` for 1 symbol; for a whole tick
  ``Trader.tick`` (one call: the target), and beside it ``ingest_many`` then ``decide`` (``two_calls_*``, each's p50);
* over HTTP: ``POST /bars?decide=true`` to uvicorn on 127.0.0.1 (in a thread of this process, one keep-alive
  connection, the request body built before the clock starts), for 1 symbol and for a whole tick;
* a headline: ``POST /events`` -> the updated intents, of one symbol and market-wide (every symbol).

``python -m serving.trading_bench`` prints the result as JSON.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from serving.buffers import Bar
from serving.latency import latency_summary
from serving.local_server import ThreadedServer

DECISION_TARGETS = {"http_1_p99_ms": 10.0, "in_process_tick_p99_ms": 50.0}  # bar -> intent (issue), 2 cores
BAR_S = 300  # synthetic bars are 5-minute bars (crypto's grid)


def _measure(call: Callable[[], Any], repeats: int, warmup: int, after: Callable[[], None]) -> list[float]:
    """``repeats`` timings of ``call`` (ms) after ``warmup`` untimed ones; ``after`` runs off the clock after each."""
    samples = []
    for i in range(warmup + repeats):
        started = time.perf_counter()
        call()
        if i >= warmup:
            samples.append((time.perf_counter() - started) * 1e3)
        after()
    return samples


class _Market:
    """Synthetic symbols on one clock: ``tick(symbols)`` gives each the next bar (a random walk with a range)."""

    def __init__(self, n: int, start: float, seed: int = 0) -> None:
        self.symbols = [f"SYN{i:04d}" for i in range(n)]
        self.rng = np.random.default_rng(seed)
        self.level = dict(zip(self.symbols, 50 + 100 * self.rng.random(n), strict=True))
        self.clock = start - start % BAR_S

    def tick(self, symbols: list[str]) -> list[Bar]:
        self.clock += BAR_S
        opens = np.array([self.level[s] for s in symbols])
        closes = opens * np.exp(self.rng.normal(0, 0.002, len(symbols)))
        wick = 1 + np.abs(self.rng.normal(0, 0.001, (2, len(symbols))))
        highs, lows = np.maximum(opens, closes) * wick[0], np.minimum(opens, closes) / wick[1]
        self.level.update(zip(symbols, closes, strict=True))
        return [Bar(s, self.clock, float(o), float(h), float(lo), float(c))
                for s, o, h, lo, c in zip(symbols, opens, highs, lows, closes, strict=True)]


def _bar_json(bar: Bar) -> dict[str, Any]:
    return {"symbol": bar.symbol, "ts": datetime.fromtimestamp(bar.ts, tz=UTC).isoformat(), "open": bar.open,
            "high": bar.high, "low": bar.low, "close": bar.close}


class _Connection:
    """One keep-alive HTTP/1.1 connection, blocking (httpx costs ms of client CPU per request: it would time itself)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.sock.sendall(head + body)
        status = int(self.file.readline().split()[1])
        length = 0
        while (line := self.file.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, self.file.read(length)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _services(asset_class: str, home: str | None, threads: int, variant: str) -> dict[str, Any]:
    from domain.vocabulary import CLOSE, VOLATILITY
    from serving.service import ForecastService, ServiceConfig

    services = {}
    for target in (VOLATILITY, CLOSE):
        service = ForecastService(ServiceConfig(asset_class=asset_class, target=target, warm=False, home=home,
                                                threads=threads, variant=variant, poll_s=3600.0, flush_s=3600.0))
        service.live.warehouse_path = None  # synthetic symbols: their live error is scored, never written
        services[target] = service
    return services


def _drop_scored(services: dict[str, Any]) -> None:
    """What the service's flush does every ``flush_s`` (off the request path): hand the scored rows over; here they
    are dropped, so millions of them do not pile up in memory (and in the garbage collector's way)."""
    for service in services.values():
        service.live.flush()
        service.live.drop()


def decision_latency(repeats: int = 200, *, symbols: int = 500, asset_class: str = "crypto", home: str | None = None,
                     threads: int = 1, variant: str = "auto", strategy: str | None = None,
                     warmup: int = 10) -> dict[str, Any]:
    """p50 / p99 of bar -> forecast -> intent (see the module docstring): ``repeats`` samples per measurement (after
    ``warmup``) for 1 symbol and for a tick of ``symbols`` symbols, in process and over HTTP, and headline ->
    intents over HTTP; with the model calls per tick (one per arm per service) and the targets met or missed."""
    import onnxruntime

    from domain.vocabulary import CLOSE, VOLATILITY
    from serving.app import create_app
    from serving.decisions import Trader
    from serving.service import settle_heap

    services = _services(asset_class, home, threads, variant)
    trader = Trader(services[VOLATILITY], services[CLOSE], strategy=strategy)
    need = max(s.input_size for s in services.values())
    market = _Market(symbols, time.time() - 86_400 * 30 - BAR_S * (need + 8 * (repeats + warmup)))
    started = time.perf_counter()
    for _ in range(need):
        assert not trader.ingest_many(market.tick(market.symbols))
        _drop_scored(services)
    history_s = time.perf_counter() - started
    settle_heap()  # after a bulk history load, as the service does after warm()
    solo, everyone = market.symbols[:1], market.symbols
    latency: dict[str, Any] = {}

    def in_process(names: list[str]) -> Callable[[], Any]:
        def call() -> None:
            assert not trader.ingest_many(market.tick(names))
            intents = trader.decide(names)
            assert len(intents) == len(names) and all(i.ready for i in intents), intents[:3]
        return call

    drop = lambda: _drop_scored(services)  # noqa: E731
    latency["in_process_1"] = latency_summary(_measure(in_process(solo), repeats, warmup, drop))
    arms = {f"{t}:{a}": g.primary for t, s in services.items() for a, g in s.arms().items()}
    calls = {k: m.calls for k, m in arms.items()}
    ingest_ms, decide_ms = [], []

    def tick() -> None:  # the "one call": Trader.tick
        rejected, intents = trader.tick(market.tick(everyone))
        assert not rejected and len(intents) == len(everyone) and all(i.ready for i in intents)

    def two_calls() -> None:  # the same in two calls, to see where the time goes
        bars = market.tick(everyone)
        t0 = time.perf_counter()
        rejected = trader.ingest_many(bars)
        t1 = time.perf_counter()
        intents = trader.decide(everyone)
        ingest_ms.append((t1 - t0) * 1e3)
        decide_ms.append((time.perf_counter() - t1) * 1e3)
        assert not rejected and len(intents) == len(everyone) and all(i.ready for i in intents)

    tick_samples = _measure(tick, repeats, warmup, drop)
    per_tick = {k: (m.calls - calls[k]) / (repeats + warmup) for k, m in arms.items()}  # an arm without traffic: 0
    two = latency_summary(_measure(two_calls, repeats, warmup, drop))
    latency["in_process_tick"] = latency_summary(tick_samples, symbols=symbols, model_calls_per_tick_per_arm=per_tick,
                                        two_calls_p50_ms=two["p50_ms"], two_calls_p99_ms=two["p99_ms"],
                                        ingest_p50_ms=float(np.median(ingest_ms)),
                                        decide_p50_ms=float(np.median(decide_ms)))

    app = create_app(services[CLOSE], trader=trader, start_background=False)
    with ThreadedServer(app, lifespan="off") as server:
        connection = _Connection(server.port)
        try:
            def over_http(names: list[str]) -> tuple[Callable[[], None], Callable[[], None]]:
                pending: list[bytes] = []

                def call() -> None:
                    body = pending.pop()
                    status, answer = connection.request("POST", "/bars?decide=true", body)
                    assert status == 200, answer[:300]

                def prepare() -> None:  # the next request's body, built off the clock
                    pending.append(json.dumps([_bar_json(b) for b in market.tick(names)]).encode())

                return prepare, call

            for name, names in (("http_1", solo), ("http_tick", everyone)):
                prepare, call = over_http(names)
                samples = []
                for i in range(warmup + repeats):
                    prepare()
                    t0 = time.perf_counter()
                    call()
                    if i >= warmup:
                        samples.append((time.perf_counter() - t0) * 1e3)
                    drop()
                latency[name] = latency_summary(samples, symbols=len(names))
            status, answer = connection.request("POST", "/bars?decide=true", json.dumps(
                [_bar_json(b) for b in market.tick(everyone)]).encode())
            assert status == 200 and len(json.loads(answer)["intents"]) == symbols
            for name, symbol in (("http_event_symbol", solo[0]), ("http_event_market", None)):
                samples = []
                for i in range(warmup + repeats):
                    market.clock += BAR_S  # after every row's origin: the headline is news, not late
                    body = json.dumps({"ts": datetime.fromtimestamp(market.clock, tz=UTC).isoformat(),
                                       "headline": f"headline {i}", "sentiment": float(np.sin(i)),
                                       **({"symbol": symbol} if symbol else {})}).encode()
                    t0 = time.perf_counter()
                    status, answer = connection.request("POST", "/events", body)
                    if i >= warmup:
                        samples.append((time.perf_counter() - t0) * 1e3)
                    assert status == 200, answer[:300]
                    drop()
                got = len(json.loads(answer)["intents"])
                latency[name] = latency_summary(samples, intents=got)
        finally:
            connection.close()
    trader.stop()
    measured = {"http_1_p99_ms": latency["http_1"]["p99_ms"],
                "in_process_tick_p99_ms": latency["in_process_tick"]["p99_ms"]}
    return {
        "schema": "tradecast.decision-latency/1", "created_at": datetime.now(UTC).isoformat(),
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "onnxruntime": onnxruntime.__version__, "ort_threads": threads},
        "models": {t: {a: g.primary.label for a, g in s.arms().items()} for t, s in services.items()},
        "strategy": trader.strategy, "symbols": symbols, "repeats": repeats,
        "history": {"bars": need * symbols, "seconds": round(history_s, 2)},
        "latency": latency,
        "targets": [{"target": k, "limit_ms": v, "measured_ms": measured[k], "met": measured[k] <= v,
                     "missed_by_x": None if measured[k] <= v else measured[k] / v}
                    for k, v in DECISION_TARGETS.items()],
    }


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m serving.trading_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--asset-class", default="crypto")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--variant", default="auto", choices=["auto", "fp32", "int8"])
    args = parser.parse_args(argv)
    result = decision_latency(args.repeats, symbols=args.symbols, asset_class=args.asset_class,
                              threads=args.threads, variant=args.variant)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
