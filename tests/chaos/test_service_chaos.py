"""Fault cases of the forecast service, on the real model the serving tests train once per session (NHITS
champion, baseline previous champion and challenger), over real HTTP to a real uvicorn on 127.0.0.1:

- a seeded fuzz of every endpoint: no 5xx, and nothing a refused request sent changed any state;
- sustained load while the champion's ONNX Runtime session fails for real and recovers: every request answered;
- ``kill -9`` of ``tradecast serve`` mid-request (and mid-download): it starts again, the warehouse opens, the
  ``live_metrics`` rows are whole, every serving_cache folder verifies."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest

from tests.chaos import http_fuzz
from tests.conftest import ROOT
from tests.serving import conftest as serving
from tests.serving.conftest import SYMBOLS, Server, real_bars, tiny_onnx
from tests.serving.test_breaker import _prom

# the serving tests' fixtures (one trained registry per session, services on it), seen by pytest here too
trained, served, make_service = serving.trained, serving.served, serving.make_service


def _forecasts(http, symbols) -> dict[str, dict]:
    out = {}
    for symbol in symbols:
        response = http.get(f"/forecast/{symbol}")
        assert response.status_code == 200, (symbol, response.text)
        out[symbol] = response.json()
        assert all(math.isfinite(v) for v in out[symbol]["yhat"]), out[symbol]
    return out


def _replay(reference, accepted: list[tuple[str, bytes, dict]]) -> None:
    """Apply to ``reference`` what the fuzzed service answered 200 to, in order, the way the app does."""
    from pydantic import TypeAdapter

    from serving.app import BarsBody, EventIn
    from serving.buffers import StaleBar
    from serving.exog import LateEvent

    bars = TypeAdapter(BarsBody)
    for path, body, answer in accepted:
        if path.startswith("/bars"):
            items = bars.validate_python(json.loads(body))
            taken = 0
            for item in items if isinstance(items, list) else [items]:
                try:
                    reference.ingest(item.to_bar())
                    taken += 1
                except (StaleBar, OverflowError, ValueError):
                    pass
            assert taken == answer["accepted"], (path, body[:300], answer)
        else:
            event = EventIn.model_validate(json.loads(body))
            try:
                ts = event.ts if event.ts.tzinfo else event.ts.replace(tzinfo=UTC)
                reference.post_event(ts.timestamp(), event.headline, event.symbol, event.sentiment)
            except LateEvent:
                raise AssertionError(f"the service took an event the replay refuses: {body[:300]!r}") from None


def _touched(service, accepted: list[tuple[str, bytes, dict]]) -> set[str]:
    """The symbols an accepted request may have changed: those of its bars; those of its events (every symbol
    for a market-wide one) when an arm reads event features."""
    events = any(getattr(g.primary, "needs_exog", False) for g in service.arms().values())
    out: set[str] = set()
    for path, body, _ in accepted:
        obj = json.loads(body)
        items = obj if isinstance(obj, list) else [obj]
        if path.startswith("/bars"):
            out |= {item["symbol"] for item in items}
        elif events:
            out |= {obj["symbol"]} if obj.get("symbol") else set(service.buffers.buffers)
    return out


def _state(service) -> dict:
    return {s: (b.count, b.last_ts, b.last_close, b.window().tobytes() if b.ready else None)
            for s, b in service.buffers.buffers.items()}


@pytest.mark.fault("HTTP fuzz of every endpoint: 2,000 seeded requests (malformed JSON, wrong types, missing/extra "
                   "fields, NaN/inf/1e400/huge ints, years 0-99999 and negative epochs, unicode/lone-surrogate/long "
                   "symbols, path traversal, > 4 MiB bodies also chunked, deep nesting, 10,001 bars, raw HTTP garbage)",
                   "zero 5xx; afterwards every buffer, and every symbol's forecast (finite), equals a replay of "
                   "only the requests answered 200; symbols no accepted bar reached forecast as before")
def test_http_fuzz_gets_no_5xx_and_changes_only_what_it_was_allowed_to(make_service, chaos_detail):
    import httpx

    from serving.app import create_app

    seed, n, budget_s = 14, 2000, 90.0
    service = make_service()
    warm = sorted(service.buffers.buffers)
    world = http_fuzz.World({s: (b.last_ts, float(b.last_close)) for s, b in service.buffers.buffers.items()},
                            service.input_size, service.buffers.window(warm[0]).tolist(), keep=frozenset(warm[:1]))
    offending, accepted, statuses = [], [], {}
    with Server(create_app(service, start_background=False)) as server:
        host, port = server.sock.getsockname()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            before = _forecasts(http, warm)
            started = time.monotonic()
            sent = 0
            for case in http_fuzz.cases(random.Random(seed), n, world):
                sent += 1
                try:
                    status, text = http_fuzz.send(http, host, port, case)
                except httpx.HTTPError as exc:
                    status, text = -1, repr(exc)
                statuses[status] = statuses.get(status, 0) + 1
                if status >= 500 or status < 0 or status == 0 and case.kind != "raw incomplete":
                    offending.append(f"{status} <- {case.describe()}: {text[:300]}")
                elif status == 200 and case.method == "POST" and case.path.startswith(("/bars", "/events")):
                    accepted.append((case.path, case.body, json.loads(text)))
                if time.monotonic() - started > budget_s:
                    break
            elapsed = time.monotonic() - started
            assert not offending, (f"{len(offending)} of {sent} requests got a 5xx or no answer:\n"
                                   + "\n".join(offending[:8]))
            after_warm = _forecasts(http, warm)
            health = http.get("/health").json()
            assert health["status"] == "ok", health  # no request a client sent counted as a model failure
            assert all(a["breaker"] == "closed" and a["failures"] == 0 for a in health["arms"].values()), health

        reference = make_service()
        _replay(reference, accepted)
        assert _state(service) == _state(reference), "the fuzzed buffers differ from a replay of the accepted bars"
        ready = sorted(s for s, b in reference.buffers.buffers.items() if b.ready)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            after = _forecasts(http, ready)
    expected = {s: json.loads(json.dumps(reference.predictor.forecast(s).to_dict(reference.freq))) for s in ready}
    assert after == expected
    untouched = [s for s in warm if s not in _touched(service, accepted)]
    assert untouched and all(after_warm[s] == before[s] for s in untouched), untouched
    assert sent >= 1000, f"only {sent} fuzz requests in {budget_s:.0f} s"
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
    chaos_detail(f"{sent} requests in {elapsed:.0f} s, 0 5xx ({codes}); {len(accepted)} accepted bar/event "
                 f"posts replayed: state equal; {len(untouched)} of {len(warm)} warm symbols untouched and unchanged")


def _bar_dicts(symbol: str, source: str, start: int, n: int) -> list[dict]:
    """``n`` real 1-minute bars of ``source`` from its ``start``-th bar, as JSON bars of ``symbol``."""
    frame = real_bars(n, source, start)
    frame = frame[(frame.high >= frame[["open", "close"]].max(axis=1))
                  & (frame.low <= frame[["open", "close"]].min(axis=1))
                  & (frame.low > 0)]
    return [{"symbol": symbol, "ts": http_fuzz.iso(row.epoch), "open": row.open, "high": row.high, "low": row.low,
             "close": row.close, "volume": row.volume_base} for row in frame.itertuples()]


def _live_rows(home: Path) -> int:
    from storage.duck import open_waiting

    con = open_waiting(home / "warehouse.duckdb", read_only=True)
    try:
        return con.execute("SELECT count(*) FROM live_metrics").fetchall()[0][0]
    finally:
        con.close()


@pytest.mark.parametrize("duration_s", [pytest.param(12.0, id="12s"),
                                        pytest.param(120.0, id="2min", marks=pytest.mark.slow_chaos)])
@pytest.mark.fault("sustained closed-loop load (8 clients: GET /forecast, POST /bars?forecast=true) while the "
                   "champion's ONNX Runtime session is swapped for one of another input size (every call raises) "
                   "and restored",
                   "every request answered 200 (fallback answers count, labelled); breaker closed -> open -> closed in "
                   "/health and /metrics; no fallback once recovered; live_metrics rows written; p50/p99 reported")
def test_sustained_load_while_the_champion_fails_and_recovers(make_service, served, tmp_path, duration_s,
                                                              chaos_detail):
    import httpx

    from serving.app import create_app
    from serving.runtime import OnnxForecaster
    clients, reset_s = 8, 1.0
    cycles = 1 if duration_s < 60 else 3
    service = make_service(fail_max=5, reset_timeout_s=reset_s, poll_s=3600.0, flush_s=2.0)
    guarded = service.arms()["champion"]
    good = guarded.primary.session
    wrong = OnnxForecaster.from_path(tiny_onnx(tmp_path / "wrong.onnx", "naive", 12, 10)).session
    need = service.input_size + int(duration_s * 40)  # more bars than a client can post in the time
    feeds = [_bar_dicts(f"LOAD{i}", SYMBOLS[i % 3], (i // 3) * (need + 10), need) for i in range(clients)]
    rows_before = _live_rows(served.home)
    results: list[tuple[float, str, int, float, bool | None]] = []  # (sent at, route, status, seconds, fallback)
    health: list[tuple[float, str, float]] = []  # (t, breaker in /health, tradecast_breaker_state in /metrics)
    faults: list[tuple[float, float]] = []  # (failing from, restored at)
    stop = threading.Event()

    def client(i: int) -> None:
        rng = random.Random(i)
        feed = iter(feeds[i][service.input_size:])
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                post = rng.random() < 0.5 and (bar := next(feed, None)) is not None
                route = "/bars" if post else "/forecast"
                at, begun = time.monotonic(), time.perf_counter()
                try:
                    if post:
                        response = http.post("/bars", params={"forecast": True}, json=bar)
                    else:
                        response = http.get(f"/forecast/{rng.choice([*SYMBOLS, f'LOAD{i}'])}")
                    status = response.status_code
                    body = response.json() if status == 200 else {}
                    forecasts = body.get("forecasts", []) if post else [body]
                    fallback = any(f["fallback"] for f in forecasts) if forecasts else None
                except httpx.HTTPError as exc:  # a dropped connection is an error too
                    status, fallback = -1, repr(exc)
                results.append((at, route, status, time.perf_counter() - begun, fallback))

    def monitor() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                state = http.get("/health").json()["arms"]["champion"]["breaker"]
                gauge = _prom(http.get("/metrics").text, "tradecast_breaker_state", "champion")
                health.append((time.monotonic(), state, gauge))
                time.sleep(0.1)

    with Server(create_app(service, start_background=True)) as server:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for feed in feeds:  # each client's own symbol, warm before the clock starts
                assert http.post("/bars", json=feed[:service.input_size]).json()["rejected"] == []
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        threads.append(threading.Thread(target=monitor))
        started = time.monotonic()
        for thread in threads:
            thread.start()
        try:
            span = duration_s / (2 * cycles + 1)
            for k in range(cycles):
                time.sleep(max(started + span * (2 * k + 1) - time.monotonic(), 0))
                guarded.primary.session = wrong  # fault: onnxruntime raises INVALID_ARGUMENT on every call
                failing = time.monotonic()
                time.sleep(max(started + span * (2 * k + 2) - time.monotonic(), 0))
                guarded.primary.session = good  # repaired: the half-open probe after reset_timeout closes it
                faults.append((failing, time.monotonic()))
            time.sleep(max(started + duration_s - time.monotonic(), 0))
        finally:
            guarded.primary.session = good
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        elapsed = time.monotonic() - started
        final = httpx.get(f"{server.url}/health").json()
        final_gauge = _prom(httpx.get(f"{server.url}/metrics").text, "tradecast_breaker_state", "champion")
    written = service.live.written  # the app's shutdown flushed the rest
    rows_after = _live_rows(served.home)

    errors = [r for r in results if r[2] != 200]
    assert results and not errors, f"{len(errors)} of {len(results)} requests not answered: {errors[:5]}"
    assert not any(t.is_alive() for t in threads), "a client did not stop"
    for k, (failing, restored) in enumerate(faults):
        healthy_until = faults[k + 1][0] - 1.0 if k + 1 < len(faults) else math.inf  # (sent before the next fault)
        states = [s for t, s, _ in health if failing <= t <= restored]
        gauges = [g for t, _, g in health if failing <= t <= restored]
        assert "open" in states and 2.0 in gauges, (states, gauges)
        assert any(fb for t, route, _, _, fb in results if failing <= t <= restored and route == "/bars"), \
            "no fallback answer while the champion failed"
        recovered = [(t - restored, fb) for t, route, _, _, fb in results
                     if restored + reset_s + 0.5 <= t < healthy_until and route == "/bars"]
        late = [(round(t, 2), [(round(h - restored, 2), s) for h, s, _ in health if abs(h - restored - t) < 1])
                for t, fb in recovered if fb]
        assert recovered and not late, f"fallback answers {late[:5]} s after the recovery, cycle {k}"
    assert final["status"] == "ok" and final["arms"]["champion"]["breaker"] == "closed" and final_gauge == 0.0
    assert guarded.transitions >= 3 * cycles  # closed -> open -> half-open -> closed, per cycle
    assert written > 0 and rows_after - rows_before == written, (written, rows_before, rows_after)

    seconds = np.array([r[3] for r in results]) * 1000
    answered = [r for r in results if r[4] is not None]
    share = sum(1 for r in answered if r[4]) / max(len(answered), 1)
    p50, p99 = np.percentile(seconds, [50, 99])
    chaos_detail(f"{len(results):,} requests ({len(results) / elapsed:.0f}/s, {clients} clients, {elapsed:.0f} s), "
                 f"0 errors; {cycles} fail/recover cycle(s): breaker closed->open->closed, {share:.0%} fallback "
                 f"answers; p50 {p50:.1f} ms, p99 {p99:.1f} ms; {written} live_metrics rows written")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Serve:
    """``tradecast serve`` as a subprocess on ``home`` (``kill -9`` with :meth:`kill`, always killed at exit)."""

    def __init__(self, home: Path, port: int, log: Path) -> None:
        self.home, self.port, self.log, self.proc = home, port, log, None
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> Serve:
        env = {**os.environ, "TRADECAST_HOME": str(self.home), "DAGSTER_HOME": str(self.home / "dagster_home")}
        env.pop("TRADECAST_CATALOG", None)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipelines.cli", "serve", "--asset-class", "crypto", "--target", "close",
                 "--variant", "fp32", "--port", str(self.port), "--poll", "1"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> float:
        import httpx

        begun = time.monotonic()
        while time.monotonic() - begun < timeout_s:
            assert self.proc.poll() is None, f"tradecast serve exited {self.proc.returncode}: {self.tail()}"
            try:
                health = httpx.get(f"{self.url}/health", timeout=5).json()
                assert health["status"] == "ok", health
                return time.monotonic() - begun
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"tradecast serve not up in {timeout_s:.0f} s: {self.tail()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]


def _burst(url: str, symbol: str, feed: list[dict], stop: threading.Event, answers: dict) -> list[threading.Thread]:
    """One client posting ``feed`` bar by bar (forecast=true, answers kept by origin), three reading forecasts."""
    import httpx

    def poster() -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            for bar in feed:
                if stop.is_set():
                    return
                try:
                    body = http.post("/bars", params={"forecast": True}, json=bar).json()
                except httpx.HTTPError:
                    return  # killed under us
                answers[(symbol, bar["ts"])] = bar["close"], [f["yhat"] for f in body["forecasts"]]

    def reader() -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            while not stop.is_set():
                try:
                    http.get(f"/forecast/{random.choice(SYMBOLS)}")
                except httpx.HTTPError:
                    return

    threads = [threading.Thread(target=poster), *(threading.Thread(target=reader) for _ in range(3))]
    for thread in threads:
        thread.start()
    return threads


@pytest.mark.slow_chaos
@pytest.mark.fault("kill -9 of `tradecast serve`: once while it downloads the ONNX export into serving_cache, "
                   "twice mid-request under a burst of POST /bars?forecast=true and GET /forecast",
                   "it starts again (health ok) and answers; the warehouse opens for writing; every live_metrics row "
                   "is whole (its y is the posted close, its yhat the forecast answered, no duplicate); every "
                   "serving_cache folder passes verify_export")
def test_kill_9_of_the_service_mid_request(served, tmp_path, chaos_detail):
    import httpx

    from serving.source import verify_export
    from storage.duck import open_waiting

    home = tmp_path / "home"
    shutil.copytree(served.home, home, ignore=shutil.ignore_patterns("serving_cache"))  # the session's home stays
    cache = home / "serving_cache"
    serve = Serve(home, _free_port(), tmp_path / "serve.log")
    answers: dict[tuple[str, str], tuple[float, list]] = {}  # (symbol, ts) -> (close, forecasts answered)
    closes: dict[tuple[str, str], float] = {}  # every bar posted
    starts, downloads_hit = [], 0
    input_size = 288
    try:
        serve.start()  # 1: killed while it fills serving_cache (as soon as a staging folder shows), else once up
        deadline = time.monotonic() + 120
        while not list(cache.glob("*/*/.download-*")) and time.monotonic() < deadline and serve.proc.poll() is None:
            try:
                httpx.get(f"{serve.url}/health", timeout=1)
                break  # up already: the download was faster than we look
            except httpx.HTTPError:
                time.sleep(0.005)
        downloads_hit += bool(list(cache.glob("*/*/.download-*")))
        serve.kill()
        for round_ in (1, 2):  # 2, 3: killed mid-burst, after at least one live_metrics flush (every 5 s)
            starts.append(serve.start().wait_ready())
            feed = _bar_dicts(f"KILL{round_}", SYMBOLS[round_], 0, input_size + 2000)
            closes.update({(bar["symbol"], bar["ts"]): bar["close"] for bar in feed})
            warm = httpx.post(f"{serve.url}/bars", json=feed[:input_size], timeout=60).json()
            assert warm["accepted"] == input_size, warm
            stop = threading.Event()
            threads = _burst(serve.url, f"KILL{round_}", feed[input_size:], stop, answers)
            time.sleep(random.Random(round_).uniform(7.0, 10.0))
            serve.kill()  # kill -9 with requests in flight
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        starts.append(serve.start().wait_ready())  # 4: it comes up after the last kill and answers
        forecast = httpx.get(f"{serve.url}/forecast/BTCUSDT", timeout=30)
        assert forecast.status_code == 200 and all(math.isfinite(v) for v in forecast.json()["yhat"])
        serve.proc.send_signal(signal.SIGTERM)
        serve.proc.wait(timeout=60)
    finally:
        serve.kill()

    con = open_waiting(home / "warehouse.duckdb")  # read-write: the schema and WAL replay after the kills
    try:
        rows = con.execute("SELECT * FROM live_metrics WHERE symbol LIKE 'KILL%' ORDER BY symbol, origin_ts, step").df()
        con.execute("CHECKPOINT")
    finally:
        con.close()
    assert len(rows) > 0, "no live_metrics row was written before the kills (a flush runs every 5 s)"
    assert not rows.isna().any().any(), rows[rows.isna().any(axis=1)].head()
    assert not rows.duplicated(["symbol", "model_version", "origin_ts", "step"]).any()
    checked = 0
    for row in rows.itertuples():
        close = closes[(row.symbol, http_fuzz.iso(row.ts.timestamp()))]  # (its answer may have been cut by the kill)
        assert row.y == pytest.approx(close, rel=1e-6) and row.abs_error == pytest.approx(abs(row.yhat - row.y))
        origin = answers.get((row.symbol, http_fuzz.iso(row.origin_ts.timestamp())))
        if origin is not None and origin[1]:  # the forecast this origin's POST answered
            assert row.yhat == pytest.approx(origin[1][0][row.step - 1], rel=1e-6), row
            checked += 1
    folders = sorted(p for p in cache.glob("*/*") if p.is_dir())
    assert folders, "no serving_cache folder"
    leftovers = []
    for folder in folders:
        verify_export(folder / "onnx")
        leftovers += [p.name for p in folder.iterdir() if p.name != "onnx"]
        assert all(name.startswith(".download-") for name in leftovers), leftovers
    chaos_detail(f"3 kills ({downloads_hit} during the ONNX download); restarts up in "
                 f"{', '.join(f'{s:.1f}' for s in starts)} s; {len(rows)} live_metrics rows whole ({checked} checked "
                 f"against the forecast answered); {len(folders)} cache folders verified, {len(leftovers)} staging "
                 "leftovers")
