"""The one `dg.Definitions` of the tradecast code location (loads fast: no torch, pandas or mlflow here)."""

import dagster as dg

from assets.backtest_report import backtest_report
from assets.benchmark_report import benchmark_report
from assets.champion_model import champion_model
from assets.drift_metrics import drift_metrics
from assets.event_features import event_features
from assets.forecasts import forecasts
from assets.freshness import check_forecasts_fresh, check_market_bars_fresh
from assets.live_ab_report import live_ab_report, live_metrics
from assets.macro_events import macro_events
from assets.market_bars import (
                                check_market_bars_coverage,
                                check_market_bars_no_large_gaps,
                                check_market_bars_ohlc_consistent,
                                market_bars,
)
from assets.news_events import check_news_events_sentiment_range, news_events
from assets.nhits_model import nhits_model
from assets.nhits_search import nhits_search
from assets.onnx_model import onnx_model
from assets.quarantine import quarantine
from assets.reconcile import build_reconcile_check
from assets.signals import signals
from assets.training_frames import training_frames
from pipelines.jobs import (
                                benchmark_job,
                                event_features_job,
                                events_job,
                                export_job,
                                forecast_job,
                                ingest_job,
                                live_report_job,
                                retrain_job,
                                trading_job,
                                train_job,
                                tune_job,
)
from pipelines.schedules import retrain_schedules, weekly_benchmark_schedule
from pipelines.sensors import (
                                automation_condition_sensor,
                                drift_sensor,
                                freshness_checks_sensor,
                                incoming_files_sensor,
                                run_failure_sensor,
)
from resources import ModelRegistry, Settings, Warehouse
from resources.ray import ray_cluster_resource

settings = Settings()

defs = dg.Definitions(
    assets=[market_bars, news_events, macro_events, quarantine, training_frames, nhits_search, nhits_model,
            champion_model, forecasts, benchmark_report, drift_metrics, event_features, onnx_model, live_metrics,
            live_ab_report, signals, backtest_report],
    asset_checks=[
        check_market_bars_ohlc_consistent, check_market_bars_no_large_gaps, check_market_bars_coverage,
        check_news_events_sentiment_range, check_market_bars_fresh, check_forecasts_fresh,
        *(build_reconcile_check(a) for a in (market_bars, news_events, macro_events)),
    ],
    jobs=[ingest_job, events_job, event_features_job, train_job, forecast_job, export_job, retrain_job, benchmark_job,
          live_report_job, tune_job, trading_job],
    schedules=[*retrain_schedules, weekly_benchmark_schedule],
    sensors=[incoming_files_sensor, drift_sensor, automation_condition_sensor, freshness_checks_sensor,
             run_failure_sensor],
    resources={"settings": settings, "warehouse": Warehouse(settings=settings),
               "registry": ModelRegistry(settings=settings), "ray": ray_cluster_resource(settings)},
)
