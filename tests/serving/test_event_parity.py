"""Served event features equal the batch ``event_features`` rows of the same bars (issue 13, defect 5), for a daily
class whose input window (365 bars) reaches far beyond 30 days: the service warms its news state from the
warehouse (real jobs on the bundled equities bars, news and FOMC files), and late headlines are folded into
every row they change, or refused, never written into the newest row with an earlier window."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from models.events.spec import FEATURE_COLUMNS
from tests.conftest import run_job

L = 365  # a daily model's input window


@pytest.fixture(scope="module")
def daily(tmp_path_factory):
    """A real warehouse: equities bars, news, FOMC events and the ``event_features`` table from the real jobs, and
    the class's training frame (the training_frames asset's code) that the service warms from."""
    from models.frames import to_training_frame
    from resources import Settings, Warehouse
    from storage.duck import replace_where

    home = tmp_path_factory.mktemp("parity") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRADECAST_HOME", str(home))
        mp.setenv("DAGSTER_HOME", str(home / "dagster_home"))
        mp.delenv("TRADECAST_CATALOG", raising=False)
        assert run_job("ingest_job", "equities", max_rows=3000, assets=["market_bars"]).success
        assert run_job("events_job", max_rows=3000, assets=["news_events", "macro_events"]).success
        assert run_job("event_features_job", "equities").success
        warehouse = Warehouse(settings=Settings())
        bars = warehouse.query("SELECT * FROM bars WHERE asset_class = 'equities' ORDER BY symbol, freq, ts")
        frame = to_training_frame(bars, "equities", "close", min_length=L)
        with warehouse.transaction() as con:
            replace_where(con, "training_frames", frame.assign(asset_class="equities", target="close"),
                          {"asset_class": "equities", "target": "close"})
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    table = con.execute("SELECT * FROM event_features WHERE asset_class = 'equities'").df()
    news = con.execute("SELECT ts, symbol, sentiment FROM news_events").df()
    news["ts"] = pd.to_datetime(news.ts, utc=True)
    macro = con.execute("SELECT * FROM macro_events").df()
    window = frame.groupby("unique_id", group_keys=False).tail(L)[["unique_id", "ds"]].reset_index(drop=True)
    yield con, table.rename(columns={"symbol": "unique_id"}), window, news, macro
    con.close()


def _served(exog, symbol: str) -> np.ndarray:
    return exog.rows[symbol][exog.pos[symbol]:exog.pos[symbol] + exog.input_size].astype(float)


def _batch(table: pd.DataFrame, window: pd.DataFrame, symbol: str) -> np.ndarray:
    rows = window[window.unique_id == symbol].merge(table, on=["unique_id", "ds"], how="left")
    assert not rows[FEATURE_COLUMNS].isna().any().any()
    return rows[FEATURE_COLUMNS].to_numpy(float)


def _warmed(con, window: pd.DataFrame, hold_back: int = 0):
    """The service's event state for a 365-bar daily model, its window loaded (less the last ``hold_back`` bars,
    which then come one by one as live bars)."""
    from serving.exog import ExogBuffers

    exog = ExogBuffers.from_warehouse(con, "equities", "close", "B", L)
    behind = window.groupby("unique_id").cumcount(ascending=False)  # 0 = a symbol's newest bar
    exog.load(window[behind >= hold_back])
    for row in window[behind < hold_back].sort_values("ds", kind="stable").itertuples():
        exog.on_bar(row.unique_id, pd.Timestamp(row.ds, tz="UTC").timestamp())
    return exog


def test_served_rows_equal_the_event_features_table_over_the_whole_input_window(daily) -> None:
    con, table, window, _, _ = daily
    exog = _warmed(con, window, hold_back=3)
    assert set(exog.rows) == set(window.unique_id) and len(exog.rows) >= 3
    for symbol in exog.rows:
        np.testing.assert_allclose(_served(exog, symbol), _batch(table, window, symbol), rtol=0, atol=2e-6,
                                   err_msg=symbol)
    # the check has teeth: DJIA's window (to 2016-07-01) holds market-wide headlines from months before its last
    # bar, long before 30 days ahead of the class's newest bar (2018), so a 30-day warm-up serves them neutral
    djia = _batch(table, window, "DJIA")
    ds = window[window.unique_id == "DJIA"].ds.to_numpy()
    old = ds < ds[-1] - np.timedelta64(30, "D")
    assert (djia[old, FEATURE_COLUMNS.index("mkt_logn_long")] > 0).sum() > 30


def test_a_late_headline_is_folded_into_every_row_it_changes(daily) -> None:
    from models.events.features import event_features

    con, _, window, news, macro = daily
    exog = _warmed(con, window)
    grid = window[window.unique_id == "AAPL"]
    before = _served(exog, "AAPL")
    late = pd.Timestamp(grid.ds.iloc[-4]) + pd.Timedelta(hours=15)  # in the bar 3 bars before the newest
    assert exog.on_event(late, 0.8, "AAPL", list(exog.rows)) == ["AAPL"]
    headline = pd.DataFrame({"ts": [late.tz_localize("UTC")], "symbol": ["AAPL"], "sentiment": [0.8]})
    want = event_features(grid, pd.concat([news, headline], ignore_index=True), macro, "B")[FEATURE_COLUMNS]
    got = _served(exog, "AAPL")
    np.testing.assert_allclose(got, want.to_numpy(float), rtol=0, atol=2e-6)
    assert (got[-4:] != before[-4:]).any(axis=1).all() and np.array_equal(got[:-4], before[:-4])
    # the newest row keeps its own window: news_age counts from its origin, days after the headline, not 1 us
    bars_since = (pd.Timestamp(grid.ds.iloc[-1]) + pd.Timedelta(days=1) - late) / pd.Timedelta(days=1)
    assert bars_since > 3 and got[-1, FEATURE_COLUMNS.index("news_age")] == pytest.approx(
        np.log1p(bars_since) / np.log1p(30), abs=1e-6)

    # a headline after the newest row's close moves that row to "now"; the next bar gives it its own window back
    later = pd.Timestamp(grid.ds.iloc[-1]) + pd.Timedelta(days=1, hours=3)
    exog.on_event(later, -0.5, "AAPL", list(exog.rows))
    short = FEATURE_COLUMNS.index("news_logn_short")
    assert got[-1, short] == 0 and _served(exog, "AAPL")[-1, short] > 0
    nxt = pd.Timestamp(grid.ds.iloc[-1]) + pd.offsets.BDay(1)
    exog.on_bar("AAPL", nxt.tz_localize("UTC").timestamp())
    both = pd.concat([news, headline, pd.DataFrame({"ts": [later.tz_localize("UTC")], "symbol": ["AAPL"],
                                                    "sentiment": [-0.5]})], ignore_index=True)
    grid2 = pd.concat([grid, pd.DataFrame({"unique_id": ["AAPL"], "ds": [nxt]})], ignore_index=True)
    want2 = event_features(grid2, both, macro, "B")[FEATURE_COLUMNS].to_numpy(float)[-L:]
    np.testing.assert_allclose(_served(exog, "AAPL"), want2, rtol=0, atol=2e-6)


def test_a_late_headline_the_state_cannot_recompute_is_refused_and_changes_nothing(daily) -> None:
    from serving.exog import ExogBuffers, LateEvent

    _, _, window, news, macro = daily
    grid = window[window.unique_id == "AAPL"]
    newest = pd.Timestamp(grid.ds.iloc[-1])
    since = (newest - pd.Timedelta(days=10)).tz_localize("UTC")  # a state holding only 10 days of headlines
    recent = news[news.ts >= since]
    exog = ExogBuffers(L, "B", macro, recent, since=since)
    exog.load(grid)
    rows, held = _served(exog, "AAPL").copy(), {k: list(v) for k, v in exog.online._t.items()}
    late = newest - pd.Timedelta(days=2) + pd.Timedelta(hours=12)
    with pytest.raises(LateEvent, match=f"headline at {late}.*newest feature row \\(bar {newest}"):
        exog.on_event(late, 0.5, "AAPL", ["AAPL"])
    assert np.array_equal(_served(exog, "AAPL"), rows) and exog.online._t == held


def test_the_served_future_fomc_flag_takes_the_schedule_from_the_actions_file_only(daily) -> None:
    from serving.exog import ExogBuffers
    from serving.predictor import future_seconds

    _, _, _, _, macro = daily
    exog = ExogBuffers(5, "B", macro)
    exog.load(pd.DataFrame({"unique_id": "X", "ds": pd.bdate_range(end="1992-06-30", periods=5)}))
    origin = pd.Timestamp("1992-06-30", tz="UTC").timestamp()
    days = pd.to_datetime(future_seconds(origin, 3, "B"), unit="s")  # Jul 1, Jul 2 (unscheduled), Jul 3
    ahead = exog.arrays(["X"], [future_seconds(origin, 3, "B")], (), ("fomc_day",))["futr_exog"][0, 5:, 0]
    assert list(days.strftime("%m-%d")) == ["07-01", "07-02", "07-03"] and ahead.tolist() == [0.0, 0.0, 0.0]
    origin = pd.Timestamp("1990-02-07", tz="UTC").timestamp()  # Feb 8 1990: an MP1 date, an OMO day
    assert exog.arrays(["X"], [future_seconds(origin, 1, "B")], (), ("fomc_day",))["futr_exog"][0, 5:, 0] == 0
    origin = pd.Timestamp("1990-12-17", tz="UTC").timestamp()  # Dec 18 1990: scheduled in the actions file
    assert exog.arrays(["X"], [future_seconds(origin, 1, "B")], (), ("fomc_day",))["futr_exog"][0, 5:, 0] == 1
