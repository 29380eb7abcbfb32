"""`check_<asset>_counts_reconcile`: rows read = accepted + quarantined, and both match the tables."""


import dagster as dg

from assets.common import DUCKDB_POOL, asset_class_partitions
from resources import Warehouse

TABLES_OF = {"market_bars": ["bars", "symbols"], "news_events": ["news_events"], "macro_events": ["macro_events"]}


def reconcile(warehouse: Warehouse, tables: list[str], asset_class: str | None):
    """Per source: the load record next to what `tables` and `quarantine` actually hold."""
    where, params = ("AND l.asset_class = ?", [asset_class]) if asset_class else ("", [])
    parts = []
    for table in tables:  # table names come from TABLES_OF, never from input
        parts.append(warehouse.query(
            f"""SELECT l.source, l.table_name, l.rows_read, l.rows_accepted, l.rows_quarantined,
                       coalesce(l.rows_stored, l.rows_accepted) AS rows_stored,
                       (SELECT count(*) FROM {table} t WHERE t.source = l.source) AS stored,
                       (SELECT count(*) FROM quarantine q WHERE q.source = l.source
                           AND q.table_name = l.table_name) AS in_quarantine
                FROM source_loads l WHERE l.table_name = ? {where} ORDER BY l.source""", [table, *params]))
    import pandas as pd

    frame = pd.concat(parts, ignore_index=True)
    frame["ok"] = ((frame.rows_read == frame.rows_accepted + frame.rows_quarantined)
                   & (frame.rows_stored == frame.stored) & (frame.rows_quarantined == frame.in_quarantine))
    return frame


def build_reconcile_check(asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    name = asset.key.path[-1]
    partitioned = asset.partitions_def is not None

    @dg.asset_check(
        asset=asset, name=f"check_{name}_counts_reconcile", blocking=True, pool=DUCKDB_POOL,
        partitions_def=asset_class_partitions if partitioned else None,
        description="For every source: rows read = rows accepted + rows quarantined, accepted rows are all in "
                    "the table and quarantined rows all in `quarantine` (nothing lost, nothing doubled).")
    def _check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        frame = reconcile(warehouse, TABLES_OF[name], context.partition_key if partitioned else None)
        return dg.AssetCheckResult(
            passed=bool(len(frame) and frame.ok.all()),
            metadata={"sources": len(frame), "sources_not_reconciled": int((~frame.ok).sum()),
                      "reconciliation": dg.MetadataValue.md(frame.to_markdown(index=False))})

    return _check
