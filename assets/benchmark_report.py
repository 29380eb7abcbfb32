"""`benchmark_report`: NHITS vs PatchTST, iTransformer, TimesNet and TiDE beside the naive baselines, per asset
class: accuracy, training cost, latency, throughput, peak memory (DuckDB, MLflow, markdown + plot)."""

from typing import Literal

import dagster as dg
from pydantic import Field

from assets.common import DUCKDB_POOL, OWNERS, asset_class_partitions, png_markdown
from assets.market_bars import market_bars
from domain.vocabulary import BENCHMARK_MODELS
from resources import ModelRegistry, Warehouse


class BenchmarkConfig(dg.Config):
    """Budget of the comparison; empty fields take the profile's value (quick: minutes on 2 cores)."""

    profile: Literal["quick", "full"] = Field("quick", description="quick (make run, tests) or full (make bench)")
    models: list[str] = Field(list(BENCHMARK_MODELS),
                              description="neural models compared (the naive baselines always run)")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps, the same for every neural model")
    batch_size: int | None = Field(None, ge=1, description="training windows per step, the same for every model")
    seed: int = 1
    max_series: int | None = Field(None, ge=1, description="series per data set")
    max_test_windows: int | None = Field(None, ge=1, description="rolling test windows scored (profile default)")
    train_cap_s: float | None = Field(None, gt=0, description="per-model training time cap, seconds")
    eval_cap_s: float | None = Field(None, gt=0, description="per-model evaluation time cap, seconds")
    no_caps: bool = Field(False, description="no training or evaluation time cap (every step, every test window)")
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"

    def budget(self):
        from models.benchmark.specs import budget_for

        return budget_for(self.profile, max_steps=self.max_steps, batch_size=self.batch_size, seed=self.seed,
                          max_series=self.max_series, max_test_windows=self.max_test_windows,
                          train_cap_s=self.train_cap_s, eval_cap_s=self.eval_cap_s, no_caps=self.no_caps)


@dg.asset(
    partitions_def=asset_class_partitions,
    deps=[market_bars],
    group_name="evaluation",
    kinds={"pytorch", "duckdb", "mlflow"},
    owners=OWNERS,
    pool=DUCKDB_POOL,
    description=(
        "The report's claim checked on our data: NHITS vs PatchTST, iTransformer, TimesNet and TiDE "
        "(neuralforecast) beside naive, seasonal naive and window mean, on the same windows under the same step "
        "budget. Per model: MSE, MAE, MASE, parameters, training seconds (total and per step), forward and "
        "NeuralForecast.predict latency at batch 1/16/64/256, throughput, peak memory, and each cost's ratio to "
        "NHITS. Data sets: crypto 5-min (h=12/in=288), equities daily (h=30/in=365), EURUSD hourly, each on "
        "close and volatility, plus (fx) the N-HiTS paper protocol on the exchange-rate file. Tables "
        "`benchmark_results` and `benchmark_latency`; an MLflow run in `tradecast-benchmarks`."),
)
def benchmark_report(context: dg.AssetExecutionContext, config: BenchmarkConfig, warehouse: Warehouse,
                     registry: ModelRegistry) -> dg.MaterializeResult:
    import dataclasses
    import json

    import pandas as pd

    from models.benchmark.datasets import market_datasets
    from models.benchmark.report import plot_benchmark, to_document, to_markdown
    from models.benchmark.runner import run_many
    from models.benchmark.summary import nhits_wins, run_metrics
    from models.benchmark.zoo import parse_models
    from storage.bars import read_bars
    from storage.duck import insert_frame

    asset_class = context.partition_key
    budget = config.budget()
    models = parse_models(",".join(config.models))
    bars = read_bars(warehouse.query, asset_class)
    datasets = market_datasets(bars, asset_class, budget)
    results, latency = run_many(datasets, budget, models, accelerator=config.accelerator, log=context.log.info)
    bench_id, created = f"{context.run_id[:8]}-{asset_class}", pd.Timestamp.now(tz="UTC")
    title = f"Benchmark {asset_class} ({budget.profile})"
    markdown, plot = to_markdown(results, latency, title=title), plot_benchmark(results, latency)
    document = to_document(results, latency, name=bench_id, created_at=created.isoformat(),
                           budget=dataclasses.asdict(budget))
    metrics = run_metrics(results)
    run_id = registry.log_benchmark(
        run_name=bench_id,
        params={**dataclasses.asdict(budget), "asset_class": asset_class, "models": ",".join(models)},
        metrics=metrics, tags={"asset_class": asset_class, "profile": budget.profile, "dagster_run_id": context.run_id},
        files={"benchmark.json": json.dumps(document, indent=1), "benchmark.md": markdown, "benchmark.png": plot})
    with warehouse.transaction() as con:
        insert_frame(con, "benchmark_results", results.assign(bench_id=bench_id, created_at=created,
                                                              mlflow_run_id=run_id))
        insert_frame(con, "benchmark_latency", latency.assign(bench_id=bench_id))
    return dg.MaterializeResult(metadata={
        "dagster/row_count": dg.MetadataValue.int(len(results)),
        "bench_id": bench_id, "mlflow_run_id": run_id, "profile": budget.profile, "seed": budget.seed,
        "datasets": dg.MetadataValue.int(len(datasets)),
        "nhits_beats_naive": nhits_wins(results),
        "capped_models": dg.MetadataValue.int(int(results["capped"].fillna(False).sum())),
        "report": dg.MetadataValue.md(markdown),
        "plot": png_markdown(plot, f"benchmark {asset_class}"),
    })
