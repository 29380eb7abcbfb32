"""Session fixtures for tests/models: small real ``bars`` slices (see sample_bars)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.models.sample_bars import crypto_bars, equity_bars, fx_bars


@pytest.fixture(scope="session")
def crypto_1min() -> pd.DataFrame:
    """Two symbols, 4 days of 1-minute bars each (~1150 5-minute bars per symbol)."""
    return crypto_bars(nrows=30240 * 2, symbols=("BTCUSD", "BTCUSDC")).groupby("symbol").head(4 * 1440)


@pytest.fixture(scope="session")
def equities_daily() -> pd.DataFrame:
    return equity_bars(n_tickers=6)


@pytest.fixture(scope="session")
def fx_daily() -> pd.DataFrame:
    return fx_bars(nrows=1500)
