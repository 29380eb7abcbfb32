"""`market_bars`: OHLCV bars of one asset class from every catalog source, validated, in DuckDB `bars`."""


import dagster as dg

from assets.common import (DUCKDB_POOL, OWNERS, IngestConfig, asset_class_partitions, catalog_specs,
                           ingest_metadata, write_loaded)
from resources import Settings, Warehouse

# the largest gap between consecutive bars that is still normal, per (asset class, freq):
# equities and fx close at weekends and holidays, crypto trades around the clock
MAX_GAP = {
    ("equities", "1d"): "5D", ("equities", "1h"): "4D", ("equities", "1min"): "4D", ("equities", "5min"): "4D",
    ("fx", "1d"): "5D", ("fx", "1h"): "4D", ("fx", "5min"): "4D", ("fx", "1min"): "4D",
    ("crypto", "1d"): "3D", ("crypto", "1h"): "12h", ("crypto", "5min"): "2h", ("crypto", "1min"): "1h",
}
_CRYPTO_GAP_BARS = 12  # crypto at any other frequency: up to 12 bars (at least an hour); equities/fx: 5 days


def max_gap(asset_class: str, freq: str):
    """The largest normal gap between consecutive bars of `asset_class` at bar frequency `freq` (a Timedelta)."""
    import pandas as pd

    from ingest.catalog import freq_step

    if (asset_class, freq) in MAX_GAP:
        return pd.Timedelta(MAX_GAP[asset_class, freq])
    if asset_class == "crypto":
        return max(_CRYPTO_GAP_BARS * freq_step(freq), pd.Timedelta("1h"))
    return pd.Timedelta("5D")


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

    asset_class = context.partition_key
    specs = catalog_specs(settings)
    bars = load_sources(select(specs, "bars", asset_class), "bars", config.max_rows_per_source)
    refs = load_sources(select(specs, "symbols", asset_class), "symbols", config.max_rows_per_source)
    scope = {"asset_class": asset_class}
    with warehouse.transaction() as con:
        recon = write_loaded(con, bars, scope, context.run_id)
        con.execute("DELETE FROM symbols WHERE asset_class = ?", [asset_class])
        recon_refs = write_loaded(con, refs, scope, context.run_id) if refs.results else None
        con.execute("""INSERT INTO symbols SELECT DISTINCT symbol, asset_class, NULL, NULL, 'bars' FROM bars
                       WHERE asset_class = ? AND symbol NOT IN (SELECT symbol FROM symbols WHERE asset_class = ?)""",
                    [asset_class, asset_class])
        summary = con.execute("""SELECT freq, count(*) AS bars, count(DISTINCT symbol) AS symbols,
                                        min(ts) AS first_ts, max(ts) AS last_ts
                                 FROM bars WHERE asset_class = ? GROUP BY freq ORDER BY freq""", [asset_class]).df()
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
    bad = warehouse.query(
        """SELECT symbol, freq, ts, open, high, low, close FROM bars WHERE asset_class = ? AND
           (least(open, high, low, close) <= 0 OR high < greatest(open, close) * (1 - 1e-9)
            OR low > least(open, close) * (1 + 1e-9)) LIMIT 20""", [context.partition_key])
    return dg.AssetCheckResult(passed=bad.empty, metadata={"violations_sample": dg.MetadataValue.md(
        bad.to_markdown(index=False) if len(bad) else "none")})


@dg.asset_check(asset=market_bars, partitions_def=asset_class_partitions, pool=DUCKDB_POOL,
                description="No gap between consecutive bars of a symbol larger than normal for its frequency "
                            "(weekends/holidays allowed); warns with the worst gaps.")
def check_market_bars_no_large_gaps(context: dg.AssetCheckExecutionContext,
                                    warehouse: Warehouse) -> dg.AssetCheckResult:
    import pandas as pd

    gaps = warehouse.query(
        """SELECT symbol, freq, max(gap) AS max_gap, arg_max(prev_ts, gap) AS gap_after, count(*) AS bars FROM (
             SELECT symbol, freq, ts, lag(ts) OVER w AS prev_ts, ts - lag(ts) OVER w AS gap
             FROM bars WHERE asset_class = ? WINDOW w AS (PARTITION BY symbol, freq ORDER BY ts))
           GROUP BY symbol, freq ORDER BY symbol, freq""", [context.partition_key])
    limit = gaps.freq.map(lambda f: max_gap(context.partition_key, f))
    large = gaps[pd.to_timedelta(gaps.max_gap) > limit].sort_values("max_gap", ascending=False)
    return dg.AssetCheckResult(
        passed=large.empty, severity=dg.AssetCheckSeverity.WARN,
        metadata={"series_checked": len(gaps), "series_with_large_gaps": len(large),
                  "largest_gaps": dg.MetadataValue.md(large.head(15).astype(str).to_markdown(index=False)
                                                      if len(large) else "none")})


@dg.asset_check(asset=market_bars, partitions_def=asset_class_partitions, pool=DUCKDB_POOL,
                description="Coverage per symbol: every series has >= 30 bars and none stops more than 90 days "
                            "before the latest bar of its frequency (stale series); warns with the list.")
def check_market_bars_coverage(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    cov = warehouse.query(
        """SELECT symbol, freq, count(*) AS bars, min(ts) AS first_ts, max(ts) AS last_ts,
                  max(max(ts)) OVER (PARTITION BY freq) - max(ts) AS behind_latest
           FROM bars WHERE asset_class = ? GROUP BY symbol, freq ORDER BY symbol""", [context.partition_key])
    import pandas as pd

    thin = cov[(cov.bars < 30) | (pd.to_timedelta(cov.behind_latest) > pd.Timedelta("90D"))]
    return dg.AssetCheckResult(
        passed=len(cov) > 0 and thin.empty, severity=dg.AssetCheckSeverity.WARN,
        metadata={"series": len(cov), "thin_or_stale": len(thin),
                  "thin_or_stale_series": dg.MetadataValue.md(thin.head(20).astype(str).to_markdown(index=False)
                                                              if len(thin) else "none")})
