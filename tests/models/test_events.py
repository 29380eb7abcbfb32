"""models.events.features / event_online / event_report: feature values, no look-ahead, online == batch, coverage."""

from __future__ import annotations

import functools
import time

import numpy as np
import pandas as pd
import pytest

from models.events.features import event_features, future_rows
from models.events.online import OnlineEventFeatures
from models.events.report import coverage_by_source, coverage_by_symbol, coverage_summary
from models.events.spec import FEATURE_COLUMNS, NEUTRAL, calendar_for, exog_columns
from models.frames import to_training_frame
from tests.models.sample_bars import equity_bars


def _ts(values):
    return pd.to_datetime(values, utc=True, format="ISO8601")


def _hand():
    """Two symbols on business days 2024-01-01 (Mon) .. 01-12; only AAA has news."""
    ds = pd.bdate_range("2024-01-01", "2024-01-12")
    grid = pd.concat([pd.DataFrame({"unique_id": u, "ds": ds}) for u in ("AAA", "ZZZ")], ignore_index=True)
    news = pd.DataFrame({
        "ts": _ts(["2024-01-02 10:00", "2024-01-02 23:59:59", "2024-01-03 00:00", "2024-01-06 12:00",
                   "2024-01-04 23:59:59"]),
        "symbol": ["AAA", "AAA", "AAA", "AAA", None], "sentiment": [0.5, -0.3, 1.0, -0.8, 0.2],
        "source": ["tweets"] * 4 + ["reddit"]})
    macro = pd.DataFrame({"ts": _ts(["2024-01-10 19:15", "2024-01-10 19:15", "2024-01-11 15:00"]),
                          "event_type": ["FOMC Meeting", "FOMC Statement", "FOMC Meeting"],
                          "scheduled": [True, True, False], "policy_surprise": [0.05, None, -0.02]})
    return grid, news, macro


def _row(feats, uid, day):
    return feats[(feats.unique_id == uid) & (feats.ds == pd.Timestamp(day))].iloc[0]


def test_feature_values_on_a_hand_made_event_stream() -> None:
    grid, news, macro = _hand()
    f = event_features(grid, news, macro, "B")
    assert list(f.columns) == ["unique_id", "ds", *FEATURE_COLUMNS] and len(f) == len(grid)
    # Jan 1: nothing before its origin (Jan 2 00:00)
    assert _row(f, "AAA", "2024-01-01")[FEATURE_COLUMNS].to_dict() == NEUTRAL
    # Jan 2 covers [Jan 2, Jan 3): the 10:00 tweet and the 23:59:59 day-stamped one, not the one at Jan 3 00:00
    jan2 = _row(f, "AAA", "2024-01-02")
    assert jan2.news_logn_short == pytest.approx(np.log1p(2)) and jan2.news_sent_mean_short == pytest.approx(0.1)
    assert (jan2.news_sent_min_short, jan2.news_sent_max_short) == (-0.3, 0.5)
    assert jan2.news_age == pytest.approx(np.log1p(1 / 86400) / np.log1p(30))  # 1 s before the origin
    jan3 = _row(f, "AAA", "2024-01-03")
    assert jan3.news_logn_short == pytest.approx(np.log1p(1)) and jan3.news_sent_mean_short == 1.0
    assert jan3.news_logn_long == pytest.approx(np.log1p(3)) and jan3.news_sent_mean_long == pytest.approx(0.4)
    jan4 = _row(f, "AAA", "2024-01-04")
    assert jan4.news_logn_short == 0 and jan4.news_age == pytest.approx(np.log1p(2) / np.log1p(30))
    assert jan4.mkt_logn_short == pytest.approx(np.log1p(1)) and jan4.mkt_sent_mean_short == pytest.approx(0.2)
    # Monday's short window starts after Friday's bar: the Saturday tweet lands on Monday
    mon = _row(f, "AAA", "2024-01-08")
    assert mon.news_sent_mean_short == -0.8 and mon.news_logn_long == pytest.approx(np.log1p(4))
    assert mon.news_sent_mean_long == pytest.approx(0.1) and mon.mkt_sent_mean_long == pytest.approx(0.2)
    # FOMC: scheduled meeting day is a future feature, the surprise a historical one; unscheduled: no fomc_day
    assert _row(f, "AAA", "2024-01-10")[["fomc_day", "fomc_surprise"]].tolist() == [1.0, 0.05]
    assert _row(f, "AAA", "2024-01-11")[["fomc_day", "fomc_surprise"]].tolist() == [0.0, -0.02]
    assert _row(f, "AAA", "2024-01-09").fomc_day == 0
    # market-wide news and FOMC join every symbol; ticker news only its own
    both = f.set_index(["ds", "unique_id"])
    for col in ("mkt_logn_short", "mkt_sent_mean_long", "fomc_day", "fomc_surprise"):
        assert (both.xs("AAA", level=1)[col] == both.xs("ZZZ", level=1)[col]).all()


