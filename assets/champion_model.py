"""`champion_model`: the promotion gate and the decision it records. Both outcomes are normal, green runs: a
challenger that passes moves alias `champion`; a refused one leaves it where it is ("refused: champion stays")."""

import dagster as dg

from assets.common import DUCKDB_POOL, OWNERS, model_keys, model_partitions, png_markdown
from assets.nhits_model import nhits_model
from domain.vocabulary import CHALLENGER, CHAMPION, NHITS_KIND, PREVIOUS_CHAMPION, model_name
from resources import ModelRegistry, Warehouse


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
    import pandas as pd

    from models.plots import plot_evaluation
    from models.promotion import champion_mase, decide, rescore
    from storage.queries import evaluation_of, model_input, record_decision

    asset_class, target = model_keys(context)
    name = model_name(asset_class, target)
    challenger = registry.alias(name, CHALLENGER)
    if challenger is None:
        raise ValueError(f"{name} has no challenger: materialize nhits_model first")
    evaluation = evaluation_of(warehouse.query, name, challenger.version)
    champion = registry.alias(name, CHAMPION)
    score = None
    if champion is not None and champion.version != challenger.version:
        def rescore_champion(windows):  # an NHITS champion forecasts the challenger's windows (its features too)
            model = registry.load(name, champion.version)
            return rescore(model.nf, model_input(warehouse.query, asset_class, target, model).history, windows)

        score = champion_mase(champion, evaluation, rescore_champion)
    d = decide(challenger.version, evaluation, champion, score)
    if d.passed:
        registry.set_alias(name, CHAMPION, d.version)
        if d.champion_version and d.champion_version != d.version:
            registry.set_alias(name, PREVIOUS_CHAMPION, d.champion_version)  # the service's backup model
        champion_version, kind = d.version, NHITS_KIND
    else:  # the alias is not touched: a refused challenger never becomes champion
        champion_version, kind = d.champion_version or "none", d.champion_kind
    with warehouse.transaction() as con:
        record_decision(con, d, name=name, asset_class=asset_class, target=target,
                        verdict=d.verdict, kind=NHITS_KIND, run_id=context.run_id)
    registry.tag(name, d.version, {"promotion": d.verdict, "promotion_reason": d.reason})
    scores = evaluation[["model", "mase"]]
    if score is not None:  # the champion on the same windows, beside the challenger and the baselines
        scores = pd.concat([scores, pd.DataFrame([{"model": f"champion v{d.champion_version}", "mase": score}])])
    plot = plot_evaluation(scores, metric="mase", title=f"{name}: MASE on v{d.version}'s test windows")
    context.log.info(f"{name} challenger v{d.version}: {d.headline} (champion v{champion_version}): {d.reason}")
    return dg.MaterializeResult(data_version=dg.DataVersion(str(champion_version)), metadata={
        "decision": d.headline, "reason": d.reason, "champion_version": str(champion_version), "model_kind": kind or "",
        "challenger_version": d.version, "challenger_mase": dg.MetadataValue.float(d.challenger_mase),
        "best_baseline": d.best_baseline, "best_baseline_mase": dg.MetadataValue.float(d.best_baseline_mase),
        "challenged_champion": d.champion_version or "",
        "challenged_champion_mase": dg.MetadataValue.float(
            float("nan") if d.champion_mase is None else d.champion_mase),
        "scores_plot": png_markdown(plot, f"{name} gate scores")})
