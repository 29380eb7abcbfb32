"""What the assets share: partitions (asset class; asset class x target), the writer pool, owners, the
ingest config and atomic write, and the inline-PNG metadata helper."""


import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from domain.vocabulary import ASSET_CLASSES, TARGETS
from resources import Settings

if TYPE_CHECKING:
    import pandas as pd

    from ingest.catalog import SourceSpec

DUCKDB_POOL = "duckdb_writer"  # DuckDB allows one writer: the instance limits this pool to 1
OWNERS = ["team:data-platform"]
asset_class_partitions = dg.StaticPartitionsDefinition(list(ASSET_CLASSES))
model_partitions = dg.MultiPartitionsDefinition(
    {"asset_class": asset_class_partitions, "target": dg.StaticPartitionsDefinition(list(TARGETS))})


# materialize when any upstream asset updated, once nothing upstream or here is running (forecasts, onnx_model)
FOLLOW_DEPS = (dg.AutomationCondition.any_deps_updated() & ~dg.AutomationCondition.in_progress()
               & ~dg.AutomationCondition.any_deps_in_progress())


def model_keys(context) -> tuple[str, str]:
    """(asset_class, target) of a run on `model_partitions`."""
    keys = context.partition_key.keys_by_dimension
    return keys["asset_class"], keys["target"]


def png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    """A PNG inline in a markdown metadata value, so the asset page shows the picture."""
    import base64

    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


class IngestConfig(dg.Config):
    """Launchpad settings for an ingest run."""

    max_rows_per_source: int | None = Field(
        default=None, ge=1, description="Read only the first N data rows of each file (quick demos); empty = all rows.")


def catalog_specs(settings: Settings) -> list["SourceSpec"]:
    """The sources registered by `tradecast ingest` (they win on duplicate keys), then the bundled catalog;
    a user entry named like a bundled one is refused with both file names."""
    from ingest.catalog import load_catalogs

    user = settings.user_catalog_path
    return load_catalogs([user, settings.catalog_path] if user.exists() else [settings.catalog_path])


def ingest_metadata(recon: "pd.DataFrame", row_count: int) -> dict:
    """Row counts (read = accepted + quarantined) and the per-source table, for the asset page."""
    table = recon[["source", "rows_read", "rows_accepted", "rows_quarantined"]]
    return {
        "dagster/row_count": dg.MetadataValue.int(row_count),
        "rows_read": dg.MetadataValue.int(int(recon.rows_read.sum())),
        "rows_accepted": dg.MetadataValue.int(int(recon.rows_accepted.sum())),
        "rows_quarantined": dg.MetadataValue.int(int(recon.rows_quarantined.sum())),
        "sources": dg.MetadataValue.md(table.to_markdown(index=False)),
    }


def ingest_table(context, config: IngestConfig, settings: Settings, warehouse, table: str) -> tuple:
    """Load every catalog source of an unpartitioned `table` and replace the table atomically."""
    from ingest.catalog import select
    from ingest.load import load_sources
    from storage.queries import write_loaded

    loaded = load_sources(select(catalog_specs(settings), table), table, config.max_rows_per_source)
    with warehouse.transaction() as con:
        recon = write_loaded(con, loaded, {}, context.run_id)
    for row in recon.itertuples():
        context.log.info(f"{row.source}: read {row.rows_read}, accepted {row.rows_accepted}, "
                         f"quarantined {row.rows_quarantined}")
    return loaded, recon


@contextlib.contextmanager
def pool_slot(context, pool: str = DUCKDB_POOL, poll_s: float = 0.5) -> Iterator[None]:
    """Hold a slot of Dagster's ``pool`` for the block only (the asset takes no pool of its own): a training reads
    and writes the warehouse under the `duckdb_writer` pool like every writer, but fits between, slot freed, so the
    partitions train in parallel. The slot shows in the UI's concurrency page like a step's."""
    import time

    storage, run_id = context.instance.event_log_storage, context.run_id
    step_key = f"{context.op_execution_context.node_handle}:io"
    storage.initialize_concurrency_limit_to_default(pool)
    waited = False
    while not storage.claim_concurrency_slot(pool, run_id, step_key).is_claimed:
        if not waited:
            context.log.info(f"waiting for a slot of pool {pool} (another run is reading or writing the warehouse)")
            waited = True
        time.sleep(poll_s)
    try:
        yield
    finally:
        storage.free_concurrency_slot_for_step(run_id, step_key)