def test_symbol_without_news_gets_neutral_values_never_nan() -> None:
    grid, news, macro = _hand()
    f = event_features(grid, news, macro, "B")
    assert not f[FEATURE_COLUMNS].isna().any().any()
    zzz = f[f.unique_id == "ZZZ"]
    for col in [c for c in FEATURE_COLUMNS if c.startswith("news_")]:
        assert (zzz[col] == NEUTRAL[col]).all(), col
    assert (zzz.news_age == 1.0).all()
    empty = event_features(grid, news.iloc[:0], None, "B")  # no events at all
    assert (empty[FEATURE_COLUMNS] == pd.Series(NEUTRAL)).all().all()


def test_online_updater_on_the_hand_made_stream() -> None:
    grid, news, macro = _hand()
    batch = event_features(grid, news, macro, "B")
    for state in (OnlineEventFeatures.from_events("B", news, macro), OnlineEventFeatures("B", macro)):
        if not state._t:  # the second one gets the events one by one, newest first
            for ev in news.iloc[::-1].itertuples():
                state.add(ev.ts, ev.sentiment, ev.symbol)
        got = [state.vector(r.unique_id, r.ds) for r in batch.itertuples()]
        np.testing.assert_allclose(got, batch[FEATURE_COLUMNS].to_numpy(float), atol=1e-12)
    now = state.update("2024-01-12 09:00", -0.5, None, bar_ts="2024-01-12", for_symbol="ZZZ")
    assert now["mkt_sent_mean_short"] == -0.5 and now["news_age"] == 1.0
    with pytest.raises(ValueError, match="not a number in"):
        state.add("2024-01-12 10:00", float("nan"), "AAA")


def test_bad_input_names_row_and_field() -> None:
    grid, news, _ = _hand()
    bad = news.copy()
    bad.loc[3, "sentiment"] = 1.5
    with pytest.raises(ValueError, match=r"news_events row 3: sentiment '1.5'"):
        event_features(grid, bad, None, "B")
    with pytest.raises(ValueError, match="missing column"):
        event_features(grid, news.drop(columns="sentiment"), None, "B")
    with pytest.raises(ValueError, match="short <= long"):
        calendar_for("B", short=6)
    with pytest.raises(ValueError, match="no event calendar"):
        calendar_for("W")
    with pytest.raises(ValueError, match="event group"):
        exog_columns("weather")


