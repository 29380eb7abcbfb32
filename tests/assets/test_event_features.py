"""`event_features` on a real instance and DuckDB file, and an event-aware NHITS through the promotion gate."""

import numpy as np
import pandas as pd
import pytest

from tests.assets.test_training import FAST, _key, _materialize_model, _registry, _sine_frame
from tests.conftest import run_job, warehouse_query

# 24 test windows: the gate's DM test against statsforecast's AutoARIMA (which fits the cycles well) needs them
WINDOWS = {**FAST, "n_windows": 24}


def test_event_features_asset_writes_duckdb_and_coverage_metadata(home):
    from models.events.spec import FEATURE_COLUMNS, NEUTRAL

    assert run_job("ingest_job", "equities", max_rows=3000, assets=["market_bars"]).success
    assert run_job("events_job", max_rows=3000, assets=["news_events", "macro_events"]).success
    result = run_job("event_features_job", "equities")
    assert result.success
    meta = result.asset_materializations_for_node("event_features")[0].metadata
    table = warehouse_query("SELECT * FROM event_features WHERE asset_class = 'equities'")
    # the daily grid: the 1d bars, and one bar per UTC day of a symbol with intraday bars only (SPY, SPX)
    bars = warehouse_query("""SELECT count(DISTINCT (symbol, date_trunc('day', ts AT TIME ZONE 'UTC'))) AS n FROM bars
                              WHERE asset_class = 'equities' AND (freq = '1d' OR symbol NOT IN (
                                  SELECT symbol FROM bars WHERE asset_class = 'equities' AND freq = '1d'))""").n[0]
    assert len(table) == bars == meta["dagster/row_count"].value
    assert not table[FEATURE_COLUMNS].isna().any().any()
    covered = ((table.news_logn_short > 0) | (table.mkt_logn_short > 0)).mean()
    assert meta["coverage"].value == pytest.approx(covered, abs=1e-6) and 0 < covered < 1
    assert "stocknet_tweets" in meta["coverage_by_source"].value and "| AAPL" in meta["coverage_by_symbol"].value
    assert "data:image/png;base64," in meta["coverage_plot"].value
    quiet = table[table.symbol == "DJIA"]  # an index: no ticker news, market-wide headlines only
    assert len(quiet) and (quiet.news_age == NEUTRAL["news_age"]).all() and (quiet.news_logn_long == 0).all()
    assert (table.fomc_day > 0).any() and (table.fomc_surprise != 0).any()


def _synthetic_events(frame):
    """Real FOMC schedule and surprises; headlines on a fixed pseudo-random sample of the sine series' bars."""
    from ingest.catalog import load_catalog, select
    from ingest.load import load_sources
    from models.events.features import event_features
    from storage.home import PROJECT_ROOT

    macro = load_sources(select(load_catalog(PROJECT_ROOT / "data" / "sources.yaml"), "macro_events"),
                         "macro_events").split.accepted
    rng = np.random.default_rng(1)
    rows = frame.sample(300, random_state=1)
    news = pd.DataFrame({"ts": pd.to_datetime(rows.ds).dt.tz_localize("UTC") + pd.Timedelta("15h"),
                         "symbol": rows.unique_id.to_numpy(), "sentiment": rng.uniform(-1, 1, len(rows)),
                         "source": "synthetic"})
    return event_features(frame, news, macro, "B").rename(columns={"unique_id": "symbol"}), macro


@pytest.mark.slow
def test_event_aware_champion_is_rescored_by_the_gate_and_forecasts(home):
    from resources import Settings, Warehouse
    from storage.duck import replace_where

    name = "nhits-fx-close"
    frame = _sine_frame()
    feats, _ = _synthetic_events(frame)
    with Warehouse(settings=Settings()).transaction() as con:
        replace_where(con, "training_frames", frame.assign(asset_class="fx", target="close"),
                      {"asset_class": "fx", "target": "close"})
        replace_where(con, "event_features", feats.assign(asset_class="fx", freq="B"), {"asset_class": "fx"})

    good = _materialize_model("fx", "close", max_steps=150, use_events=True, mlp_units=[[128, 128]] * 3,
                              ensemble=False, **WINDOWS)
    registry = _registry()
    champion = registry.alias(name, "champion")
    assert champion.tags["features"] == "events" and champion.tags["event_groups"] == "all"
    reasons = warehouse_query("SELECT reason FROM model_promotions").reason.tolist()
    assert champion.tags["model_kind"] == "nhits", reasons
    assert good.asset_materializations_for_node("champion_model")

    # plain, undertrained: the gate re-scores
    plain = _materialize_model("fx", "close", max_steps=1, ensemble=False, **WINDOWS)
    [decided] = plain.asset_materializations_for_node("champion_model")  # the event-aware champion and refuses it
    assert decided.metadata["decision"].value == "refused: champion stays"
    assert registry.alias(name, "champion").version == champion.version
    assert registry.alias(name, "challenger").tags["features"] == "none"
    last = warehouse_query("SELECT * FROM model_promotions ORDER BY decided_at DESC LIMIT 1").iloc[0]
    assert last.decision == "refused" and last.champion_version == str(champion.version)
    stored = warehouse_query("SELECT mase FROM model_evaluations WHERE model_name = ? AND version = ? AND "
                             "model = 'nhits'", [name, str(champion.version)]).mase[0]
    assert last.champion_mase == pytest.approx(stored, rel=1e-4)  # same windows, same features, same score

    assert run_job("forecast_job", _key("fx", "close")).success
    out = warehouse_query("SELECT symbol, ds, step, yhat, model_version FROM forecasts ORDER BY symbol, step")
    assert len(out) == 4 * FAST["h"] and set(out.model_version) == {str(champion.version)}
    assert np.isfinite(out.yhat).all() and (out.groupby("symbol").ds.min() > frame.ds.max()).all()
