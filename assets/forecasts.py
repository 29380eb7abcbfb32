"""`forecasts`: the champion's forecasts for every series of a class, with intervals where the loss has them."""

import dagster as dg

from assets.champion_model import champion_model
from assets.common import DUCKDB_POOL, FOLLOW_DEPS, OWNERS, model_keys, model_partitions, png_markdown
from assets.training_frames import training_frames
from domain.vocabulary import CHAMPION, model_name
from resources import ModelRegistry, Warehouse


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

    from models.plots import plot_forecasts
    from storage.duck import replace_where
    from storage.queries import model_input

    asset_class, target = model_keys(context)
    name = model_name(asset_class, target)
    champion = registry.alias(name, CHAMPION)
    if champion is None:
        raise dg.Failure(f"{name} has no champion yet: materialize nhits_model first")
    model = registry.load(name, champion.version)
    # an event-aware champion reads its features, plus the next h bars' known-in-advance ones (FOMC days)
    given = model_input(warehouse.query, asset_class, target, model, future=True)
    out = model.predict(given.with_future)
    out = out.rename(columns={"unique_id": "symbol"}).assign(
        asset_class=asset_class, target=target, model_name=name, model_version=champion.version,
        model_kind=champion.kind, created_at=pd.Timestamp.now(tz="UTC"))
    with warehouse.transaction() as con:
        replace_where(con, "forecasts", out, {"asset_class": asset_class, "target": target})
    symbols = sorted(out.symbol.unique())[:3]
    plot = plot_forecasts(given.history, out.rename(columns={"symbol": "unique_id"}), symbols,
                          title=f"{name} champion {champion.label}: {target} forecast")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": dg.MetadataValue.int(len(out)), "symbols": dg.MetadataValue.int(out.symbol.nunique()),
        "champion": champion.label, "model_kind": champion.kind, "features": champion.features,
        "has_intervals": bool(out.lo.notna().any()),
        "forecast_plot": png_markdown(plot, f"{name} forecast"),
    })
