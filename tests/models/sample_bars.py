"""Small ``bars`` frames built from the bundled CSVs, for tests/models.

The frames follow the ``bars`` table contract (ts tz-aware UTC, symbol,
asset_class, freq, open/high/low/close, volume, source). Only small slices are
read so the suite stays fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]

DATA = ROOT / "data"
FX_NAMES = ["AUD", "GBP", "CAD", "CHF", "CNY", "JPY", "NZD", "SGD"]


def crypto_bars(nrows: int | None = None, symbols: tuple[str, ...] | None = None) -> pd.DataFrame:
    """1-minute Binance.US bars (file rows are ordered symbol by symbol)."""
    raw = pd.read_csv(DATA / "crypto" / "crypto_1min_binanceus_2023-03.csv.gz", nrows=nrows)
    if symbols is not None:
        raw = raw[raw["symbol"].isin(symbols)]
    return pd.DataFrame({
        "ts": pd.to_datetime(raw["ts"], utc=True), "symbol": raw["symbol"], "asset_class": "crypto",
        "freq": "1min", "open": raw["open"], "high": raw["high"], "low": raw["low"], "close": raw["close"],
        "volume": raw["volume_base"].astype(float), "source": raw["exchange"],
    }).reset_index(drop=True)


def equity_bars(n_tickers: int = 10) -> pd.DataFrame:
    """Daily S&P 500 bars of the first ``n_tickers`` tickers (file is ordered by ticker)."""
    raw = pd.read_csv(DATA / "equities" / "all_stocks_5yr.csv.gz", nrows=1259 * n_tickers + 2000)
    raw = raw[raw["Name"].isin(raw["Name"].unique()[:n_tickers])].dropna(subset=["open", "high", "low", "close"])
    return pd.DataFrame({
        "ts": pd.to_datetime(raw["date"]).dt.tz_localize("UTC"), "symbol": raw["Name"], "asset_class": "equities",
        "freq": "1d", "open": raw["open"], "high": raw["high"], "low": raw["low"], "close": raw["close"],
        "volume": raw["volume"].astype(float), "source": "sandp500_5yr",
    }).reset_index(drop=True)


def fx_bars(nrows: int | None = None) -> pd.DataFrame:
    """Close-only daily fx rates (8 currencies, business days from 1990-01-01)."""
    raw = pd.read_csv(DATA / "fx" / "exchange_rate.txt.gz", header=None, names=FX_NAMES, nrows=nrows)
    raw.index = pd.bdate_range("1990-01-01", periods=len(raw), tz="UTC")
    long = raw.rename_axis("ts").reset_index().melt(id_vars="ts", var_name="symbol", value_name="close")
    return long.assign(
        asset_class="fx", freq="1d", open=long["close"], high=long["close"], low=long["close"],
        volume=np.nan, source="lai_exchange_rate",
    )[["ts", "symbol", "asset_class", "freq", "open", "high", "low", "close", "volume", "source"]]
