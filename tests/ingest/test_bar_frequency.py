"""Bar frequency is data: a file is registered at the spacing its timestamps have, or refused; never relabelled."""

import pandas as pd
import pytest
import yaml
from pandera.errors import SchemaErrors

from ingest.catalog import CatalogError, canonical_freq, load_catalog, spec_from_dict
from ingest.readers import SourceFileError
from ingest.schemas import schema_for
from pipelines.registration import register_file
from tests.conftest import ROOT, run_job, warehouse_query, write_catalog


def _write(path, stamps, symbols=("AAA",)):
    """A canonical bar file: the same timestamps for each symbol, valid OHLC."""
    rows = [f"{pd.Timestamp(ts):%Y-%m-%d %H:%M:%S},{sym},10,11,9,10.5,100" for sym in symbols for ts in stamps]
    path.write_text("ts,symbol,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    return path


def _sessions(start, days, first, last, step):
    """Intraday bars from `first` to `last` (times of day) on `days` business days: nights and weekends are gaps."""
    return [ts for day in pd.bdate_range(start, periods=days)
            for ts in pd.date_range(day + pd.Timedelta(first), day + pd.Timedelta(last), freq=step)]


def _registered(home):
    path = home / "sources" / "sources.yaml"
    return yaml.safe_load(path.read_text())["sources"] if path.exists() else []


@pytest.mark.parametrize("stamps,asset_class,expected", [
    (pd.date_range("2024-01-01", periods=300, freq="30min"), "crypto", "30min"),
    (_sessions("2024-01-01", 15, "14:30:00", "20:30:00", "30min"), "equities", "30min"),  # nights and weekends
    (pd.date_range("2024-01-01", periods=300, freq="15min"), "crypto", "15min"),
    (_sessions("2024-01-01", 20, "00:00:00", "20:00:00", "4h"), "fx", "4h"),
    (pd.bdate_range("2024-01-01", periods=60), "equities", "1d"),  # weekends and holidays are gaps
])
def test_a_file_is_registered_at_its_own_spacing(home, tmp_path, stamps, asset_class, expected):
    path = _write(tmp_path / "bars.csv", stamps, symbols=("AAA", "BBB"))
    spec = register_file(str(path), asset_class=asset_class)
    assert spec.freq == expected
    assert [e["freq"] for e in _registered(home)] == [expected]


def test_daily_stamps_at_local_midnight_across_a_dst_change_are_still_daily(home, tmp_path):
    # US/Eastern midnight is 05:00 UTC in winter, 04:00 UTC in summer: one gap of 3 days - 1 hour in 33
    path = tmp_path / "daily.csv"
    path.write_text("ts,symbol,close\n" + "".join(f"{d:%Y-%m-%d},AAA,{i + 1}\n"
                                                  for i, d in enumerate(pd.bdate_range("2023-03-01", "2023-04-14"))))
    assert register_file(str(path), asset_class="equities", timezone="America/New_York").freq == "1d"


@pytest.mark.parametrize("stamps,message", [
    ([pd.Timestamp("2024-01-01") + pd.Timedelta(seconds=45 * i) for i in range(200)],
     "detected spacing 45s: bars must be a whole number of minutes from 1min to 1d"),
    (pd.date_range("2024-01-01", periods=60, freq="7D"), "detected spacing 7d: bars must be a whole number of minutes"),
    (sorted([*pd.date_range("2024-01-01", periods=100, freq="30min"),
             *pd.date_range("2024-01-01 00:07", periods=10, freq="5h")]),
     ("irregular spacing: most common step 30min, but 20 of 109 gaps are not multiples of it (e.g. 7min at row 2, "
      "symbol AAA)")),
    ([pd.Timestamp("2024-01-01")], "cannot infer the bar frequency (fewer than two timestamps per symbol)"),
])
def test_a_file_without_a_bar_frequency_is_refused_naming_the_spacing(home, tmp_path, stamps, message):
    path = _write(tmp_path / "odd.csv", stamps)
    with pytest.raises(SourceFileError) as err:
        register_file(str(path), asset_class="crypto")
    assert str(path) in str(err.value) and message in str(err.value)
    assert _registered(home) == []


def test_a_given_freq_that_contradicts_the_file_is_refused(home, tmp_path):
    path = _write(tmp_path / "half_hour.csv", pd.date_range("2024-01-01", periods=100, freq="30min"))
    with pytest.raises(SourceFileError) as err:
        register_file(str(path), asset_class="crypto", freq="1h")
    assert "--freq 1h contradicts the file, whose detected spacing is 30min" in str(err.value)
    assert str(path) in str(err.value) and _registered(home) == []
    assert register_file(str(path), asset_class="crypto", freq="30T").freq == "30min"  # same thing, another spelling


@pytest.mark.parametrize("value,canonical", [
    ("30T", "30min"), ("30min", "30min"), ("4H", "4h"), ("4h", "4h"), ("1D", "1d"), ("D", "1d"), ("1d", "1d"),
    ("60min", "1h"), ("90min", "90min"), ("1440min", "1d"), ("1min", "1min"), ("5min", "5min"), ("1h", "1h"),
    (pd.Timedelta("2h"), "2h"),
])
def test_canonical_freq_spellings(value, canonical):
    assert canonical_freq(value) == canonical


@pytest.mark.parametrize("value", ["45s", "90s", "2d", "1w", "0min", "-5min", "30", "abc", "", None])
def test_canonical_freq_refuses_what_is_no_bar_frequency(value):
    with pytest.raises(CatalogError, match="freq must be a whole number of minutes from 1min to 1d") as err:
        canonical_freq(value)
    assert repr(value) in str(err.value)


def test_catalog_entries_store_the_canonical_frequency(tmp_path):
    entry = {"name": "x", "path": "f.csv", "table": "bars", "asset_class": "fx", "freq": "4H"}
    assert spec_from_dict(entry, tmp_path).freq == "4h"
    with pytest.raises(CatalogError, match="source 'x': freq must be a whole number of minutes .* got '45s'"):
        spec_from_dict({**entry, "freq": "45s"}, tmp_path)
    bundled = {s.freq for s in load_catalog(ROOT / "data" / "sources.yaml") if s.table == "bars"}
    assert bundled == {"1min", "1h", "1d"} and all(canonical_freq(f) == f for f in bundled)


def test_bars_schema_takes_canonical_frequencies_only():
    bars = pd.DataFrame({"ts": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"], utc=True),
                         "symbol": "A", "asset_class": "fx", "freq": ["30min", "4h", "30T"], "open": 1.0,
                         "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0})
    bars["ts"] = bars["ts"].astype("datetime64[us, UTC]")
    with pytest.raises(SchemaErrors) as err:
        schema_for("bars").validate(bars, lazy=True)
    cases = err.value.failure_cases
    assert cases[cases["column"] == "freq"]["failure_case"].tolist() == ["30T"]


def test_ingest_stores_30min_bars_as_30min_and_judges_their_gaps_by_their_bar(home, tmp_path, monkeypatch):
    monkeypatch.setenv("TRADECAST_CATALOG", str(write_catalog(tmp_path / "empty.yaml", [])))
    # 8 hours without a bar: normal for hourly crypto (12h), not for 30-minute crypto (12 bars = 6h)
    stamps = [*pd.date_range("2024-01-01", periods=48, freq="30min"),
              *pd.date_range("2024-01-02 07:30", periods=48, freq="30min")]
    register_file(str(_write(tmp_path / "coin.csv", stamps, symbols=("COIN",))), asset_class="crypto")
    result = run_job("ingest_job", "crypto", assets=["market_bars"])
    bars = warehouse_query("SELECT freq, count(*) AS n FROM bars GROUP BY freq")
    assert bars.to_dict("records") == [{"freq": "30min", "n": 96}]
    checks = {c.asset_check_key.name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["check_market_bars_no_large_gaps"] is False
