"""`event_features`: news and FOMC events as per-(symbol, bar) features on the class's training grid."""

import dagster as dg
from pydantic import Field

from assets.common import DUCKDB_POOL, OWNERS, asset_class_partitions, png_markdown
from assets.macro_events import macro_events
from assets.market_bars import market_bars
from assets.news_events import news_events
from resources import Warehouse


class EventFeaturesConfig(dg.Config):
    """Trailing windows, in steps of the class's bar calendar; empty = the defaults (daily: 1 and 5 business
    days; 5-minute: 12 and 288 bars; hourly: 1 and 24)."""

    short_window: int | None = Field(None, ge=1, description="short window in bars (daily default 1)")
    long_window: int | None = Field(None, ge=1, description="long window in bars (daily default 5)")


@dg.asset(
    partitions_def=asset_class_partitions,
    deps=[market_bars, news_events, macro_events],
    group_name="training",
    kinds={"duckdb", "pandas"},
    owners=OWNERS,
    pool=DUCKDB_POOL,
    description=(
        "News and FOMC events as features per (symbol, bar) on the training grid of the asset class (crypto "
        "5-minute, equities and fx daily): headline counts and mean/min/max VADER sentiment over a short and a long "
        "trailing window, time since the last headline, market-wide headline sentiment (joined to every symbol), "
        "the MP1 policy surprise (historical) and the scheduled FOMC day (future exogenous). No look-ahead: a bar "
        "stamped t covers [t, t + bar) and uses only events stamped strictly before t + bar, its forecast origin. "
        "Table `event_features`; metadata: coverage (share of bars with any news) overall, per source and symbol."),
)
def event_features(context: dg.AssetExecutionContext, config: EventFeaturesConfig,
                   warehouse: Warehouse) -> dg.MaterializeResult:
    from models.events.features import event_features as compute
    from models.events.report import coverage_by_source, coverage_by_symbol, coverage_summary, plot_coverage
    from models.events.spec import calendar_for
    from models.frames import to_training_frame
    from storage.bars import read_bars
    from storage.duck import replace_where

    asset_class = context.partition_key
    bars = read_bars(warehouse.query, asset_class)
    if bars.empty:
        raise dg.Failure(f"no {asset_class} bars yet: materialize market_bars [{asset_class}] first")
    grid = to_training_frame(bars, asset_class, "close", min_length=1)
    freq = grid.attrs["freq"]
    cal = calendar_for(freq, config.short_window, config.long_window)
    news = warehouse.query("SELECT ts, source, symbol, sentiment FROM news_events")
    macro = warehouse.query("SELECT ts, event_type, scheduled, policy_surprise FROM macro_events")
    feats = compute(grid, news, macro, freq, short=cal.short, long=cal.long)
    out = feats.rename(columns={"unique_id": "symbol"}).assign(asset_class=asset_class, freq=freq)
    with warehouse.transaction() as con:
        replace_where(con, "event_features", out, {"asset_class": asset_class})
    summary = coverage_summary(feats)
    by_source = coverage_by_source(grid, news, freq, short=cal.short, long=cal.long)
    context.log.info(f"{asset_class}: {summary['bars']} bars, {summary['share_any_news']:.1%} with any news "
                     f"({summary['share_ticker_news']:.1%} own-ticker news)")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": dg.MetadataValue.int(len(out)),
        "freq": freq, "windows": f"short {cal.short}, long {cal.long} steps of '{cal.step}'",
        "coverage": dg.MetadataValue.float(round(summary["share_any_news"], 6)),
        "coverage_ticker_news": dg.MetadataValue.float(round(summary["share_ticker_news"], 6)),
        "coverage_market_news": dg.MetadataValue.float(round(summary["share_market_news"], 6)),
        "symbols_with_news": dg.MetadataValue.int(summary["symbols_with_news"]),
        "fomc_days": dg.MetadataValue.int(int(feats.loc[feats.fomc_day > 0, "ds"].nunique())),
        "coverage_by_source": dg.MetadataValue.md(by_source.round(4).to_markdown(index=False)),
        "coverage_by_symbol": dg.MetadataValue.md(coverage_by_symbol(feats).to_markdown(index=False)),
        "coverage_plot": png_markdown(plot_coverage(feats, title=f"{asset_class}: news coverage"), "coverage"),
    })
