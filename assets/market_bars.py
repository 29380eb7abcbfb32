"""`market_bars`: OHLCV bars of one asset class from every catalog source, validated, in DuckDB `bars`."""


import dagster as dg

from assets.common import DUCKDB_POOL, OWNERS, IngestConfig, asset_class_partitions, catalog_specs, ingest_metadata
from resources import Settings, Warehouse


@dg.asset(
    partitions_def=asset_class_partitions,
    group_name="ingestion",
    kinds={"duckdb", "pandas"},
    owners=OWNERS,
    tags={"layer": "raw"},
    pool=DUCKDB_POOL,
    description=(
        "Historical OHLCV bars of one asset class (partition) from every catalog source, validated with "
        "Pandera. Table `bars` (ts UTC, symbol, asset_class, freq, OHLC, volume, source), unique on "
        "(asset_class, symbol, freq, ts); failing rows go to `quarantine` with their reasons. A trades source "
        "(ts, symbol, price, amount) is validated per trade and aggregated into OHLCV bars; its counts are in "
        "trades. Reference data for the class (sectors) goes to `symbols`. The partition is replaced in one "
        "transaction."),
)
def market_bars(context: dg.AssetExecutionContext, config: IngestConfig, settings: Settings,
                warehouse: Warehouse) -> dg.MaterializeResult:
    from ingest.catalog import select
    from ingest.load import load_sources
    from storage.bars import write_bars

    asset_class = context.partition_key
    specs = catalog_specs(settings)
    bars = load_sources(select(specs, "bars", asset_class), "bars", config.max_rows_per_source)
    refs = load_sources(select(specs, "symbols", asset_class), "symbols", config.max_rows_per_source)
    with warehouse.transaction() as con:
        recon, recon_refs, summary = write_bars(con, bars, refs, asset_class, context.run_id)
    for row in recon.itertuples():
        context.log.info(f"{row.source}: read {row.rows_read} {row.kind}, accepted {row.rows_accepted}, "
                         f"quarantined {row.rows_quarantined}, stored {row.rows_stored} bars")
    metadata = ingest_metadata(recon, int(summary.bars.sum()))
    trades = recon[recon.kind == "trades"]
    if len(trades):  # counts in trades; the bars they were aggregated into beside them
        metadata["trade_sources"] = dg.MetadataValue.md(trades[[
            "source", "rows_read", "rows_accepted", "rows_quarantined", "rows_stored"]].rename(columns={
                "rows_read": "trades_read", "rows_accepted": "trades_accepted",
                "rows_quarantined": "trades_quarantined", "rows_stored": "bars_built"}).to_markdown(index=False))
    metadata["by_frequency"] = dg.MetadataValue.md(summary.to_markdown(index=False))
    metadata["symbols"] = dg.MetadataValue.int(int(len(refs.split.accepted)) + int(summary.symbols.sum()))
    if recon_refs is not None:
        metadata["reference_sources"] = dg.MetadataValue.md(recon_refs.to_markdown(index=False))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(asset=market_bars, partitions_def=asset_class_partitions, pool=DUCKDB_POOL,
                description="Prices > 0 and low <= open, close <= high for every stored bar.")
def check_market_bars_ohlc_consistent(context: dg.AssetCheckExecutionContext,
                                      warehouse: Warehouse) -> dg.AssetCheckResult:
    from storage.checks import ohlc_violations

    bad = ohlc_violations(warehouse.query, context.partition_key)
    return dg.AssetCheckResult(passed=bad.empty, metadata={"violations_sample": dg.MetadataValue.md(
        bad.to_markdown(index=False) if len(bad) else "none")})


@dg.asset_check(asset=market_bars, partitions_def=asset_class_partitions, pool=DUCKDB_POOL,
                description="No gap between consecutive bars of a symbol larger than normal for its frequency "
                            "(weekends/holidays allowed); warns with the worst gaps.")
def check_market_bars_no_large_gaps(context: dg.AssetCheckExecutionContext,
                                    warehouse: Warehouse) -> dg.AssetCheckResult:
    from storage.checks import large_gaps

    gaps, large = large_gaps(warehouse.query, context.partition_key)
    return dg.AssetCheckResult(
        passed=large.empty, severity=dg.AssetCheckSeverity.WARN,
        metadata={"series_checked": len(gaps), "series_with_large_gaps": len(large),
                  "largest_gaps": dg.MetadataValue.md(large.head(15).astype(str).to_markdown(index=False)
                                                      if len(large) else "none")})


@dg.asset_check(asset=market_bars, partitions_def=asset_class_partitions, pool=DUCKDB_POOL,
                description="Coverage per symbol: every series has >= 30 bars and none stops more than 90 days "
                            "before the latest bar of its frequency (stale series); warns with the list.")
def check_market_bars_coverage(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    from storage.checks import coverage

    cov, thin = coverage(warehouse.query, context.partition_key)
    return dg.AssetCheckResult(
        passed=len(cov) > 0 and thin.empty, severity=dg.AssetCheckSeverity.WARN,
        metadata={"series": len(cov), "thin_or_stale": len(thin),
                  "thin_or_stale_series": dg.MetadataValue.md(thin.head(20).astype(str).to_markdown(index=False)
                                                              if len(thin) else "none")})
