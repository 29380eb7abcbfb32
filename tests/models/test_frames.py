"""models.frames: resampling, targets, series selection, frequency helpers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from models.frames import (
    bar_volatility,
    class_freq,
    garman_klass,
    resample_ohlcv,
    season_length,
    to_training_frame,
)
from tests.models.sample_bars import ROOT


def _bars(rows: list[tuple], asset_class: str = "crypto", freq: str = "1min") -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["ts", "symbol", "open", "high", "low", "close", "volume"])
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df.assign(asset_class=asset_class, freq=freq, source="test")


def test_resample_1min_to_5min_ohlcv_by_hand() -> None:
    rows = [(f"2024-01-01 00:0{m}:00", "X", o, hi, lo, c, v) for m, (o, hi, lo, c, v) in enumerate([
        (10, 11, 9, 10.5, 1), (10.5, 13, 10, 12, 2), (12, 12.5, 8, 9, 3), (9, 10, 9, 9.5, np.nan),
        (9.5, 9.8, 9.1, 9.7, 4), (9.7, 9.9, 9.6, 9.8, 5), (9.8, 14, 9.7, 13, 6),
    ])]
    out = resample_ohlcv(_bars(rows), "5min")
    assert out["ts"].tolist() == list(pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:05"], utc=True))
    first, second = out.iloc[0], out.iloc[1]
    assert (first.open, first.high, first.low, first.close, first.volume) == (10, 13, 8, 9.7, 10)
    assert (second.open, second.high, second.low, second.close, second.volume) == (9.7, 14, 9.6, 13, 11)


def test_resample_keeps_all_nan_volume_nan_and_skips_empty_bins() -> None:
    rows = [("2024-01-01 00:00", "X", 1, 1, 1, 1, np.nan), ("2024-01-01 00:12", "X", 2, 2, 2, 2, np.nan)]
    out = resample_ohlcv(_bars(rows), "5min")
    assert len(out) == 2 and out["volume"].isna().all()
    assert out["ts"].dt.minute.tolist() == [0, 10]


def test_crypto_frame_resamples_1min_uses_native_5min_and_ignores_hourly() -> None:
    one_min = _bars([(f"2024-01-01 00:{m:02d}", "A", 1, 2, 0.5, 1 + m, 1) for m in range(10)])
    native = _bars([("2024-01-01 00:00", "B", 5, 6, 4, 5.5, 1), ("2024-01-01 00:05", "B", 5.5, 7, 5, 6, 1)],
                   freq="5min")
    hourly = _bars([("2024-01-01 00:00", "C", 1, 1, 1, 1, 1)], freq="1h")
    frame = to_training_frame(pd.concat([one_min, native, hourly]), "crypto", "close", min_length=1)
    assert frame.attrs["freq"] == "5min"
    assert sorted(frame["unique_id"].unique()) == ["A", "B"]
    assert frame.loc[frame.unique_id == "A", "y"].tolist() == [5.0, 10.0]  # close of minute 4 and 9
    assert frame.loc[frame.unique_id == "B", "y"].tolist() == [5.5, 6.0]


def test_crypto_30min_bars_are_stored_but_not_trained_at_5min() -> None:
    one_min = _bars([(f"2024-01-01 00:{m:02d}", "A", 1, 2, 0.5, 1 + m, 1) for m in range(10)])
    half_hour = _bars([("2024-01-01 00:00", "A", 7, 8, 6, 7, 1), ("2024-01-01 00:30", "A", 7, 8, 6, 7, 1),
                       ("2024-01-01 00:00", "C", 7, 8, 6, 7, 1), ("2024-01-01 00:30", "C", 7, 8, 6, 7, 1)],
                      freq="30min")
    frame = to_training_frame(pd.concat([one_min, half_hour]), "crypto", "close", min_length=1)
    assert frame.attrs["freq"] == "5min" and frame["unique_id"].unique().tolist() == ["A"]
    assert frame["y"].tolist() == [5.0, 10.0]  # from A's 1min bars only: coarser bars are never used


def test_equities_4h_bars_train_as_utc_days_with_hand_computed_ohlc() -> None:
    four_h = _bars([
        ("2024-01-02 08:00", "X", 10, 12, 9, 11, 1), ("2024-01-02 12:00", "X", 11, 15, 10, 14, 2),
        ("2024-01-02 16:00", "X", 14, 14.5, 8, 9, 3), ("2024-01-02 20:00", "X", 9, 10, 8.5, 9.5, 4),
        ("2024-01-03 00:00", "X", 9.5, 11, 9, 10, 5),  # 00:00 UTC opens the next day (left-closed bins)
        ("2024-01-03 04:00", "X", 10, 10.5, 7, 8, 6), ("2024-01-03 08:00", "X", 8, 13, 8, 12.5, 7),
        ("2024-01-02 08:00", "N", 1, 1, 1, 1, 1),  # N has native daily bars: they win
    ], asset_class="equities", freq="4h")
    native = _bars([("2024-01-02", "N", 5, 6, 4, 5.5, 1), ("2024-01-03", "N", 5.5, 7, 5, 6, 1)],
                   asset_class="equities", freq="1d")
    bars = pd.concat([four_h, native])
    close = to_training_frame(bars, "equities", "close", min_length=1)
    assert close.attrs["freq"] == "B"
    x = close[close.unique_id == "X"]
    assert x["ds"].tolist() == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]
    assert x["y"].tolist() == [9.5, 12.5]  # the last 4h close of each UTC day
    assert close.loc[close.unique_id == "N", "y"].tolist() == [5.5, 6.0]
    vol = to_training_frame(bars, "equities", "volatility", min_length=1)
    k = 2 * np.log(2) - 1  # day 1: O 10 H 15 L 8 C 9.5; day 2: O 9.5 H 13 L 7 C 12.5
    expected = [np.sqrt(0.5 * np.log(15 / 8) ** 2 - k * np.log(9.5 / 10) ** 2),
                np.sqrt(0.5 * np.log(13 / 7) ** 2 - k * np.log(12.5 / 9.5) ** 2)]
    np.testing.assert_allclose(vol.loc[vol.unique_id == "X", "y"], expected)
    # the same bars read in another time zone still make UTC days
    eastern = bars.assign(ts=bars["ts"].dt.tz_convert("America/New_York"))
    assert to_training_frame(eastern, "equities", "close", min_length=1).equals(close)


def test_hourly_fx_resamples_each_symbol_from_its_finest_dividing_bars() -> None:
    def series(sym: str, freq: str, step: str, n: int, c0: float) -> pd.DataFrame:
        return _bars([(pd.Timestamp("2024-01-01") + i * pd.Timedelta(step), sym, 1, 2, 0.5, c0 + i, 1)
                      for i in range(n)], "fx", freq)

    bars = pd.concat([
        series("A", "15min", "15min", 8, 100), series("A", "30min", "30min", 4, 500),
        series("B", "30min", "30min", 4, 200),
        series("C", "45min", "45min", 8, 300),  # 45min does not divide an hour: ignored
        series("D", "1d", "1D", 3, 400),  # coarser: ignored
        series("E", "1h", "1h", 2, 600), series("E", "15min", "15min", 8, 700),
    ])
    frame = to_training_frame(bars, "fx", "close", freq="1h", min_length=1)
    assert frame.attrs["freq"] == "h"
    got = frame.groupby("unique_id")["y"].apply(list).to_dict()
    assert got == {"A": [103.0, 107.0], "B": [201.0, 203.0], "E": [600.0, 601.0]}  # E: native hourly bars win


def test_garman_klass_matches_hand_computation() -> None:
    o, hi, lo, c = 100.0, 110.0, 95.0, 105.0
    expected = np.sqrt(0.5 * np.log(110 / 95) ** 2 - (2 * np.log(2) - 1) * np.log(105 / 100) ** 2)
    assert garman_klass(np.array([o]), np.array([hi]), np.array([lo]), np.array([c]))[0] == pytest.approx(expected)
    # by hand: 0.5 * 0.146603^2 - 0.386294 * 0.048790^2 = 0.010746 - 0.000920 = 0.009827 -> sqrt = 0.09913
    assert expected == pytest.approx(0.09913, abs=1e-5)


def test_degenerate_bars_fall_back_to_abs_log_return() -> None:
    bars = pd.DataFrame({"symbol": "X", "open": [1.0, 1.1, 0.9], "high": [1.0, 1.2, 0.9],
                         "low": [1.0, 1.0, 0.9], "close": [1.0, 1.1, 0.9]})
    vol = bar_volatility(bars)
    assert np.isnan(vol.iloc[0])  # degenerate first bar: no previous close
    assert vol.iloc[1] == pytest.approx(garman_klass(1.1, 1.2, 1.0, 1.1))
    assert vol.iloc[2] == pytest.approx(abs(np.log(0.9 / 1.1)))


def test_fx_close_only_volatility_is_abs_log_return(fx_daily: pd.DataFrame) -> None:
    frame = to_training_frame(fx_daily, "fx", "volatility", min_length=100)
    aud = fx_daily[fx_daily.symbol == "AUD"].sort_values("ts")["close"].to_numpy()
    expected = np.abs(np.diff(np.log(aud)))
    got = frame.loc[frame.unique_id == "AUD", "y"].to_numpy()
    np.testing.assert_allclose(got, expected)
    assert frame.attrs["freq"] == "B" and frame["unique_id"].nunique() == 8


def test_daily_frame_contract_and_deduplication(equities_daily: pd.DataFrame) -> None:
    dup = pd.concat([equities_daily, equities_daily.head(5).assign(source="other")], ignore_index=True)
    intraday = equities_daily.head(3).assign(freq="1h")
    frame = to_training_frame(pd.concat([dup, intraday]), "equities", "close", min_length=10)
    assert list(frame.columns) == ["unique_id", "ds", "y"]
    assert frame["ds"].dt.tz is None
    assert not frame.duplicated(["unique_id", "ds"]).any()
    assert frame.equals(frame.sort_values(["unique_id", "ds"]).reset_index(drop=True))
    assert len(frame) == len(equities_daily)
    ts0 = equities_daily.sort_values(["symbol", "ts"])["ts"].iloc[0]
    assert frame["ds"].iloc[0] == ts0.tz_convert("UTC").tz_localize(None)


def test_real_crypto_slice_gives_5min_bars(crypto_1min: pd.DataFrame) -> None:
    frame = to_training_frame(crypto_1min, "crypto", "volatility")
    assert frame.groupby("unique_id").size().tolist() == [4 * 288, 4 * 288]
    assert (frame.groupby("unique_id")["ds"].diff().dropna() == pd.Timedelta("5min")).all()
    assert (frame["y"] >= 0).all() and np.isfinite(frame["y"]).all()


def test_min_length_and_max_series() -> None:
    rows = []
    for sym, start, n in [("old", "2024-01-01", 30), ("long", "2024-01-01", 40), ("short", "2024-01-25", 5),
                          ("recent", "2024-01-10", 25)]:
        for ts in pd.bdate_range(start, periods=n):
            rows.append((ts, sym, 1, 1, 1, 1, 1))
    bars = _bars(rows, asset_class="equities", freq="1d")
    frame = to_training_frame(bars, "equities", "close", min_length=10)
    assert sorted(frame["unique_id"].unique()) == ["long", "old", "recent"]
    top = to_training_frame(bars, "equities", "close", min_length=10, max_series=2)
    assert sorted(top["unique_id"].unique()) == ["long", "recent"]  # most recent end first, then longest


def test_frequency_helpers() -> None:
    assert class_freq("crypto") == "5min"
    assert class_freq("equities") == class_freq("fx") == "B"
    assert season_length("5min") == 288 and season_length("B") == 5 and season_length("1d") == 5
    with pytest.raises(ValueError, match="asset_class"):
        class_freq("bonds")
    with pytest.raises(ValueError, match="season length"):
        season_length("7min")
    with pytest.raises(ValueError, match="target"):
        to_training_frame(pd.DataFrame(), "crypto", "price")


def test_importing_models_is_light() -> None:
    code = (
        "import sys; import models.frames, models.configs, models.metrics, models.baselines, "
        "models.nhits, models.evaluation, models.forecasting, models.plots; "
        "heavy = [m for m in ('torch', 'neuralforecast', 'pytorch_lightning', 'matplotlib', 'dagster', 'mlflow') "
        "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
