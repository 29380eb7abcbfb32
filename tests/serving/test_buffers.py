"""Ring buffers (wrap-around, stale / missing / unknown), the target value of a bar, and the forecast cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.serving.conftest import real_bars, tiny_onnx, to_bar


def test_ring_buffer_wraps_around_and_keeps_the_last_values_in_order():
    from serving.buffers import RingBuffer

    buf = RingBuffer(5)
    assert not buf.ready
    for i in range(4):
        buf.append(i)
    assert not buf.ready and buf.count == 4
    for n in range(4, 23):  # far past 2 x size: every position of the doubled array is overwritten repeatedly
        buf.append(n)
        assert buf.ready
        np.testing.assert_array_equal(buf.window(), np.arange(n - 4, n + 1, dtype=np.float32))
    assert buf.window().shape == (5,) and buf.window().dtype == np.float32 and buf.window().flags.c_contiguous


def test_symbol_buffers_on_real_bars_wrap_around_and_refuse_stale_missing_and_unknown():
    from serving.buffers import NotReady, StaleBar, SymbolBuffers, UnknownSymbol

    size = 16
    bars = real_bars(3 * size + 5, "BTCUSDT")  # > 2 x input_size appends
    buffers = SymbolBuffers(size, "close", max_symbols=2)
    for i, row in enumerate(bars.itertuples()):
        value = buffers.update(to_bar(row))
        assert value == pytest.approx(row.close)
        if i + 1 < size:
            with pytest.raises(NotReady, match=f"BTCUSDT: {i + 1} of {size} bars"):
                buffers.window("BTCUSDT")
    np.testing.assert_allclose(buffers.window("BTCUSDT"), bars.close.to_numpy()[-size:], rtol=1e-7)

    last = bars.iloc[-1]
    for ts in (last.epoch, last.epoch - 60):  # the same bar again, an older one
        with pytest.raises(StaleBar, match="not newer"):
            buffers.update(to_bar(last, ts=float(ts), close=float(last.close) * 1.01))
    np.testing.assert_allclose(buffers.window("BTCUSDT"), bars.close.to_numpy()[-size:], rtol=1e-7)  # unchanged

    with pytest.raises(UnknownSymbol):
        buffers.window("ETHUSDT")
    with pytest.raises(KeyError):  # UnknownSymbol is a KeyError (and NotReady / StaleBar are ValueErrors)
        buffers.get("ETHUSDT")
    buffers.update(to_bar(real_bars(1, "BTCUSD").iloc[0]))
    with pytest.raises(NotReady):
        buffers.window("BTCUSD")
    with pytest.raises(OverflowError, match="refusing new symbol 'BTCUSDC'"):
        buffers.update(to_bar(real_bars(1, "BTCUSDC").iloc[0]))
    with pytest.raises(ValueError, match="target must be one of"):
        SymbolBuffers(size, "returns")


def test_load_warms_a_symbol_with_its_history():
    from serving.buffers import StaleBar, SymbolBuffers

    bars = real_bars(40, "BTCUSD")
    buffers = SymbolBuffers(10, "close")
    buffers.load("BTCUSD", bars.close.to_numpy()[:30], float(bars.epoch[29]), float(bars.close[29]))
    np.testing.assert_allclose(buffers.window("BTCUSD"), bars.close.to_numpy()[20:30], rtol=1e-7)
    with pytest.raises(StaleBar):
        buffers.update(to_bar(bars.iloc[29]))
    buffers.update(to_bar(bars.iloc[30]))
    np.testing.assert_allclose(buffers.window("BTCUSD"), bars.close.to_numpy()[21:31], rtol=1e-7)


def test_volatility_values_equal_the_training_frame_definition_on_real_bars():
    """Garman-Klass per bar, |log return| where high == low (real untraded BTCUSDC minutes, plus one made flat
    on purpose), exactly as `models.frames.bar_volatility` computes the training target."""
    from models.frames import bar_volatility
    from serving.buffers import SymbolBuffers

    bars = real_bars(300, "BTCUSDC").copy()
    flat = bars.index[bars.high > bars.low][5]  # a traded bar made degenerate: high == low == open == close
    bars.loc[flat, ["open", "high", "low"]] = bars.loc[flat, "close"]
    degenerate = (bars.high <= bars.low).to_numpy()
    assert degenerate.sum() > 10 and (~degenerate).sum() > 10  # both kinds really occur
    assert bars.close.iloc[flat] != bars.close.iloc[flat - 1]  # the flat bar's |log return| is not zero

    want = bar_volatility(bars[["open", "high", "low", "close"]]).to_numpy()
    buffers = SymbolBuffers(len(bars), "volatility")
    got = [buffers.update(to_bar(row)) for row in bars.itertuples()]
    expected = [None if np.isnan(w) else w for w in want]
    assert (got[0] is None) == (expected[0] is None)  # a degenerate first bar gives nothing (no previous close)
    pairs = [(g, w) for g, w in zip(got, expected, strict=True) if w is not None]
    assert all(g is not None for g, _ in pairs) and len(pairs) >= len(bars) - 1
    np.testing.assert_allclose([g for g, _ in pairs], [w for _, w in pairs], rtol=1e-12, atol=0)
    assert got[flat] == pytest.approx(abs(np.log(bars.close[flat] / bars.close[flat - 1])), rel=1e-12)
    values = buffers.get("BTCUSDC").data[:buffers.get("BTCUSDC").count]
    np.testing.assert_allclose(values, [w for _, w in pairs], rtol=1e-6)  # float32 storage


def _predictor(tmp_path, cache_size: int, input_size: int = 8):
    """A Predictor over a real (tiny) ONNX window-mean graph behind a real breaker."""
    from serving.ab import ABRouter
    from serving.breaker import GuardedModel
    from serving.buffers import SymbolBuffers
    from serving.predictor import Predictor
    from serving.runtime import NaiveForecaster, OnnxForecaster

    primary = OnnxForecaster.from_path(tiny_onnx(tmp_path / "mean.onnx", "window_mean", 4, input_size))
    arms = {"champion": GuardedModel(primary, NaiveForecaster(4, input_size))}
    buffers = SymbolBuffers(input_size, "close")
    return Predictor(buffers, lambda: arms, ABRouter(0.0), live=None, cache_size=cache_size), buffers


def test_forecast_cache_is_bounded_hits_on_repeats_and_is_invalidated_by_a_bar(tmp_path):
    predictor, buffers = _predictor(tmp_path, cache_size=3)
    symbols = ("BTCUSD", "BTCUSDC", "BTCUSDT")
    frames = {s: real_bars(12, s) for s in symbols}
    extra = {f"X{i}": real_bars(12, "BTCUSDT", start=100 * (i + 1)).assign(symbol=f"X{i}") for i in range(2)}
    for _sym, frame in {**frames, **extra}.items():
        for row in frame.iloc[:10].itertuples():
            predictor.update(to_bar(row))

    first = predictor.forecast("BTCUSDT")
    np.testing.assert_allclose(first.values[:, 0], np.full(4, frames["BTCUSDT"].close[2:10].mean()), rtol=1e-6)
    assert (predictor.hits, predictor.misses) == (0, 1)
    again = predictor.forecast("BTCUSDT")
    assert again is first and (predictor.hits, predictor.misses) == (1, 1)  # repeated: a cache hit

    for sym in ("BTCUSD", "BTCUSDC", "X0", "X1"):
        predictor.forecast(sym)
    assert len(predictor.cache) == 3  # bounded: the least recently used (BTCUSDT, then BTCUSD) were evicted
    assert [k[0] for k in predictor.cache] == ["BTCUSDC", "X0", "X1"]
    predictor.forecast("BTCUSDC")  # a hit moves it to the end
    assert [k[0] for k in predictor.cache] == ["X0", "X1", "BTCUSDC"]
    misses = predictor.misses
    predictor.forecast("BTCUSDT")  # evicted: computed again
    assert predictor.misses == misses + 1

    predictor.update(to_bar(frames["BTCUSDT"].iloc[10]))  # a new bar invalidates the symbol's forecast
    assert ("BTCUSDT", "champion") not in predictor.cache
    fresh = predictor.forecast("BTCUSDT")
    assert fresh is not first and fresh.count == first.count + 1 and predictor.misses == misses + 2
    np.testing.assert_allclose(fresh.values[:, 0], np.full(4, frames["BTCUSDT"].close[3:11].mean()), rtol=1e-6)

    batch = predictor.forecast_batch(["X0", "BTCUSDT", "X1", "BTCUSD"])  # cached and computed, in order
    assert [f.symbol for f in batch] == ["X0", "BTCUSDT", "X1", "BTCUSD"] and len(predictor.cache) == 3
    np.testing.assert_array_equal(batch[1].values, fresh.values)


@pytest.mark.slow
def test_service_forecast_is_cached_until_the_next_bar(make_service):
    from serving.buffers import Bar

    service = make_service()
    assert service.warm() == 3 and all(service.buffers.get(s).ready for s in ("BTCUSD", "BTCUSDC", "BTCUSDT"))
    first = service.predictor.forecast("BTCUSDT")
    assert service.predictor.forecast("BTCUSDT") is first
    last = float(service.buffers.window("BTCUSDT")[-1])
    service.ingest(Bar("BTCUSDT", first.origin_ts + 300, last, last * 1.01, last * 0.99, last * 1.005))
    second = service.predictor.forecast("BTCUSDT")
    assert second is not first and second.origin_ts == first.origin_ts + 300
    assert not np.array_equal(second.values, first.values)
    assert pd.Timestamp(second.to_dict("5min")["ds"][0]) == pd.Timestamp(second.origin_ts + 300, unit="s", tz="UTC")
