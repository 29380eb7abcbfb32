"""`news_events`: headlines and tweets with VADER sentiment, validated, in DuckDB `news_events`."""


import dagster as dg

from assets.common import DUCKDB_POOL, OWNERS, IngestConfig, ingest_metadata, ingest_table
from resources import Settings, Warehouse


@dg.asset(
    group_name="ingestion",
    kinds={"duckdb", "pandas"},
    owners=OWNERS,
    tags={"layer": "raw"},
    pool=DUCKDB_POOL,
    description=(
        "News events from every catalog news source (r/worldnews headlines: market-wide; stocknet tweets and "
        "analyst-rating headlines: per ticker). Table `news_events` (ts UTC, source, symbol or NULL for "
        "market-wide, headline, sentiment = VADER compound in [-1, 1]). Day-stamped headlines are stamped at "
        "23:59:59 UTC so no feature can see them before the day is over."),
)
def news_events(context: dg.AssetExecutionContext, config: IngestConfig, settings: Settings,
                warehouse: Warehouse) -> dg.MaterializeResult:
    from ingest.summaries import news_summary

    loaded, recon = ingest_table(context, config, settings, warehouse, "news_events")
    accepted = loaded.split.accepted
    stats, share_positive, share_negative = news_summary(accepted)
    metadata = ingest_metadata(recon, len(accepted))
    metadata["by_source"] = dg.MetadataValue.md(stats.round({"mean_sentiment": 3}).astype(str).to_markdown(index=False))
    metadata["share_positive"] = dg.MetadataValue.float(share_positive)
    metadata["share_negative"] = dg.MetadataValue.float(share_negative)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(asset=news_events, pool=DUCKDB_POOL, blocking=True,
                description="Every stored event has a sentiment in [-1, 1] and a non-empty headline.")
def check_news_events_sentiment_range(warehouse: Warehouse) -> dg.AssetCheckResult:
    from storage.checks import sentiment_violations

    bad = sentiment_violations(warehouse.query)
    return dg.AssetCheckResult(passed=bad == 0, metadata={"violations": bad})
