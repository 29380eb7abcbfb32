"""The catalog's parsing quirks, each on a small hand-made file."""

import gzip

import pandas as pd
import pytest

from ingest.catalog import CatalogError, load_catalog, spec_from_dict
from ingest.load import load_sources
from ingest.readers import read_source
from tests.conftest import ROOT, bars_spec


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_bundled_catalog_is_valid_and_points_at_real_files():
    specs = load_catalog(ROOT / "data" / "sources.yaml")
    assert len(specs) >= 14
    assert all(s.path.is_file() for s in specs), [str(s.path) for s in specs if not s.path.is_file()]
    assert {s.asset_class for s in specs if s.table == "bars"} == {"equities", "crypto", "fx"}


def test_epoch_seconds_and_milliseconds_are_both_read(tmp_path):
    path = _write(tmp_path, "epoch.csv", "ts,symbol,open,high,low,close,volume\n"
                  "1704067200,A,1,2,0.5,1,1\n1704070800000,A,1,2,0.5,1,1\n")
    frame = read_source(bars_spec(path, ts_format="epoch")).frame
    assert list(frame.ts) == list(pd.to_datetime(["2024-01-01 00:00", "2024-01-01 01:00"], utc=True))


def test_day_first_timestamps_with_milliseconds(tmp_path):
    path = _write(tmp_path, "eurusd.csv", "Time,Open,High,Low,Close,Volume\n01.02.2017 22:00:00.000,1,2,0.5,1,5\n")
    spec = bars_spec(path, columns={"ts": "Time", "open": "Open", "high": "High", "low": "Low", "close": "Close",
                                    "volume": "Volume"}, constants={"symbol": "EURUSD"},
                     ts_format="%d.%m.%Y %H:%M:%S.%f")
    frame = read_source(spec).frame
    assert frame.ts.iloc[0] == pd.Timestamp("2017-02-01 22:00", tz="UTC")
    assert frame.symbol.iloc[0] == "EURUSD"


def test_tz_aware_values_keep_their_offset_and_naive_ones_use_the_source_zone(tmp_path):
    path = _write(tmp_path, "tz.csv", "ts,symbol,open,high,low,close,volume\n"
                  "2020-06-05 10:30:00-04:00,A,1,2,0.5,1,1\n2019-11-05 09:30:00,SPX,1,2,0.5,1,1\n"
                  "2019-11-05 09:30:00,SPY,1,2,0.5,1,1\n")
    frame = read_source(bars_spec(path, timezone_by_symbol={"SPX": "America/New_York"})).frame
    assert list(frame.ts) == list(pd.to_datetime(["2020-06-05 14:30", "2019-11-05 14:30", "2019-11-05 09:30"],
                                                 utc=True))


def test_date_only_news_is_stamped_at_the_end_of_its_day(tmp_path):
    path = _write(tmp_path, "news.csv", "Date,News\n2016-07-01,Something happened\n")
    spec = spec_from_dict({"name": "n", "path": str(path), "table": "news_events",
                           "columns": {"ts": "Date", "headline": "News"}, "default_time": "23:59:59"}, tmp_path)
    frame = read_source(spec).frame
    assert frame.ts.iloc[0] == pd.Timestamp("2016-07-01 23:59:59", tz="UTC")
    assert frame.symbol.isna().all()


def test_missing_value_marker_becomes_null_not_an_error(tmp_path):
    path = _write(tmp_path, "mp1.csv", "Date,MP1,Unscheduled\n2/8/1990,-0.014,0\n9/16/2020,1.00E+10,1\n")
    spec = spec_from_dict({"name": "m", "path": str(path), "table": "macro_events", "ts_format": "%m/%d/%Y",
                           "columns": {"ts": "Date", "policy_surprise": "MP1", "unscheduled": "Unscheduled"},
                           "constants": {"event_type": "FOMC Meeting"}, "na_values": ["1.00E+10"],
                           "timezone": "America/New_York", "default_time": "14:15"}, tmp_path)
    loaded = load_sources([spec], "macro_events")
    acc = loaded.split.accepted
    assert len(acc) == 2 and loaded.split.quarantined.empty
    assert acc.policy_surprise.iloc[0] == -0.014 and pd.isna(acc.policy_surprise.iloc[1])
    assert list(acc.scheduled) == [None, False]  # Unscheduled=0 is not a scheduled meeting: unknown
    assert acc.ts.iloc[0] == pd.Timestamp("1990-02-08 19:15", tz="UTC")  # 14:15 EST


def test_wide_file_without_dates_gets_a_business_day_calendar(tmp_path):
    path = tmp_path / "rates.txt.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("0.78,1.61\n0.79,1.62\n0.80,1.63\n")
    spec = spec_from_dict({"name": "w", "path": str(path), "table": "bars", "asset_class": "fx", "freq": "1d",
                           "header": False, "layout": "wide",
                           "wide": {"symbols": ["AUDUSD", "GBPUSD"], "value": "close", "start": "1990-01-05",
                                    "index_freq": "B"}}, tmp_path)
    loaded = load_sources([spec], "bars")
    acc = loaded.split.accepted.sort_values(["symbol", "ts"])
    assert loaded.results[0].rows_read == 6 and len(acc) == 6
    assert list(acc[acc.symbol == "GBPUSD"].close) == [1.61, 1.62, 1.63]
    # Friday 1990-01-05, then Monday and Tuesday: weekends skipped
    assert list(acc[acc.symbol == "AUDUSD"].ts.dt.day) == [5, 8, 9]
    assert (acc.open == acc.close).all() and (acc.high == acc.close).all()


def test_newest_first_file_loads_every_row(tmp_path):
    path = _write(tmp_path, "djia.csv", "Date,Open,High,Low,Close,Volume\n2016-07-01,3,4,2,3,1\n2016-06-30,2,3,1,2,1\n")
    spec = bars_spec(path, columns={"ts": "Date", "open": "Open", "high": "High", "low": "Low", "close": "Close",
                                    "volume": "Volume"}, constants={"symbol": "DJIA"}, order="newest_first")
    loaded = load_sources([spec], "bars")
    assert len(loaded.split.accepted) == 2 and loaded.split.quarantined.empty


@pytest.mark.parametrize("entry,message", [
    ({"name": "x", "path": "f.csv", "table": "bars", "asset_class": "stocks", "freq": "1d"}, "asset_class must be"),
    ({"name": "x", "path": "f.csv", "table": "bars", "asset_class": "fx", "freq": "2d"}, "freq must be"),
    ({"name": "x", "path": "f.csv", "table": "prices"}, "table 'prices' is not one of"),
    ({"name": "x", "table": "bars"}, "field 'path' is required"),
    ({"name": "x", "path": "f.csv", "table": "bars", "colums": {}}, "unknown field(s) ['colums']"),
])
def test_catalog_errors_name_the_entry_and_field(tmp_path, entry, message):
    with pytest.raises(CatalogError, match="source 'x'") as err:
        spec_from_dict(entry, tmp_path)
    assert message in str(err.value)
