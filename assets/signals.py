"""`signals`: target positions per symbol and bar of one asset class, from its champions' rolling-origin forecasts."""

import dagster as dg
from pydantic import Field

from assets.champion_model import champion_model
from assets.common import DUCKDB_POOL, OWNERS, asset_class_partitions, png_markdown
from assets.forecasts import forecasts
from assets.training_frames import training_frames
from domain.vocabulary import (
    CHAMPION,
    CLOSE,
    DIRECTION,
    STRATEGIES,
    VOL_TARGET,
    VOL_TARGET_DIRECTIONAL,
    VOLATILITY,
    model_name,
)
from resources import ModelRegistry, Warehouse

# the class partition reads the (class, target) partitions of its class
BY_CLASS = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="asset_class")


class SignalConfig(dg.Config):
    """Strategy parameters (the backtest reads them from the `signals` rows, so both use the same)."""

    target_vol: float = Field(0.10, gt=0, le=2, description="annualised volatility the position sizing targets")
    leverage_cap: float = Field(2.0, gt=0, le=10, description="largest |position| (1 = fully invested)")
    cost_bps: float = Field(1.0, ge=0, le=500, description="commission per unit turnover, basis points")
    slippage_bps: float = Field(1.0, ge=0, le=500, description="slippage per unit turnover, basis points")
    band_multiple: float = Field(1.0, ge=0, le=100, description=(
        "no-trade band of the direction signal, in round trips' costs: trade only when |expected return| exceeds "
        "it"))

    def params(self):
        from trading.signals import SignalParams

        return SignalParams(target_vol=self.target_vol, leverage_cap=self.leverage_cap, cost_bps=self.cost_bps,
                            slippage_bps=self.slippage_bps, band_multiple=self.band_multiple)


def champion_forecasts(warehouse: Warehouse, registry: ModelRegistry, asset_class: str):
    """The class's champions (volatility required, close optional) and their rolling-origin forecasts."""
    from storage.queries import champion_points
    from trading.strategies import ChampionForecasts

    found = {}
    for target in (VOLATILITY, CLOSE):
        name = model_name(asset_class, target)
        champion = registry.alias(name, CHAMPION)
        if champion is not None:
            found[target] = (champion, *champion_points(warehouse.query, name, champion))
    if VOLATILITY not in found:
        raise dg.Failure(f"{model_name(asset_class, VOLATILITY)} has no champion: materialize train_job first")
    (vol, vol_points, vol_model), (close, close_points, close_model) = (
        found[VOLATILITY], found.get(CLOSE, (None, None, None)))
    return ChampionForecasts(vol_points=vol_points, vol_model=vol_model, close_points=close_points,
                             close_model=close_model), vol, close


def _ahead(warehouse: Warehouse, asset_class: str, target: str, champion, notes: list[str]):
    """The champion's current forecasts (`forecasts` rows of its version), None (and a note) when they are of
    another version (forecasts not refreshed since the promotion) or missing."""
    rows = warehouse.query("SELECT symbol AS unique_id, ds, step, yhat, model_version FROM forecasts "
                           "WHERE asset_class = ? AND target = ?", [asset_class, target])
    if rows.empty or set(rows.model_version) != {champion.version}:
        notes.append(f"next bar: no current {target} forecasts of champion v{champion.version} (materialize "
                     "forecasts)")
        return None
    return rows


@dg.asset(
    partitions_def=asset_class_partitions,
    deps=[dg.AssetDep(champion_model, partition_mapping=BY_CLASS),
          dg.AssetDep(forecasts, partition_mapping=BY_CLASS), dg.AssetDep(training_frames, partition_mapping=BY_CLASS)],
    group_name="trading",
    kinds={"duckdb", "mlflow"},
    owners=OWNERS,
    pool=DUCKDB_POOL,
    description=(
        "Target positions per symbol and bar over the champions' test windows, from their rolling-origin forecasts "
        "only (bar t uses the latest origin before it): volatility targeting from the volatility champion "
        f"(`{VOL_TARGET}`, long-only; `{VOL_TARGET_DIRECTIONAL}`, signed by the close champion's direction) and the "
        f"close champion's direction with a no-trade band covering costs (`{DIRECTION}`). Each strategy also on the "
        "naive / EWMA / window-mean forecasts of the same windows and on perfect foresight (upper bound), for "
        "backtest_report; and the champions' positions for the bar after the data, from their current `forecasts` "
        "(period `next`). DuckDB `signals`."),
)
def signals(context: dg.AssetExecutionContext, config: SignalConfig, warehouse: Warehouse,
            registry: ModelRegistry) -> dg.MaterializeResult:
    import json

    import pandas as pd

    from domain.vocabulary import BARS_PER_YEAR, CHAMPION_SOURCE
    from storage.duck import replace_where
    from storage.queries import read_frame
    from trading.plots import plot_positions
    from trading.strategies import build_signals, next_bar

    asset_class = context.partition_key
    forecasts, vol, close = champion_forecasts(warehouse, registry, asset_class)
    closes = read_frame(warehouse.query, asset_class, CLOSE)
    params = config.params()
    built = build_signals(forecasts, closes, bars_per_year=BARS_PER_YEAR[asset_class], params=params)
    ahead = {t: _ahead(warehouse, asset_class, t, champion, built.notes)
             for t, champion in ((VOLATILITY, vol), (CLOSE, close)) if champion is not None}
    nxt = next_bar(built.rows, ahead[VOLATILITY], ahead.get(CLOSE), closes,
                   bars_per_year=BARS_PER_YEAR[asset_class], params=params) if ahead.get(VOLATILITY) is not None \
        else built.rows.iloc[:0]
    for note in built.notes:
        context.log.info(note)
    both = pd.concat([built.rows.assign(period="test"), nxt.assign(period="next")], ignore_index=True)
    rows = both.rename(columns={"unique_id": "symbol"}).assign(
        asset_class=asset_class, vol_model=vol.name, vol_version=vol.version,
        close_model=close.name if close else None, close_version=close.version if close else None,
        params=json.dumps(params.__dict__), run_id=context.run_id, created_at=pd.Timestamp.now(tz="UTC"))
    with warehouse.transaction() as con:
        replace_where(con, "signals", rows, {"asset_class": asset_class})
    own = built.rows[built.rows.source == CHAMPION_SOURCE]
    latest = (nxt if len(nxt) else own.sort_values("ds").groupby(["strategy", "unique_id"]).tail(1)).pivot(
        index="unique_id", columns="strategy", values="position")
    symbols = sorted(own.unique_id.unique())[:3]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": dg.MetadataValue.int(len(rows)),
        "symbols": dg.MetadataValue.int(int(own.unique_id.nunique())),
        "strategies": ", ".join(s for s in STRATEGIES if s in set(own.strategy)),
        "vol_champion": vol.label, "close_champion": close.label if close else "none",
        "params": dg.MetadataValue.json(params.__dict__),
        "test_bars": f"{own.ds.min()} .. {own.ds.max()}" if len(own) else "none",
        "left_out": dg.MetadataValue.md("\n".join(f"- {n}" for n in built.notes) or "none"),
        "next_bar": str(nxt.ds.max()) if len(nxt) else "none (no current forecasts of the champions)",
        "latest_positions": dg.MetadataValue.md(latest.round(3).head(20).to_markdown()),
        "positions_plot": png_markdown(plot_positions(built.rows, symbols, title=f"{asset_class}: target positions"),
                                       f"{asset_class} positions"),
    })
