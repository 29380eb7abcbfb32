"""`drift_metrics`: input drift (PSI, KS on returns and volatility per symbol) against the champion's training
data, and performance drift of the champion's stored forecasts; read by `drift_sensor`."""

import dagster as dg
from pydantic import Field

from assets.common import DUCKDB_POOL, OWNERS, asset_class_partitions
from assets.market_bars import market_bars
from domain.vocabulary import CHAMPION, TARGETS, model_name
from resources import ModelRegistry, Warehouse


class DriftConfig(dg.Config):
    """Thresholds: a (symbol, feature) drifts when PSI or KS exceeds its threshold; the class drifts when at least
    `min_share` of its tested pairs drift, or when the champion's realized error exceeds `perf_ratio` x its test
    error."""

    psi: float = Field(0.25, gt=0, description="population stability index threshold (0.25 = significant shift)")
    ks: float = Field(0.2, gt=0, le=1, description="two-sample Kolmogorov-Smirnov statistic threshold")
    perf_ratio: float = Field(1.5, gt=0, description="realized MAE / test MAE of the champion's forecasts")
    window: int = Field(500, ge=10, description="observations per sample (reference and current), per symbol")
    min_points: int = Field(50, ge=5, description="fewer observations in either sample: not tested")
    min_share: float = Field(0.25, gt=0, le=1, description="share of drifted (symbol, feature) pairs for the class")

    def thresholds(self):
        from models.drift import Thresholds

        return Thresholds(**self.model_dump())


@dg.asset(
    partitions_def=asset_class_partitions,
    deps=[market_bars],
    group_name="evaluation",
    kinds={"duckdb", "pandas"},
    owners=OWNERS,
    pool=DUCKDB_POOL,
    automation_condition=dg.AutomationCondition.eager(),  # recomputed whenever new bars of the class land
    description=(
        "Has the data moved away from what the champions learned on? Per symbol, PSI and the KS statistic of log "
        "returns and Garman-Klass volatility: the last `window` points of the champion's training period against "
        "the newest points (without a champion: the newest window against the one before). Plus performance drift: "
        "realized MAE of the champion's stored forecasts over its test MAE, once actuals exist. Appends to DuckDB "
        "`drift_metrics` with the class verdict and the data watermark; `drift_sensor` turns a drifted class into "
        "retraining runs."),
)
def drift_metrics(context: dg.AssetExecutionContext, config: DriftConfig, warehouse: Warehouse,
                  registry: ModelRegistry) -> dg.MaterializeResult:
    from storage.bars import read_bars
    from storage.drift import measure_drift, record_drift

    asset_class = context.partition_key
    bars = read_bars(warehouse.query, asset_class)
    if bars.empty:
        raise dg.Failure(f"no {asset_class} bars yet: materialize market_bars [{asset_class}] first")
    champions = {t: registry.alias(model_name(asset_class, t), CHAMPION) for t in TARGETS}
    drift = measure_drift(warehouse.query, bars, asset_class, champions, config.thresholds())
    with warehouse.transaction() as con:
        record_drift(con, drift, context.run_id)
    table, ref_end = drift.table, drift.reference_end
    tested = table[table["psi"].notna()].sort_values("psi", ascending=False)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": dg.MetadataValue.int(len(table)), "drifted": drift.drifted, "verdict": drift.verdict,
        "watermark": str(drift.watermark), "reference_end": str(ref_end) if ref_end is not None else "no champion yet",
        "max_psi": dg.MetadataValue.float(float(tested["psi"].max()) if len(tested) else float("nan")),
        "top_shifts": dg.MetadataValue.md(
            tested.head(15)[["symbol", "feature", "psi", "ks", "n_ref", "n_cur", "reason"]].round(4)
            .to_markdown(index=False) if len(tested) else "nothing tested"),
        "performance": dg.MetadataValue.md(table[table["feature"].str.startswith("performance")][
            ["feature", "perf_ratio", "n_cur", "reason"]].to_markdown(index=False)),
    })
