"""`training_frames`: the warehouse bars as neuralforecast's long frame (unique_id, ds, y)."""

import dagster as dg
from pydantic import Field

from assets.common import DUCKDB_POOL, OWNERS, model_keys, model_partitions
from assets.market_bars import market_bars
from resources import Warehouse


class FramesConfig(dg.Config):
    """Which series go into training."""

    max_series: int | None = Field(
        default=60, ge=1, description="Keep at most this many series (the most recent, then longest); empty = all.")


@dg.asset(
    partitions_def=model_partitions,
    deps=[market_bars],  # each (asset class, target) reads its asset class: Dagster maps the dimension
    group_name="training",
    kinds={"duckdb", "pandas"},
    owners=OWNERS,
    pool=DUCKDB_POOL,
    description=(
        "Training frame per (asset class, target): crypto as 5-minute bars (resampled from 1-minute), equities "
        "and fx as daily bars; target `close` (price) or `volatility` (Garman-Klass per bar, absolute log "
        "return where the bar has no range). Table `training_frames` (asset_class, target, unique_id, ds UTC, y)."),
)
def training_frames(context: dg.AssetExecutionContext, config: FramesConfig,
                    warehouse: Warehouse) -> dg.MaterializeResult:
    from models.frames import to_training_frame
    from storage.bars import read_bars
    from storage.duck import replace_where

    asset_class, target = model_keys(context)
    bars = read_bars(warehouse.query, asset_class)
    frame = to_training_frame(bars, asset_class, target, max_series=config.max_series)
    if frame.empty:
        raise ValueError(f"no {asset_class} series long enough for training; load more bars first")
    with warehouse.transaction() as con:
        replace_where(con, "training_frames", frame.assign(asset_class=asset_class, target=target),
                      {"asset_class": asset_class, "target": target})
    stats = frame.groupby("unique_id").ds.agg(["size", "min", "max"]).reset_index()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "series": dg.MetadataValue.int(len(stats)),
        "freq": frame.attrs.get("freq", ""),
        "first_ds": str(frame.ds.min()), "last_ds": str(frame.ds.max()),
        "series_table": dg.MetadataValue.md(stats.astype(str).head(30).to_markdown(index=False)),
    })
