"""`signals` and `backtest_report` on a real instance, DuckDB file and MLflow registry: the champions of fx close
and volatility (trained on smooth cycles), their positions from the stored rolling-origin forecasts, and the
backtest table beside buy-and-hold, in DuckDB, MLflow and on the asset page."""

import json

import numpy as np
import pytest

from tests.assets.test_training import FAST, _materialize_model, _registry, _sine_frame
from tests.conftest import warehouse_query


def _materialize(assets, asset_class="fx", run_config=None):
    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.instance import ensure_dagster_home

    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        return dg.materialize(assets, partition_key=asset_class, instance=instance, resources=defs.resources,
                              run_config=run_config or {})


@pytest.mark.slow
def test_signals_and_backtest_report_from_the_champions_forecasts(home):
    from assets.backtest_report import backtest_report
    from assets.signals import signals
    from resources import Settings, Warehouse
    from storage.duck import replace_where
    from storage.queries import champion_points, read_frame
    from trading.signals import SignalParams
    from trading.strategies import ChampionForecasts, build_signals

    close = _sine_frame(n_series=3, length=400)
    vol = close.assign(y=lambda f: 0.01 + 0.004 * np.sin(f.y))  # positive, cyclical per-bar volatility
    with Warehouse(settings=Settings()).transaction() as con:
        for target, frame in (("close", close), ("volatility", vol)):
            replace_where(con, "training_frames", frame.assign(asset_class="fx", target=target),
                          {"asset_class": "fx", "target": target})
    for target in ("close", "volatility"):
        assert _materialize_model("fx", target, max_steps=5, ensemble=False, **FAST).success
    from tests.assets.test_training import _key
    from tests.conftest import run_job

    for target in ("close", "volatility"):
        assert run_job("forecast_job", _key("fx", target)).success
    config = {"target_vol": 0.2, "leverage_cap": 1.5, "cost_bps": 2.0, "slippage_bps": 3.0, "band_multiple": 2.0}
    result = _materialize([signals], run_config={"ops": {"signals": {"config": config}}})
    meta = {k: v.value for k, v in result.asset_materializations_for_node("signals")[0].metadata.items()}
    assert "vol_target" in meta["strategies"] and meta["positions_plot"].startswith("![")

    everything = warehouse_query("SELECT * FROM signals WHERE asset_class = 'fx'")
    stored, nxt = everything[everything.period == "test"], everything[everything.period == "next"]
    # the bar after the data: one row per strategy and symbol, from the champions' current forecasts
    assert len(nxt) == 3 * 3 and set(nxt.source) == {"champion"} and (nxt.ds > stored.ds.max()).all()
    ahead = warehouse_query("SELECT symbol, yhat FROM forecasts WHERE target = 'volatility' AND step = 1")
    vt = nxt[nxt.strategy == "vol_target"].merge(ahead, on="symbol")
    np.testing.assert_allclose(vt.position, np.minimum(0.2 / (vt.yhat * np.sqrt(260)), 1.5), rtol=1e-12)
    registry = _registry()
    vol_champion, close_champion = (registry.alias(f"nhits-fx-{t}", "champion") for t in ("volatility", "close"))
    assert set(stored.vol_version) == {vol_champion.version} and set(stored.close_version) == {close_champion.version}
    assert json.loads(stored.params.iloc[0]) == config and (stored.cutoff < stored.ds).all()
    assert stored.position.abs().max() <= 1.5 + 1e-12
    # the stored positions are the plain rule applied to the stored rolling-origin forecasts
    query = warehouse_query
    fc = ChampionForecasts(*champion_points(query, "nhits-fx-volatility", vol_champion),
                           *champion_points(query, "nhits-fx-close", close_champion))
    again = build_signals(fc, read_frame(query, "fx", "close"), bars_per_year=260, params=SignalParams(**config))
    merged = stored.rename(columns={"symbol": "unique_id"}).merge(
        again.rows, on=["strategy", "source", "unique_id", "ds"], suffixes=("", "_again"))
    assert len(merged) == len(stored) == len(again.rows)
    np.testing.assert_allclose(merged.position, merged.position_again, atol=1e-12)

    report = _materialize([backtest_report])
    meta = {k: v.value for k, v in report.asset_materializations_for_node("backtest_report")[0].metadata.items()}
    table = warehouse_query("SELECT * FROM backtest_results WHERE asset_class = 'fx'")
    assert {"buy_and_hold", "vol_target", "vol_target_directional", "direction"} == set(table.strategy)
    assert {"champion", "naive", "perfect_foresight"} <= set(table.source)
    assert len(set(table.n_bars)) == 1 and (table.cost_bps == 2.0).all() and (table.slippage_bps == 3.0).all()
    assert meta["equity_plot"].startswith("![") and "| strategy" in meta["report"]
    run = registry.client().get_run(meta["mlflow_run_id"])
    hold = table[table.strategy == "buy_and_hold"].iloc[0]
    assert run.data.metrics["buy_and_hold.buy_and_hold.sharpe"] == pytest.approx(hold.sharpe)
    assert set(table.mlflow_run_id) == {meta["mlflow_run_id"]}
