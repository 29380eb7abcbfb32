"""Jobs: each a named selection of assets (their checks come along)."""

import dagster as dg

from assets.backtest_report import backtest_report
from assets.benchmark_report import benchmark_report
from assets.champion_model import champion_model
from assets.common import asset_class_partitions, model_partitions
from assets.event_features import event_features
from assets.forecasts import forecasts
from assets.live_ab_report import live_ab_report
from assets.macro_events import macro_events
from assets.market_bars import market_bars
from assets.news_events import news_events
from assets.nhits_model import nhits_model
from assets.nhits_search import nhits_search
from assets.onnx_model import onnx_model
from assets.quarantine import quarantine
from assets.signals import signals
from assets.training_frames import training_frames

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

event_features_job = dg.define_asset_job(
    "event_features_job",
    selection=dg.AssetSelection.assets(event_features),
    partitions_def=asset_class_partitions,
    description="Turn news and FOMC events into per-(symbol, bar) features of one asset class (after ingest_job "
                "and events_job; read by nhits_model with use_events).",
    tags={"tradecast/purpose": "features"},
)

train_job = dg.define_asset_job(
    "train_job",
    selection=dg.AssetSelection.assets(training_frames, nhits_model, champion_model),
    partitions_def=model_partitions,
    description="Build the training frame, train and evaluate NHITS, and decide its promotion (champion_model: "
                "promoted, or refused: champion stays; either is a successful run).",
    tags={"tradecast/purpose": "train"},
)

tune_job = dg.define_asset_job(
    "tune_job",
    selection=dg.AssetSelection.assets(nhits_search, nhits_model, champion_model),
    partitions_def=model_partitions,
    description="Search NHITS hyperparameters on Ray Tune (nhits_search), train with the best config and judge it "
                "at the gate: what `make tune` runs per partition.",
    tags={"tradecast/purpose": "tune"},
)

forecast_job = dg.define_asset_job(
    "forecast_job",
    selection=dg.AssetSelection.assets(forecasts),
    partitions_def=model_partitions,
    description="Forecast every series with the current champion (runs whether or not a promotion happened).",
    tags={"tradecast/purpose": "forecast"},
)

benchmark_job = dg.define_asset_job(
    "benchmark_job",
    selection=dg.AssetSelection.assets(benchmark_report),
    partitions_def=asset_class_partitions,
    description="Compare NHITS with PatchTST, iTransformer, TimesNet, TiDE and the naive baselines on one asset "
                "class (accuracy, cost, latency, memory).",
    tags={"tradecast/purpose": "benchmark"},
)

export_job = dg.define_asset_job(
    "export_job",
    selection=dg.AssetSelection.assets(onnx_model),
    partitions_def=model_partitions,
    description="Export the champion and challenger to ONNX (verified against torch) for the forecast service.",
    tags={"tradecast/purpose": "deploy"},
)

live_report_job = dg.define_asset_job(
    "live_report_job",
    selection=dg.AssetSelection.assets(live_ab_report),
    description="Summarize the forecast service's live error per arm and model version (A/B).",
    tags={"tradecast/purpose": "evaluate"},
)

retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.assets(training_frames, nhits_model, champion_model, forecasts, onnx_model),
    partitions_def=model_partitions,
    description="Retrain one (asset class, target): fresh training frame, NHITS, the promotion decision "
                "(champion_model: promoted, or refused: champion stays), then forecasts and the ONNX export of "
                "whichever model is champion. Started by the schedules and by drift_sensor.",
    tags={"tradecast/purpose": "retrain"},
)

trading_job = dg.define_asset_job(
    "trading_job",
    selection=dg.AssetSelection.assets(signals, backtest_report),
    partitions_def=asset_class_partitions,
    description="Turn the class's champions' rolling-origin forecasts into target positions (signals) and backtest "
                "them after costs beside buy-and-hold, the naive forecasts and perfect foresight (backtest_report).",
    tags={"tradecast/purpose": "trading"},
)
