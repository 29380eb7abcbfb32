"""A tick of bars taken at once (`Trader.ingest_many`, `Trader.tick`) gives exactly what the bars taken one by one give.

Three traders over real services (the session's trained close model, the registered EWMA volatility baseline, real
ONNX sessions, warm from the warehouse, event features on) get the same bars: bar by bar through `Trader.ingest` then
`decide` (what `POST /bars?decide=true` did), `ingest_many` then `decide`, and `tick` (one call, each service in a
thread of its own). Forecasts, intents, refused bars (index, error), buffers, event rows and the live-error rows must
be identical, not close. A second test holds the vectorised live scoring to the rule written out one forecast at a
time (the former implementation), with evictions, repeats and forecasts of different horizons."""

from __future__ import annotations

import numpy as np
import pytest

from tests.serving.test_decisions import make_trader, vol_model  # noqa: F401 - fixtures

SYNTHETIC = 40  # enough symbols for the threaded forecasts (serving.decisions.PARALLEL_FROM)


def _market(warm: dict[str, tuple[float, float]], start: float, ticks: int, seed: int = 0) -> list[list]:
    """``ticks`` ticks of 5-minute bars: the warm symbols (from their last close) and SYNTHETIC new ones."""
    from serving.buffers import Bar

    rng = np.random.default_rng(seed)
    level = {s: close for s, (_, close) in warm.items()} | {f"SYN{i:02d}": 50.0 + i for i in range(SYNTHETIC)}
    out = []
    for k in range(ticks):
        ts, bars = start + 300 * k, []
        for s in level:
            o = level[s]
            c = o * float(np.exp(rng.normal(0, 0.002)))
            bars.append(Bar(s, ts, o, max(o, c) * (1 + abs(rng.normal(0, 1e-3))),
                            min(o, c) / (1 + abs(rng.normal(0, 1e-3))), c))
            level[s] = c
        out.append(bars)
    return out


def _odd_tick(bars: list, warm: dict[str, tuple[float, float]]) -> list:
    """A tick with a stale bar, a symbol twice, a bar only one service refuses, a new symbol whose first bar gives no
    volatility, and a new symbol over max_symbols."""
    from dataclasses import replace

    from serving.buffers import Bar

    stale_symbol, (stale_ts, _) = next(iter(warm.items()))
    again = replace(bars[3], ts=bars[3].ts + 60, close=bars[3].close * 1.001)
    broken = replace(bars[-1], close=-1.0)  # volatility: log of a negative ratio (ValueError); close: a number
    flat = Bar("NEW0", bars[0].ts, 10.0, 10.0, 10.0, 10.0)
    return [replace(bars[0], symbol=stale_symbol, ts=stale_ts), *bars[1:-1], again, broken, flat,
            Bar("NEW1", bars[0].ts, 10.0, 10.5, 9.5, 10.2)]


def _state(trader) -> dict:
    """Everything a bar or a forecast changes, per service."""
    out = {"positions": dict(trader.positions), "decisions": trader.decisions}
    for target, service in trader.services.items():
        p, exog = service.predictor, service.exog
        out[target] = {
            "buffers": {s: (b.data.tobytes(), b.pos, b.count, b.last_ts, b.last_close)
                        for s, b in service.buffers.buffers.items()},
            "cache": {k: (fc.values.tobytes(), fc.origin_ts, fc.count, fc.model, fc.fallback)
                      for k, fc in p.cache.items()},
            "hits": (p.hits, p.misses),
            "live": [row[1:] for row in service.live.rows()],  # recorded_at is the wall clock
            "totals": dict(service.live.totals),
            "exog": {s: (exog.rows[s].tobytes(), exog.stamps[s].tobytes(), exog.pos[s], exog.last_bar[s])
                     for s in exog.rows},
        }
    return out


@pytest.mark.slow
def test_a_tick_at_once_gives_exactly_what_bar_by_bar_gives(make_trader):  # noqa: F811
    from serving.buffers import StaleBar

    traders = [make_trader() for _ in range(3)]
    first = traders[0]
    vol, close = first.services["volatility"], first.services["close"]
    warm = {s: (max(vol.buffers.get(s).last_ts, close.buffers.get(s).last_ts), close.buffers.get(s).last_close)
            for s in close.buffers.buffers if s in vol.buffers}
    assert warm and all(vol.exog is not None for vol in [t.services["volatility"] for t in traders])
    start = max(ts for ts, _ in warm.values()) + 300
    history = _market(warm, start, close.input_size + 6)
    for trader in traders:
        trader.set_positions({"SYN01": 0.5, next(iter(warm)): -0.25})
        for service in trader.services.values():  # NEW0 fits, NEW1 does not
            service.buffers.max_symbols = len(service.buffers) + SYNTHETIC + 1

    def one_by_one(trader, bars, decide=True):
        rejected, touched = [], {}
        for i, bar in enumerate(bars):
            try:
                trader.ingest(bar)
                touched[bar.symbol] = None
            except (StaleBar, OverflowError, ValueError) as exc:
                rejected.append((i, exc))
        return rejected, trader.decide(list(touched)) if decide and touched else []

    def many(trader, bars, decide=True):
        rejected = trader.ingest_many(bars)
        refused = {i for i, _ in rejected}
        touched = list(dict.fromkeys(b.symbol for i, b in enumerate(bars) if i not in refused))
        return rejected, trader.decide(touched) if decide and touched else []

    def at_once(trader, bars, decide=True):
        return trader.tick(bars) if decide else (trader.ingest_many(bars), [])

    paths = (one_by_one, many, at_once)
    warmup = len(history) - 5
    answers: list[list] = [[] for _ in paths]
    for k, bars in enumerate(history):
        decide = k >= warmup
        if k == len(history) - 2:
            bars = _odd_tick(bars, warm)
        if k == warmup + 1:  # a headline of one synthetic symbol and a market-wide one: rows with news of their own
            for trader in traders:
                trader.post_event(bars[0].ts - 290, "one symbol", symbol="SYN05", sentiment=0.7)
                trader.post_event(bars[0].ts - 280, "everyone", sentiment=-0.4)
        for path, trader, got in zip(paths, traders, answers, strict=True):
            rejected, intents = path(trader, bars, decide)
            got.append(([(i, type(e).__name__, str(e)) for i, e in rejected], [x.to_dict() for x in intents]))

    reference = answers[0]
    odd = reference[-2][0]
    n = len(history[0])
    assert [(i, kind) for i, kind, _ in odd] == [(0, "StaleBar"), (n, "ValueError"), (n + 2, "OverflowError")], odd
    assert all(len(intents) >= SYNTHETIC for _, intents in reference[warmup:])
    assert any(not i["ready"] for i in reference[-2][1])  # NEW0: one bar is no forecast
    assert sum(i["ready"] for i in reference[-1][1]) >= SYNTHETIC
    for got in answers[1:]:
        assert got == reference
    states = [_state(t) for t in traders]
    assert len(states[0]["close"]["live"]) > 300 and states[0]["close"]["cache"]
    exog = first.services["close"].exog
    newest = {s: exog.rows[s][(exog.pos[s] - 1) % exog.input_size] for s in ("SYN05", "SYN06")}
    assert newest["SYN05"][exog.index["news_age"]] < 1.0 == newest["SYN06"][exog.index["news_age"]]
    for state in states[1:]:
        assert state == states[0]
    for trader in traders:
        trader.stop()


