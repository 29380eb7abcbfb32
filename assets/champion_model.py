"""`champion_model`: the promotion gate and the decision it records. Both outcomes are normal, green runs: a
challenger that passes moves alias `champion`; a refused one leaves it where it is ("refused: champion stays")."""

import dagster as dg

from assets.common import DUCKDB_POOL, OWNERS, model_keys, model_partitions
from assets.nhits_model import nhits_model
from resources import ModelRegistry, Warehouse
from resources.registry import model_name

PROMOTED, REFUSED = "promoted", "refused: champion stays"  # the decision, as the asset page and `tradecast run` say it


@dg.asset(
    partitions_def=model_partitions,
    deps=[nhits_model],
    group_name="deployment",
    kinds={"mlflow"},
    owners=OWNERS,
    pool=DUCKDB_POOL,
    description=(
        "The promotion gate, materialized after every `nhits_model`: the challenger replaces the champion only if "
        "its MASE beats the best naive baseline and the current champion on the same test windows. Promoted: alias "
        "`champion` of `nhits-<class>-<target>` moves to the challenger (the old champion keeps alias "
        "`previous_champion`, the forecast service's backup). Refused: the champion stays (a normal outcome, not a "
        "failure). Each materialization shows the decision, its reason and the scores; every decision is kept in "
        "DuckDB `model_promotions` and on the version's MLflow tags (`promotion`, `promotion_reason`). The data "
        "version is the champion's version. Until an NHITS version passes, the best naive baseline is the "
        "registered champion (model_kind=baseline), the report's fallback forecaster."),
)
def champion_model(context: dg.AssetExecutionContext, warehouse: Warehouse,
                   registry: ModelRegistry) -> dg.MaterializeResult:
    from assets.promotion import decide, record_decision

    asset_class, target = model_keys(context)
    name = model_name(asset_class, target)
    d = decide(registry, warehouse, name, asset_class, target)
    if d.passed:
        registry.set_alias(name, "champion", d.version)
        if d.champion_version and d.champion_version != d.version:
            registry.set_alias(name, "previous_champion", d.champion_version)  # the service's backup model
        champion, kind, verdict = d.version, "nhits", PROMOTED
    else:  # the alias is not touched: a refused challenger never becomes champion
        champion, kind, verdict = d.champion_version or "none", d.champion_kind, REFUSED
    record_decision(warehouse, registry, name, asset_class, target, d, "promoted" if d.passed else "refused",
                    "nhits", context.run_id)
    context.log.info(f"{name} challenger v{d.version}: {verdict} (champion v{champion}): {d.reason}")
    return dg.MaterializeResult(data_version=dg.DataVersion(str(champion)), metadata={
        "decision": verdict, "reason": d.reason, "champion_version": str(champion), "model_kind": kind or "",
        "challenger_version": d.version, "challenger_mase": dg.MetadataValue.float(d.challenger_mase),
        "best_baseline": d.best_baseline, "best_baseline_mase": dg.MetadataValue.float(d.best_baseline_mase),
        "challenged_champion": d.champion_version or "",
        "challenged_champion_mase": dg.MetadataValue.float(
            float("nan") if d.champion_mase is None else d.champion_mase)})
