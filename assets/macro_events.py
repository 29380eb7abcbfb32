"""`macro_events`: FOMC meetings, statements and minutes with the policy surprise where known."""


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
        "Macro events: FOMC actions (statements, minutes, policy reports, rate changes) and meetings with "
        "their MP1 policy surprise (NULL where unknown, e.g. the source's 1.00E+10 marker). Table "
        "`macro_events` (ts UTC = release day at 14:15 New York time, event_type, scheduled, "
        "press_conference, policy_surprise). Meeting dates are known in advance; the surprise only after."),
)
def macro_events(context: dg.AssetExecutionContext, config: IngestConfig, settings: Settings,
                 warehouse: Warehouse) -> dg.MaterializeResult:
    from ingest.summaries import macro_by_type

    loaded, recon = ingest_table(context, config, settings, warehouse, "macro_events")
    accepted = loaded.split.accepted
    by_type = macro_by_type(accepted)
    metadata = ingest_metadata(recon, len(accepted))
    metadata["by_event_type"] = dg.MetadataValue.md(by_type.astype(str).to_markdown(index=False))
    return dg.MaterializeResult(metadata=metadata)
