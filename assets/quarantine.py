"""`quarantine`: every row that failed validation, with its source file, row number and reasons."""


import dagster as dg

from assets.common import DUCKDB_POOL, OWNERS
from assets.macro_events import macro_events
from assets.market_bars import market_bars
from assets.news_events import news_events
from resources import Warehouse


@dg.asset(
    deps=[market_bars, news_events, macro_events],
    group_name="ingestion",
    kinds={"duckdb"},
    owners=OWNERS,
    tags={"layer": "raw"},
    pool=DUCKDB_POOL,
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Rows that failed validation, never dropped: table `quarantine` (table_name, source, source_file, "
        "source_row, asset_class, reasons, raw values as JSON, run_id). The ingest assets write it in the "
        "same transaction as their tables; this asset publishes the `quarantine_summary` view and shows "
        "what was rejected and why."),
)
def quarantine(warehouse: Warehouse) -> dg.MaterializeResult:
    from storage.quarantine import publish_summary

    with warehouse.transaction() as con:
        summary, sample = publish_summary(con)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": dg.MetadataValue.int(int(summary.rows.sum()) if len(summary) else 0),
        "by_source_and_reason": dg.MetadataValue.md(summary.to_markdown(index=False) if len(summary) else "empty"),
        "sample_rows": dg.MetadataValue.md(sample.to_markdown(index=False) if len(sample) else "empty"),
    })
