"""`champion_model`: the promotion gate and the decision it records. Both outcomes are normal, green runs: a
challenger that passes moves alias `champion`; a refused one leaves it where it is ("refused: champion stays")."""

from typing import Literal

import dagster as dg
from pydantic import Field

from assets.common import DUCKDB_POOL, OWNERS, model_keys, model_partitions, png_markdown
from assets.nhits_model import nhits_model
from domain.vocabulary import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, model_name
from resources import ModelRegistry, Warehouse


class GateConfig(dg.Config):
    """How the promotion gate judges a challenger (recorded with each decision)."""

    metric_close: Literal["mase", "mae", "mse", "crps"] = Field(
        "mase", description="loss for the close target (lower is better)")
    metric_volatility: Literal["qlike", "mse_var", "mase", "mae", "mse", "crps"] = Field(
        "qlike", description="loss for the volatility target: QLIKE (Patton 2011) by default")
    alpha: float = Field(0.05, gt=0, lt=1, description="a challenger must beat the best baseline and the champion "
                                                       "with a one-sided Diebold-Mariano p-value below this")


@dg.asset(
    partitions_def=model_partitions,
    deps=[nhits_model],
    group_name="deployment",
    kinds={"mlflow"},
    owners=OWNERS,
    pool=DUCKDB_POOL,
    description=(
        "The promotion gate, materialized after every `nhits_model`: the challenger (NHITS, or its ensemble with a "
        "served baseline when that had the lower validation loss, chosen by `nhits_model` before the test part) "
        "replaces the champion only if, "
        "on the same rolling-origin test windows (identical series, cutoff and step keys, checked), its loss (QLIKE "
        "for volatility, MASE for close; `GateConfig`) is lower than the best baseline's (naive, seasonal naive, "
        "window mean, HAR, EWMA, GARCH, random walk with drift, statsforecast's AutoETS/AutoTheta/AutoARIMA) and "
        "the current champion's, each with a one-sided "
        "Diebold-Mariano test (Harvey-Leybourne-Newbold correction) below alpha. Promoted: alias `champion` of "
        "`nhits-<class>-<target>` moves to the challenger (the old champion keeps alias `previous_champion`, the "
        "forecast service's backup). Refused or not significantly better: the champion stays (a normal outcome, "
        "not a failure). Each materialization shows the decision, its reason, the p-values and every model's "
        "score; every decision is kept in DuckDB `model_promotions` and on the version's MLflow tags. The data "
        "version is the champion's version. Until an NHITS version passes, the best servable baseline is the "
        "registered champion (model_kind=baseline), the report's fallback forecaster."),
)
def champion_model(context: dg.AssetExecutionContext, config: GateConfig, warehouse: Warehouse,
                   registry: ModelRegistry) -> dg.MaterializeResult:
    from models.plots import plot_evaluation
    from models.promotion import GateRule, decide, rescore, scores, windows_of
    from storage.queries import evaluation_forecasts_of, evaluation_of, model_input, record_decision, version_train_end

    asset_class, target = model_keys(context)
    name = model_name(asset_class, target)
    rule = GateRule.for_target(target, close=config.metric_close, volatility=config.metric_volatility,
                               alpha=config.alpha)
    challenger = registry.alias(name, CHALLENGER)
    if challenger is None:
        raise ValueError(f"{name} has no challenger: materialize nhits_model first")
    windows = windows_of(evaluation_of(warehouse.query, name, challenger.version))
    points, scale = evaluation_forecasts_of(warehouse.query, name, challenger.version)
    champion = registry.alias(name, CHAMPION)
    champion_points, trained_until = None, None
    if champion is not None and champion.version != challenger.version and not champion.is_baseline:
        trained_until = version_train_end(warehouse.query, name, champion.version)
        model = registry.load(name, champion.version)  # it forecasts the challenger's windows (its features too)
        champion_points = rescore(model, model_input(warehouse.query, asset_class, target, model).history, windows)
    d = decide(challenger.version, points, scale, windows, rule, champion, champion_points, trained_until,
               challenger_model=challenger.evaluated_as)
    if d.passed:
        registry.set_alias(name, CHAMPION, d.version)
        if d.champion_version and d.champion_version != d.version:
            registry.set_alias(name, PREVIOUS_CHAMPION, d.champion_version)  # the service's backup model
        champion_version, kind = d.version, challenger.kind
    else:  # the alias is not touched: a refused challenger never becomes champion
        champion_version, kind = d.champion_version or "none", d.champion_kind
    with warehouse.transaction() as con:
        record_decision(con, d, name=name, asset_class=asset_class, target=target, verdict=d.verdict,
                        kind=challenger.kind, run_id=context.run_id)
    p_base, p_champ = (float("nan") if v is None else v for v in (d.p_value_baseline, d.p_value_champion))
    registry.tag(name, d.version, {"promotion": d.verdict, "promotion_reason": d.reason, "gate_metric": d.metric,
                                   "p_value_baseline": f"{p_base:.4g}", "p_value_champion": f"{p_champ:.4g}"})
    table = scores(points, rule.metric, scale).rename(rule.metric).to_frame()
    if champion_points is not None:
        table.loc[f"champion v{d.champion_version}"] = float(scores(champion_points, rule.metric, scale).iloc[0])
    table = table.reset_index(names="model").sort_values(rule.metric)
    plot = plot_evaluation(table, metric=rule.metric, title=f"{name}: {rule.label} on v{d.version}'s test windows")
    context.log.info(f"{name} challenger {challenger.label}: {d.headline} (champion v{champion_version}): {d.reason}")
    return dg.MaterializeResult(data_version=dg.DataVersion(str(champion_version)), metadata={
        "decision": d.headline, "reason": d.reason, "champion_version": str(champion_version), "model_kind": kind or "",
        "metric": rule.label, "alpha": dg.MetadataValue.float(rule.alpha),
        "challenger_version": d.version, "challenger_kind": challenger.kind,
        "challenger_score": dg.MetadataValue.float(d.challenger_score),
        "challenger_mase": dg.MetadataValue.float(d.challenger_mase),
        "best_baseline": d.best_baseline, "best_baseline_score": dg.MetadataValue.float(d.best_baseline_score),
        "best_baseline_mase": dg.MetadataValue.float(d.best_baseline_mase),
        "p_value_vs_best_baseline": dg.MetadataValue.float(p_base),
        "challenged_champion": d.champion_version or "",
        "challenged_champion_mase": dg.MetadataValue.float(
            float("nan") if d.champion_mase is None else d.champion_mase),
        "p_value_vs_champion": dg.MetadataValue.float(p_champ),
        "windows": dg.MetadataValue.int(d.n_windows), "points": dg.MetadataValue.int(d.n_points),
        "scores": dg.MetadataValue.md(table.round(5).to_markdown(index=False)),
        "scores_plot": png_markdown(plot, f"{name} gate scores")})
