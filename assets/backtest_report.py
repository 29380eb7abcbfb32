"""`backtest_report`: the walk-forward backtest of every strategy of a class after costs, beside buy-and-hold, the
same strategies on the naive forecasts, and perfect foresight (DuckDB `backtest_results`, MLflow, plots)."""

import dagster as dg

from assets.common import DUCKDB_POOL, OWNERS, asset_class_partitions, png_markdown
from assets.signals import signals
from resources import ModelRegistry, Warehouse

TABLE_COLUMNS = ["strategy", "source", "ann_return", "ann_vol", "sharpe", "sortino", "max_drawdown", "turnover",
                 "hit_rate", "cost_drag"]


@dg.asset(
    partitions_def=asset_class_partitions,
    deps=[signals],
    group_name="evaluation",
    kinds={"duckdb", "mlflow"},
    owners=OWNERS,
    pool=DUCKDB_POOL,
    description=(
        "Walk-forward backtest over the champions' test bars of the class: an equal sleeve per symbol rebalanced "
        "each bar to its `signals` position, costs and slippage in bps per unit turnover. Per strategy and "
        "forecast source (champion, naive, EWMA, window mean, perfect foresight) and buy-and-hold on the same bars: "
        "annualised return and vol, Sharpe, Sortino, max drawdown, turnover, hit rate, the return costs took "
        "(empyrical-reloaded statistics). DuckDB `backtest_results`, an MLflow run in `tradecast-backtests`, equity "
        "curves and drawdowns on the page. A strategy that loses to buy-and-hold is a result, not a failure."),
)
def backtest_report(context: dg.AssetExecutionContext, warehouse: Warehouse,
                    registry: ModelRegistry) -> dg.MaterializeResult:
    import json

    import pandas as pd

    from domain.vocabulary import BARS_PER_YEAR, BUY_AND_HOLD, CHAMPION_SOURCE, CLOSE
    from storage.duck import replace_where
    from storage.queries import read_frame
    from trading.plots import plot_equity
    from trading.signals import SignalParams
    from trading.strategies import run_backtest

    asset_class = context.partition_key
    rows = warehouse.query("SELECT strategy, source, symbol AS unique_id, ds, position, params, vol_version, "
                           "close_version FROM signals WHERE asset_class = ? AND period = 'test'", [asset_class])
    if rows.empty:
        raise dg.Failure(f"signals[{asset_class}] is empty: materialize signals first")
    params = SignalParams(**json.loads(rows.params.iloc[0]))
    closes = read_frame(warehouse.query, asset_class, CLOSE)
    table, pnls = run_backtest(rows, closes, bars_per_year=BARS_PER_YEAR[asset_class], params=params)
    vol_version, close_version = rows.vol_version.iloc[0], rows.close_version.iloc[0]
    title = f"Backtest {asset_class}: after {params.cost_bps + params.slippage_bps:g} bps per unit turnover"
    shown = table[TABLE_COLUMNS].round(4)
    markdown = f"## {title}\n\n" + shown.to_markdown(index=False)
    plot = plot_equity(pnls, title=title)
    champion = table[table.source == CHAMPION_SOURCE].set_index("strategy")
    hold = table[table.strategy == BUY_AND_HOLD].iloc[0]
    beats = [s for s, r in champion.iterrows() if r.sharpe > hold.sharpe]
    run_id = registry.log_backtest(
        run_name=f"{context.run_id[:8]}-{asset_class}",
        params={**params.__dict__, "asset_class": asset_class, "vol_version": vol_version,
                "close_version": close_version},
        metrics={f"{r.strategy}.{r.source}.{m}": r[m] for _, r in table.iterrows()
                 for m in ("sharpe", "ann_return", "max_drawdown")},
        tags={"asset_class": asset_class, "dagster_run_id": context.run_id},
        files={"backtest.md": markdown, "backtest.png": plot, "backtest.json": table.to_json(orient="records",
                                                                                              date_format="iso")})
    now = pd.Timestamp.now(tz="UTC")
    with warehouse.transaction() as con:
        replace_where(con, "backtest_results", table.assign(
            asset_class=asset_class, cost_bps=params.cost_bps, slippage_bps=params.slippage_bps,
            vol_version=vol_version, close_version=close_version, mlflow_run_id=run_id, run_id=context.run_id,
            computed_at=now), {"asset_class": asset_class})
    return dg.MaterializeResult(metadata={
        "dagster/row_count": dg.MetadataValue.int(len(table)),
        "mlflow_run_id": run_id,
        "test_bars": f"{table.start_ds.min()} .. {table.end_ds.max()} ({int(hold.n_bars)} bars)",
        "buy_and_hold_sharpe": float(hold.sharpe),
        "champion_strategies_beating_buy_and_hold": ", ".join(beats) or "none",
        "report": dg.MetadataValue.md(markdown),
        "equity_plot": png_markdown(plot, f"{asset_class} equity"),
    })