def _reference_rows(events: list, max_pending: int) -> tuple[list, dict]:
    """The live-error rule one forecast at a time: each symbol a queue, scored as each bar arrives."""
    queues: dict[str, list] = {}
    rows, totals = [], {}
    for kind, *args in events:
        if kind == "record":
            symbol, count, origin_ts, arm, version, yhat, window = args
            queue = queues.setdefault(symbol, [])
            if queue and queue[-1][0] == count and queue[-1][3] == version:
                continue
            diffs = np.abs(np.diff(window.astype(np.float64)))
            queue.append((count, origin_ts, arm, version, np.asarray(yhat, float), float(diffs.mean())))
            del queue[:-max_pending]
        else:
            symbol, count, ts, value = args
            keep = []
            for p in queues.get(symbol, []):
                step = count - p[0]
                if 1 <= step <= len(p[4]):
                    err = abs(float(p[4][step - 1]) - value)
                    rows.append((p[3], "nhits", p[2], symbol, p[1], step, ts, float(p[4][step - 1]), value, err,
                                 p[5]))
                    total = totals.setdefault((p[2], p[3]), [0, 0.0, 0.0])
                    total[0] += 1
                    total[1] += err
                    total[2] += err / p[5] if p[5] > 0 else 0.0
                if step < len(p[4]):
                    keep.append(p)
            queues[symbol] = keep
    return rows, totals


@pytest.mark.parametrize("max_pending", [3, 64])
def test_the_vectorised_live_scoring_is_the_rule_one_forecast_at_a_time(max_pending):
    from serving.live import LiveMetrics

    rng = np.random.default_rng(max_pending)
    live = LiveMetrics(asset_class="crypto", target="close", model_name="m", max_pending_per_symbol=max_pending)
    symbols = [f"S{i}" for i in range(25)]
    count = dict.fromkeys(symbols, 0)
    events = []
    for t in range(120):
        tick = [s for s in symbols if rng.random() < 0.8]
        values = rng.random(len(tick))
        for s in tick:
            count[s] += 1
        events += [("actual", s, count[s], float(t), float(v)) for s, v in zip(tick, values, strict=True)]
        if t % 3:
            live.actual_many(tick, [count[s] for s in tick], [float(t)] * len(tick), values)
        else:  # bar by bar (the plain-Python path of one bar)
            for s, v in zip(tick, values, strict=True):
                live.actual(s, count[s], float(t), float(v))
        for arm, version in (("champion", "1"), ("challenger", "2")):
            batch = [s for s in symbols if rng.random() < 0.6]
            batch += batch[:2] if t % 7 == 0 else []  # the same forecast twice in one call: kept once
            h = 3 if t % 5 == 0 else 12
            yhat = rng.random((len(batch), h)).astype(np.float32)
            windows = rng.random((len(batch), 9)).astype(np.float32)
            events += [("record", s, count[s], t + 0.5, arm, version, yhat[j], windows[j])
                       for j, s in enumerate(batch)]
            live.record_many(batch, [count[s] for s in batch], [t + 0.5] * len(batch), arm, version, "nhits",
                             yhat, windows)
        if t % 11 == 0:  # the same forecast served again later (e.g. a headline re-forecast): not scored twice
            s = symbols[t % len(symbols)]
            events.append(("record", s, count[s], t + 0.7, "champion", "1", np.ones(12), np.arange(9.0)))
            live.record(s, count[s], t + 0.7, "champion", "1", "nhits", np.ones(12), np.arange(9.0))
    rows, totals = _reference_rows(events, max_pending)
    got = live.rows()
    assert len(rows) > 5000
    assert [r[4:] for r in got] == rows and {r[1:4] for r in got} == {("crypto", "close", "m")}
    assert dict(live.totals) == totals
    assert live.drop() == len(rows) and live.rows() == []
