"""`forecasts`: the champion's forecasts for every series of a class, with intervals where the loss has them."""

import dagster as dg

from assets.champion_model import champion_model
from assets.training_frames import training_frames
from assets.common import DUCKDB_POOL, FOLLOW_DEPS, OWNERS, model_keys, model_partitions, png_markdown
from resources import ModelRegistry, Warehouse
from resources.registry import model_name


@dg.asset(
    partitions_def=model_partitions,
    deps=[champion_model, training_frames],  # the champion forecasts from the latest training frame
    group_name="deployment",
    kinds={"duckdb", "mlflow"},
    owners=OWNERS,
    pool=DUCKDB_POOL,
    # refresh after each promotion decision (champion_model: promoted, or refused with the champion unchanged) or
    # a new training frame
    automation_condition=FOLLOW_DEPS,
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
    model = registry.load(name, champion.version)
    frame, model_input = read_frame(warehouse, asset_class, target), None
    if kind == "nhits":
        from models.evaluation import exog_of

        nf = model.unwrap_python_model().nf
        hist, futr = exog_of(nf)
        if hist or futr:  # event-aware: its features, plus the next h bars' known-in-advance ones (FOMC days)
            from models.events import future_rows

            frame = read_frame(warehouse, asset_class, target, hist + futr)
            macro = warehouse.query("SELECT ts, event_type, scheduled, policy_surprise FROM macro_events")
            model_input = pd.concat([frame, future_rows(frame, nf.h, nf.freq, macro, futr)], ignore_index=True)
    out = model.predict(frame if model_input is None else model_input)
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
        "champion": label, "model_kind": kind, "features": champion.tags.get("features", "none"),
        "has_intervals": bool(out.lo.notna().any()),
        "forecast_plot": png_markdown(plot, f"{name} forecast"),
    })
