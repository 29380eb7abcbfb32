"""The one `dg.Definitions` of the tradecast code location (loads fast: no torch, pandas or mlflow here)."""

import dagster as dg

from assets.macro_events import macro_events
from assets.market_bars import (check_market_bars_coverage, check_market_bars_no_large_gaps,
                                check_market_bars_ohlc_consistent, market_bars)
from assets.news_events import check_news_events_sentiment_range, news_events
from assets.quarantine import quarantine
from assets.reconcile import build_reconcile_check
from pipelines.jobs import events_job, ingest_job
from resources import Settings, Warehouse

settings = Settings()

defs = dg.Definitions(
    assets=[market_bars, news_events, macro_events, quarantine],
    asset_checks=[
        check_market_bars_ohlc_consistent, check_market_bars_no_large_gaps, check_market_bars_coverage,
        check_news_events_sentiment_range,
        *(build_reconcile_check(a) for a in (market_bars, news_events, macro_events)),
    ],
    jobs=[ingest_job, events_job],
    resources={"settings": settings, "warehouse": Warehouse(settings=settings)},
)
