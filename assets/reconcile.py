"""`check_<asset>_counts_reconcile`: rows read = accepted + quarantined, and both match the tables."""


import dagster as dg

from assets.common import DUCKDB_POOL, asset_class_partitions
from resources import Warehouse

TABLES_OF = {"market_bars": ["bars", "symbols"], "news_events": ["news_events"], "macro_events": ["macro_events"]}


def build_reconcile_check(asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    name = asset.key.path[-1]
    partitioned = asset.partitions_def is not None

    @dg.asset_check(
        asset=asset, name=f"check_{name}_counts_reconcile", blocking=True, pool=DUCKDB_POOL,
        partitions_def=asset_class_partitions if partitioned else None,
        description="For every source: rows read = rows accepted + rows quarantined, accepted rows are all in "
                    "the table and quarantined rows all in `quarantine` (nothing lost, nothing doubled).")
    def _check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        from storage.checks import reconcile

        frame = reconcile(warehouse.query, TABLES_OF[name], context.partition_key if partitioned else None)
        return dg.AssetCheckResult(
            passed=bool(len(frame) and frame.ok.all()),
            metadata={"sources": len(frame), "sources_not_reconciled": int((~frame.ok).sum()),
                      "reconciliation": dg.MetadataValue.md(frame.to_markdown(index=False))})

    return _check
