"""`champion_model`: the gate (a blocking check on `nhits_model`) and the promotion it guards."""

import dagster as dg

from assets.common import DUCKDB_POOL, OWNERS, model_keys, model_partitions
from assets.nhits_model import nhits_model
from resources import ModelRegistry, Warehouse
from resources.registry import model_name


@dg.asset_check(
    asset=nhits_model, partitions_def=model_partitions, blocking=True, pool=DUCKDB_POOL,
    description="Promotion gate: the challenger's MASE must beat the best naive baseline and the current champion "
                "on the same test windows; otherwise the refusal and its reason are recorded (DuckDB "
                "`model_promotions`, MLflow tag `promotion_reason`) and `champion_model` does not run.")
def check_nhits_model_beats_champion_and_baselines(context: dg.AssetCheckExecutionContext, warehouse: Warehouse,
                                                   registry: ModelRegistry) -> dg.AssetCheckResult:
    from assets.promotion import decide, record_decision

    asset_class, target = model_keys(context)
    name = model_name(asset_class, target)
    decision = decide(registry, warehouse, name, asset_class, target)
    if not decision.passed:
        record_decision(warehouse, registry, name, asset_class, target, decision, "refused", "nhits",
                        context.run.run_id)
        context.log.warning(f"{name} v{decision.version} not promoted: {decision.reason}")
    return dg.AssetCheckResult(passed=decision.passed, metadata={
        "version": decision.version, "reason": decision.reason,
        "challenger_mase": decision.challenger_mase, "best_baseline": decision.best_baseline,
        "best_baseline_mase": decision.best_baseline_mase,
        "champion_version": decision.champion_version or "", "champion_mase": decision.champion_mase or float("nan")})


@dg.asset(
    partitions_def=model_partitions,
    deps=[nhits_model],
    group_name="deployment",
    kinds={"mlflow"},
    owners=OWNERS,
    pool=DUCKDB_POOL,
    description=(
        "Moves MLflow alias `champion` of `nhits-<class>-<target>` to the challenger (the old champion keeps "
        "alias `previous_champion`, the forecast service's backup); runs only when the blocking gate passed. Every "
        "decision is kept in DuckDB `model_promotions`. Until an NHITS version passes, the best "
        "naive baseline is the registered champion (model_kind=baseline), the report's fallback forecaster."),
)
def champion_model(context: dg.AssetExecutionContext, warehouse: Warehouse,
                   registry: ModelRegistry) -> dg.MaterializeResult:
    from assets.promotion import decide, record_decision

    asset_class, target = model_keys(context)
    name = model_name(asset_class, target)
    decision = decide(registry, warehouse, name, asset_class, target)
    if not decision.passed:  # the gate ran in another run; never promote on a stale pass
        raise dg.Failure(f"{name} v{decision.version} fails the gate: {decision.reason}")
    registry.set_alias(name, "champion", decision.version)
    if decision.champion_version and decision.champion_version != decision.version:
        registry.set_alias(name, "previous_champion", decision.champion_version)  # the service's backup model
    record_decision(warehouse, registry, name, asset_class, target, decision, "promoted", "nhits", context.run_id)
    return dg.MaterializeResult(metadata={
        "champion_version": decision.version, "model_kind": "nhits", "reason": decision.reason,
        "mase": dg.MetadataValue.float(decision.challenger_mase),
        "previous_champion": decision.champion_version or ""})
