"""Each Pandera schema rejects each kind of bad row (and accepts a good one)."""

import pandas as pd
import pandera.errors as pe
import pytest

from ingest.schemas import schema_for

NOW = pd.Timestamp("2025-01-01", tz="UTC")


def _ts(*values):
    return pd.to_datetime(list(values), utc=True).astype("datetime64[us, UTC]")


def good_bars():
    return pd.DataFrame({
        "ts": _ts("2024-01-01", "2024-01-02"), "symbol": ["AAA", "AAA"], "asset_class": ["crypto"] * 2,
        "freq": ["1d"] * 2, "open": [1.0, 1.1], "high": [2.0, 2.0], "low": [0.5, 0.5], "close": [1.5, 1.2],
        "volume": [10.0, None]})


def failing_checks(table, frame):
    try:
        schema_for(table, now=NOW).validate(frame, lazy=True)
    except pe.SchemaErrors as exc:
        return set(exc.failure_cases["check"].astype(str))
    return set()


def test_good_rows_pass_every_schema():
    assert failing_checks("bars", good_bars()) == set()
    news = pd.DataFrame({"ts": _ts("2024-01-01"), "source": ["s"], "symbol": [None], "headline": ["h"],
                         "sentiment": [0.3]})
    assert failing_checks("news_events", news) == set()
    macro = pd.DataFrame({"ts": _ts("2024-01-01"), "source": ["s"], "event_type": ["FOMC Meeting"],
                          "policy_surprise": [float("nan")]})
    assert failing_checks("macro_events", macro) == set()


@pytest.mark.parametrize("column,value,check", [
    ("open", float("nan"), "not_nullable"),
    ("close", -1.0, "price must be > 0"),
    ("low", 0.0, "price must be > 0"),
    ("volume", -5.0, "volume must be >= 0"),
    ("high", 1.15, "high < max(open, close)"),
    ("low", 1.3, "low > min(open, close)"),
    ("symbol", "", "str_length(1, 64)"),
    ("symbol", None, "not_nullable"),
    ("ts", pd.Timestamp("2030-01-01", tz="UTC"), "timestamp after 2025-01-01 00:00 UTC"),
    ("asset_class", "stocks", "isin(('equities', 'crypto', 'fx'))"),
    ("freq", "2d", "freq must be a canonical bar frequency (Nmin, Nh or 1d; whole minutes from 1min to 1d)"),
])
def test_bars_schema_rejects(column, value, check):
    frame = good_bars()
    frame[column] = frame[column].astype(object) if column in ("symbol", "asset_class", "freq") else frame[column]
    frame.loc[1, column] = value
    assert check in failing_checks("bars", frame)


def test_bars_schema_rejects_duplicate_keys():
    frame = pd.concat([good_bars(), good_bars().iloc[[0]]], ignore_index=True)
    assert "multiple_fields_uniqueness" in failing_checks("bars", frame)


@pytest.mark.parametrize("column,value,check", [
    ("sentiment", 1.5, "in_range(-1.0, 1.0)"),
    ("sentiment", float("nan"), "not_nullable"),
    ("headline", "", "str_length(1, 20000)"),
    ("ts", pd.NaT, "not_nullable"),
])
def test_news_schema_rejects(column, value, check):
    frame = pd.DataFrame({"ts": _ts("2024-01-01", "2024-01-02"), "source": ["s", "s"], "symbol": ["A", None],
                          "headline": ["up", "down"], "sentiment": [0.1, -0.2]})
    frame.loc[1, column] = value
    assert check in failing_checks("news_events", frame)


@pytest.mark.parametrize("column,value,check", [
    ("policy_surprise", 1e10, "in_range(-5.0, 5.0)"),
    ("event_type", None, "not_nullable"),
])
def test_macro_schema_rejects(column, value, check):
    frame = pd.DataFrame({"ts": _ts("2024-01-01", "2024-01-02"), "source": ["s", "s"],
                          "event_type": ["FOMC Meeting", "Minutes"], "policy_surprise": [0.05, None]})
    frame["event_type"] = frame["event_type"].astype(object)
    frame.loc[1, column] = value
    assert check in failing_checks("macro_events", frame)


def test_symbols_schema_rejects_duplicates():
    frame = pd.DataFrame({"symbol": ["AAPL", "AAPL"], "asset_class": ["equities"] * 2,
                          "sector": ["Tech", "Tech"], "company": ["Apple", "Apple"]})
    assert "multiple_fields_uniqueness" in failing_checks("symbols", frame)