@functools.lru_cache(maxsize=1)
def real_events() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Real data, read and validated like `news_events` / `macro_events`: the first 3000 rows of each news source
    (AAPL tweets Jan-May 2014, r/worldnews Mar-Jul 2016, analyst ratings of A, AAP, ABBV, ...), the FOMC files."""
    from ingest.catalog import load_catalog, select
    from ingest.load import load_sources
    from storage.home import PROJECT_ROOT

    specs = load_catalog(PROJECT_ROOT / "data" / "sources.yaml")
    news = load_sources(select(specs, "news_events"), "news_events", 3000).split.accepted
    macro = load_sources(select(specs, "macro_events"), "macro_events").split.accepted
    return news, macro


@pytest.fixture(scope="module")
def real_slice():
    """S&P daily bars of the first 4 tickers (AAL, AAP, AAPL, ABBV) as a grid, with the real event slice."""
    grid = to_training_frame(equity_bars(n_tickers=4), "equities", "close", min_length=1)[["unique_id", "ds"]]
    return (grid, *real_events())


def test_planted_future_event_changes_no_earlier_bar(real_slice) -> None:
    grid, news, macro = real_slice
    before = event_features(grid, news, macro, "B")
    t = pd.Timestamp("2015-06-10 12:00", tz="UTC")  # inside the bar of June 10 (origin June 11 00:00)
    planted = pd.concat([news, pd.DataFrame({"ts": [t, t, pd.Timestamp("2015-06-11", tz="UTC")],
                                             "symbol": ["AAPL", None, "AAP"], "sentiment": [-0.9, 0.7, 0.4],
                                             "source": "planted"})], ignore_index=True)
    macro_planted = pd.concat([macro, pd.DataFrame({"ts": [t], "event_type": ["FOMC Meeting"], "scheduled": [False],
                                                    "policy_surprise": [0.3]})], ignore_index=True)
    after = event_features(grid, planted, macro_planted, "B")
    earlier = before.ds < pd.Timestamp("2015-06-10")
    pd.testing.assert_frame_equal(before[earlier], after[earlier])
    changed = (before[FEATURE_COLUMNS] != after[FEATURE_COLUMNS]).any(axis=1)
    assert changed[before.ds == pd.Timestamp("2015-06-10")].all()  # the event's own bar sees it (every symbol)
    first = after.loc[changed].groupby("unique_id").ds.min()
    assert (first >= pd.Timestamp("2015-06-10")).all()
    # the event at exactly June 11 00:00 (the origin of AAP's June 10 bar) belongs to June 11, strictly
    a10, a11 = _row(after, "AAP", "2015-06-10"), _row(after, "AAP", "2015-06-11")
    assert a10.news_logn_short == _row(before, "AAP", "2015-06-10").news_logn_short
    assert a11.news_logn_short > _row(before, "AAP", "2015-06-11").news_logn_short


def test_online_updater_equals_batch_and_is_fast(real_slice) -> None:
    grid, news, macro = real_slice
    window = grid[(grid.ds >= "2014-01-01") & (grid.ds < "2014-03-01")]
    batch = event_features(window, news, macro, "B")
    # the slice runs to 2020 (analyst ratings): keep everything to answer about 2014 (default: the last 7 days)
    online = OnlineEventFeatures("B", macro, retention=pd.Timedelta(days=10_000))
    shuffled = news.sample(frac=1.0, random_state=0)  # arrival order must not matter
    for ev in shuffled.itertuples():
        online.add(ev.ts, ev.sentiment, ev.symbol)
    got = pd.DataFrame([online.features(r.unique_id, r.ds) for r in batch.itertuples()])[FEATURE_COLUMNS]
    np.testing.assert_allclose(got.to_numpy(), batch[FEATURE_COLUMNS].to_numpy(), rtol=0, atol=1e-9)
    # warmed in one pass from a table (the service's start-up), answering about the bars near its newest event
    recent = news[pd.to_datetime(news.ts, utc=True) < pd.Timestamp("2014-03-01", tz="UTC")]
    warm = OnlineEventFeatures.from_events("B", recent, macro)
    last = batch[batch.ds >= "2014-02-20"]
    np.testing.assert_allclose([warm.vector(r.unique_id, r.ds) for r in last.itertuples()],
                               last[FEATURE_COLUMNS].to_numpy(float), atol=1e-9)
    assert (batch.news_logn_short > 0).any() and (batch.fomc_day > 0).any()  # the slice exercises the features
    # streaming: bar by bar, each bar answered once the events before its origin have arrived
    stream = OnlineEventFeatures("B", macro)
    aapl = batch[batch.unique_id == "AAPL"].reset_index(drop=True)
    events = news.sort_values("ts").reset_index(drop=True)
    i, timings = 0, []
    for bar in aapl.itertuples():
        origin = pd.Timestamp(bar.ds, tz="UTC") + pd.Timedelta("1D")
        while i < len(events) and events.ts[i] < origin:
            start = time.perf_counter()
            stream.update(events.ts[i], events.sentiment[i], events.symbol[i], bar_ts=bar.ds, for_symbol="AAPL")
            timings.append(time.perf_counter() - start)
            i += 1
        np.testing.assert_allclose(stream.vector("AAPL", bar.ds), aapl.loc[bar.Index, FEATURE_COLUMNS].to_numpy(float),
                                   atol=1e-9)
    assert np.median(timings) < 0.005, f"median update {np.median(timings) * 1e3:.2f} ms"


def test_future_rows_carry_the_known_fomc_schedule() -> None:
    grid, _, macro = _hand()
    fut = future_rows(grid[grid.ds <= "2024-01-08"], 3, "B", macro, ["fomc_day"])
    assert fut.groupby("unique_id").ds.apply(list)["AAA"] == list(pd.bdate_range("2024-01-09", periods=3))
    assert fut.y.isna().all() and fut.set_index("ds").fomc_day.groupby(level=0).max().tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="not a future exogenous"):
        future_rows(grid, 3, "B", macro, ["news_logn_short"])


def test_coverage_tables() -> None:
    grid, news, macro = _hand()
    f = event_features(grid, news, macro, "B")
    summary = coverage_summary(f)
    assert summary["bars"] == 20 and summary["symbols_with_news"] == 1
    assert summary["share_ticker_news"] == pytest.approx(3 / 20)  # AAA's Jan 2, Jan 3 and Jan 8
    assert summary["share_market_news"] == pytest.approx(2 / 20)  # Jan 4 for both symbols
    by_source = coverage_by_source(grid, news, "B").set_index("source")
    assert by_source.loc["tweets", "bars_covered"] == 3 and by_source.loc["tweets", "scope"] == "ticker"
    assert by_source.loc["reddit", "scope"] == "market-wide" and by_source.loc["reddit", "symbols_covered"] == 2
    assert by_source.loc["tweets", "share_of_their_symbols_bars"] == pytest.approx(0.3)
    assert coverage_by_symbol(f).symbol.tolist() == ["AAA", "ZZZ"]


def test_event_features_table_has_every_feature_column() -> None:
    from storage.duck import connect
    from storage.schema import COLUMNS

    con = connect(":memory:")
    names = con.execute("SELECT name FROM pragma_table_info('event_features')").df().name.tolist()
    assert names == COLUMNS["event_features"] == ["asset_class", "symbol", "ds", "freq", *FEATURE_COLUMNS]


def test_fomc_day_takes_the_schedule_from_the_actions_file_only() -> None:
    """Real FOMC files through the catalog readers: the MP1 file's dates that the actions file does not mark as
    scheduled meetings (open-market-operation days of 1990-91, the unscheduled meeting of 1992-07-02) are no
    fomc_day, in the batch features, the future rows and the online state; the policy surprise stays MP1's."""
    from storage.home import PROJECT_ROOT

    _, macro = real_events()
    assert not macro[macro.source == "fomc_policy_surprise"].scheduled.eq(True).any()  # MP1 carries no schedule
    actions = pd.read_csv(PROJECT_ROOT / "data" / "events" / "fomc_actions_clean.csv")
    scheduled = set(pd.to_datetime(actions.Date[actions["Scheduled FOMC"] == 1], format="%m/%d/%Y"))
    mp1 = pd.read_csv(PROJECT_ROOT / "data" / "events" / "fomc_dates_mp1.csv")
    mp1_days = pd.to_datetime(mp1.Date, format="%m/%d/%Y")
    not_scheduled = sorted(set(mp1_days[mp1.Unscheduled == 0]) - scheduled)  # "not unscheduled" in MP1 only
    assert pd.Timestamp("1990-02-08") in not_scheduled and pd.Timestamp("1992-07-02") in not_scheduled
    grid = pd.DataFrame({"unique_id": "X", "ds": pd.bdate_range("1990-01-01", "2020-12-31")})
    f = event_features(grid, pd.DataFrame({"ts": [], "sentiment": []}), macro, "B").set_index("ds")
    assert set(f.index[f.fomc_day == 1]) == scheduled  # every scheduled meeting (all on weekdays), nothing else
    assert (f.loc[not_scheduled, "fomc_day"] == 0).all() and len(not_scheduled) == 10
    assert f.loc[["1990-02-08", "1992-07-02"], "fomc_surprise"].tolist() == pytest.approx([-0.014, -0.08552])
    fut = future_rows(grid[grid.ds <= "1992-06-30"], 3, "B", macro, ["fomc_day"])  # Jul 1, 2 (unscheduled), 3
    assert fut.fomc_day.tolist() == [0.0, 0.0, 0.0]
    fut = future_rows(grid[grid.ds <= "1990-12-14"], 3, "B", macro, ["fomc_day"])  # Dec 17, 18 (scheduled), 19
    assert fut.fomc_day.tolist() == [0.0, 1.0, 0.0]
    online = OnlineEventFeatures("B", macro)
    assert [online.features(None, d)["fomc_day"] for d in ("1990-02-08", "1992-07-02", "1990-12-18")] == [0, 0, 1]
