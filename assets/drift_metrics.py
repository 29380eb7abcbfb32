"""`drift_metrics`: input drift (PSI, KS on returns and volatility per symbol) against the champion's training
data, and performance drift of the champion's stored forecasts; read by `drift_sensor`."""

import dagster as dg
from pydantic import Field

from assets.common import DUCKDB_POOL, OWNERS, TARGETS, asset_class_partitions
from assets.market_bars import market_bars
from resources import ModelRegistry, Warehouse
from resources.registry import model_name


class DriftConfig(dg.Config):
    """Thresholds: a (symbol, feature) drifts when PSI or KS exceeds its threshold; the class drifts when at least
    `min_share` of its tested pairs drift, or when the champion's realized error exceeds `perf_ratio` x its test error."""

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
    import pandas as pd

    from models.drift import class_verdict, features, input_drift
    from models.frames import to_training_frame
    from resources.warehouse import insert_frame

    asset_class, th = context.partition_key, config.thresholds()
    bars = warehouse.query("SELECT * FROM bars WHERE asset_class = ? ORDER BY symbol, freq, ts", [asset_class])
    if bars.empty:
        raise dg.Failure(f"no {asset_class} bars yet: materialize market_bars [{asset_class}] first")
    frames = {t: to_training_frame(bars, asset_class, t, min_length=2) for t in TARGETS}
    champions = {t: registry.alias(model_name(asset_class, t), "champion") for t in TARGETS}
    ref_end = _reference_end(warehouse, asset_class, champions)
    parts = [input_drift(features(frames["close"], frames["volatility"]), asset_class, ref_end, th)]
    for target in TARGETS:
        parts.append(_performance(warehouse, asset_class, target, champions[target], frames[target], th))
    table = pd.concat(parts, ignore_index=True)
    drifted, reason = class_verdict(table, th)
    watermark = pd.Timestamp(bars["ts"].max())
    out = table.assign(computed_at=pd.Timestamp.now(tz="UTC"), watermark=watermark, class_drifted=drifted,
                       verdict=reason, run_id=context.run_id)
    with warehouse.transaction() as con:
        insert_frame(con, "drift_metrics", out)
    tested = table[table["psi"].notna()].sort_values("psi", ascending=False)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": dg.MetadataValue.int(len(table)), "drifted": drifted, "verdict": reason,
        "watermark": str(watermark), "reference_end": str(ref_end) if ref_end is not None else "no champion yet",
        "max_psi": dg.MetadataValue.float(float(tested["psi"].max()) if len(tested) else float("nan")),
        "top_shifts": dg.MetadataValue.md(
            tested.head(15)[["symbol", "feature", "psi", "ks", "n_ref", "n_cur", "reason"]].round(4)
            .to_markdown(index=False) if len(tested) else "nothing tested"),
        "performance": dg.MetadataValue.md(table[table["feature"].str.startswith("performance")][
            ["feature", "perf_ratio", "n_cur", "reason"]].to_markdown(index=False)),
    })


def _reference_end(warehouse: Warehouse, asset_class: str, champions: dict):
    """End of the champions' training period (the earliest over the class's targets), or None."""
    ends = []
    for target, version in champions.items():
        if version is None:
            continue
        found = warehouse.query(
            "SELECT max(train_end) AS t FROM model_evaluations WHERE model_name = ? AND (version = ? OR ? = 'baseline')",
            [model_name(asset_class, target), str(version.version), version.tags.get("model_kind", "nhits")])
        if found.t.notna().any():
            ends.append(found.t.iloc[0])
    return min(ends) if ends else None


def _performance(warehouse: Warehouse, asset_class: str, target: str, champion, frame, th):
    import pandas as pd

    from models.drift import performance_drift

    fc = warehouse.query("SELECT symbol, ds, yhat, model_kind, model_version FROM forecasts "
                         "WHERE asset_class = ? AND target = ?", [asset_class, target])
    test_mae = None
    if champion is not None and not fc.empty:
        kind = champion.tags.get("model_kind", "nhits")
        model = "nhits" if kind == "nhits" else champion.tags.get("baseline", "naive")
        found = warehouse.query("SELECT mae FROM model_evaluations WHERE model_name = ? AND model = ? "
                                "ORDER BY evaluated_at DESC LIMIT 1", [model_name(asset_class, target), model])
        test_mae = float(found.mae.iloc[0]) if len(found) else None
    fc["ds"] = pd.to_datetime(fc["ds"])
    return performance_drift(fc[["symbol", "ds", "yhat"]], frame, test_mae, asset_class, target, th)
