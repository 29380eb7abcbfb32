"""`forecasts`: the champion's forecasts for every series of a class, with intervals where the loss has them."""

import dagster as dg

from assets.champion_model import champion_model
from assets.training_frames import training_frames
from assets.common import DUCKDB_POOL, OWNERS, model_keys, model_partitions, png_markdown
from resources import ModelRegistry, Warehouse
from resources.registry import model_name


@dg.asset(
    partitions_def=model_partitions,
    deps=[champion_model, training_frames],  # the champion forecasts from the latest training frame
    group_name="deployment",
    kinds={"duckdb", "mlflow"},
    owners=OWNERS,
    pool=DUCKDB_POOL,
    # refresh when the champion changes or the frame does (a retrain whose challenger the gate refused skips
    # this asset in its run; the automation sensor then forecasts with the unchanged champion on the new data)
    automation_condition=(dg.AutomationCondition.any_deps_updated() & ~dg.AutomationCondition.in_progress()
                          & ~dg.AutomationCondition.any_deps_in_progress()),
    description=(
        "Forecasts of the current champion (alias `champion`, NHITS or the baseline fallback, labelled as such) for "
        "every series of the training frame: DuckDB `forecasts` (symbol, ds, step, yhat, lo, hi, model version, "
        "model kind), with a plot of recent history and the forecast."),
)
def forecasts(context: dg.AssetExecutionContext, warehouse: Warehouse, registry: ModelRegistry) -> dg.MaterializeResult:
    import pandas as pd

    from assets.nhits_model import read_frame
    from models.plots import plot_forecasts
    from resources.warehouse import replace_where

    asset_class, target = model_keys(context)
    name = model_name(asset_class, target)
    champion = registry.alias(name, "champion")
    if champion is None:
        raise dg.Failure(f"{name} has no champion yet: materialize nhits_model first")
    kind = champion.tags.get("model_kind", "nhits")
    label = f"v{champion.version} ({kind}" + (f": {champion.tags.get('baseline')})" if kind == "baseline" else ")")
    frame = read_frame(warehouse, asset_class, target)
    out = registry.load(name, champion.version).predict(frame)
    out = out.rename(columns={"unique_id": "symbol"}).assign(
        asset_class=asset_class, target=target, model_name=name, model_version=str(champion.version), model_kind=kind,
        created_at=pd.Timestamp.now(tz="UTC"))
    with warehouse.transaction() as con:
        replace_where(con, "forecasts", out, {"asset_class": asset_class, "target": target})
    symbols = sorted(out.symbol.unique())[:3]
    plot = plot_forecasts(frame, out.rename(columns={"symbol": "unique_id"}), symbols,
                          title=f"{name} champion {label}: {target} forecast")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": dg.MetadataValue.int(len(out)), "symbols": dg.MetadataValue.int(out.symbol.nunique()),
        "champion": label, "model_kind": kind, "has_intervals": bool(out.lo.notna().any()),
        "forecast_plot": png_markdown(plot, f"{name} forecast"),
    })
