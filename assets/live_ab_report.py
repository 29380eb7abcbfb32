"""`live_ab_report`: champion vs challenger on live data, from the rows the forecast service writes."""

import dagster as dg

from assets.common import DUCKDB_POOL, OWNERS, png_markdown
from domain.vocabulary import CHALLENGER
from resources import Warehouse

live_metrics = dg.AssetSpec(
    "live_metrics", group_name="evaluation", kinds={"duckdb"}, owners=OWNERS,
    description="Written by the forecast service (`tradecast serve`), not by Dagster: one row per served forecast "
                "step once its actual bar arrived (arm, model version, yhat, y, |error|, MASE scale).")


@dg.asset(
    deps=[live_metrics],
    group_name="evaluation",
    kinds={"duckdb", "pandas"},
    owners=OWNERS,
    pool=DUCKDB_POOL,
    description=(
        "A/B report of the forecast service: per model, arm (champion / challenger / backup answers are labelled by "
        "version) and version, the live MAE and MASE on the bars that arrived after each forecast, with the "
        "challenger's MASE relative to the champion's. Read this before promoting on live evidence."),
)
def live_ab_report(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    from models.plots import plot_live_error
    from serving.live import ab_summary

    rows = warehouse.query("SELECT * FROM live_metrics ORDER BY ts")
    table = ab_summary(rows)
    if table.empty:
        context.log.warning("live_metrics is empty: run `tradecast serve` (or `tradecast replay`) first")
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(len(rows)),
        "versions": dg.MetadataValue.int(len(table)),
        "summary": dg.MetadataValue.md(table.round({"mae": 6, "mase": 4, "mase_vs_champion": 4}).astype(str)
                                       .to_markdown(index=False) if len(table) else "no live forecasts scored yet"),
    }
    challenger = table[table.arm == CHALLENGER]
    if len(challenger):
        metadata["challenger_mase_vs_champion"] = dg.MetadataValue.float(float(challenger.mase_vs_champion.iloc[0]))
    if len(rows):
        metadata["live_error_plot"] = png_markdown(plot_live_error(rows), "live error by arm")
    return dg.MaterializeResult(metadata=metadata)
