"""Jobs: each a named selection of assets (their checks come along)."""

import dagster as dg

from assets.common import asset_class_partitions
from assets.macro_events import macro_events
from assets.market_bars import market_bars
from assets.news_events import news_events
from assets.quarantine import quarantine

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets(market_bars),
    partitions_def=asset_class_partitions,
    description="Load the bars of one asset class (partition) from every catalog source into DuckDB.",
    tags={"tradecast/purpose": "ingest"},
)

events_job = dg.define_asset_job(
    "events_job",
    selection=dg.AssetSelection.assets(news_events, macro_events, quarantine),
    description="Load news and macro events, then refresh the quarantine summary.",
    tags={"tradecast/purpose": "ingest"},
)
