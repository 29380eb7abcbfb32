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
    loaded, recon = ingest_table(context, config, settings, warehouse, "news_events")
    accepted = loaded.split.accepted
    stats = (accepted.groupby("source")
             .agg(events=("headline", "size"), symbols=("symbol", "nunique"), first_ts=("ts", "min"),
                  last_ts=("ts", "max"), mean_sentiment=("sentiment", "mean")).reset_index())
    metadata = ingest_metadata(recon, len(accepted))
    metadata["by_source"] = dg.MetadataValue.md(stats.round({"mean_sentiment": 3}).astype(str).to_markdown(index=False))
    metadata["share_positive"] = dg.MetadataValue.float(float((accepted.sentiment > 0.05).mean()) if len(accepted) else 0.0)
    metadata["share_negative"] = dg.MetadataValue.float(float((accepted.sentiment < -0.05).mean()) if len(accepted) else 0.0)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(asset=news_events, pool=DUCKDB_POOL, blocking=True,
                description="Every stored event has a sentiment in [-1, 1] and a non-empty headline.")
def check_news_events_sentiment_range(warehouse: Warehouse) -> dg.AssetCheckResult:
    bad = warehouse.query("""SELECT count(*) AS n FROM news_events WHERE sentiment IS NULL OR sentiment < -1
                             OR sentiment > 1 OR coalesce(length(headline), 0) = 0""").n.iloc[0]
    return dg.AssetCheckResult(passed=int(bad) == 0, metadata={"violations": int(bad)})
