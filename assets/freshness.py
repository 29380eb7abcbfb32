"""Freshness checks: every partition of `market_bars` (per asset class) and `forecasts` (per class x target) was
materialized within its window (Settings: 26 h for bars, 8 days for forecasts).

Not Dagster's `build_last_update_freshness_checks`: in 1.13 it reads the latest materialization of *any*
partition (`partition_key=None`), so a fresh crypto partition would hide fx bars a week old, and its successor,
`FreshnessPolicy`, also judges the asset as a whole and is no asset check. These read the latest materialization of
each partition from the instance and fail naming the stale ones with their ages. Their results carry Dagster's
`dagster/fresh_until_timestamp`, so Dagster's `build_sensor_for_freshness_checks` re-runs them as soon as a
partition can have gone stale (`freshness_checks_sensor`, pipelines/sensors.py); they also run with every job that
materializes the asset.

Severity ERROR: stale bars or a missed retrain is something broken (a feed or a schedule), red in the UI. A
partition never materialized is listed but not stale: `tradecast run --asset-class crypto` leaves the others empty
by choice, and a fresh install has nothing to be late with."""

import datetime as dt
import time
from collections.abc import Callable

import dagster as dg

from assets.forecasts import forecasts
from assets.market_bars import market_bars
from resources import Settings

FRESH_UNTIL = "dagster/fresh_until_timestamp"  # when a passing check can turn stale: read by Dagster's sensor


def words(seconds: float) -> str:
    """An age for people: 3d 4h, 5h 12m, 7m 3s, 0.042s."""
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60}m"
    if s >= 60:
        return f"{s // 60}m {s % 60}s"
    return f"{seconds:.3g}s"


def partition_ages(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_keys: list[str],
                   now: float) -> dict[str, float | None]:
    """Seconds since each partition's latest materialization (None: never materialized)."""
    ages: dict[str, float | None] = {}
    for key in partition_keys:
        latest = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[key]), limit=1).records
        ages[str(key)] = now - latest[0].timestamp if latest else None
    return ages


def freshness_result(ages: dict[str, float | None], window: dt.timedelta, now: float) -> dg.AssetCheckResult:
    """Failed (ERROR) when a materialized partition is older than ``window``; the metadata name the stale
    partitions with their ages, every partition's age and, passing, when the oldest one turns stale."""
    limit = window.total_seconds()
    seen = {k: a for k, a in ages.items() if a is not None}
    stale = {k: a for k, a in sorted(seen.items(), key=lambda kv: -kv[1]) if a > limit}
    never = sorted(k for k, a in ages.items() if a is None)
    table = "| partition | last materialized | age | state |\n|---|---|---|---|\n" + "\n".join(
        f"| {k} | {dt.datetime.fromtimestamp(now - a, dt.UTC):%Y-%m-%d %H:%M:%S} UTC | {words(a)} | "
        f"{'STALE' if k in stale else 'fresh'} |" if a is not None else f"| {k} | never | - | not checked |"
        for k, a in ages.items())
    metadata: dict[str, dg.RawMetadataValue] = {
        "window": words(limit),
        "stale_partitions": dg.MetadataValue.json({k: words(a) for k, a in stale.items()}),
        "never_materialized": dg.MetadataValue.json(never),
        "partitions": dg.MetadataValue.md(table),
    }
    if seen:
        metadata["oldest_materialization"] = dg.MetadataValue.timestamp(now - max(seen.values()))
    if stale:
        description = (f"stale (last materialized more than {words(limit)} ago): "
                       + ", ".join(f"{k} {words(a)} ago" for k, a in stale.items()))
    elif seen:
        oldest = max(seen, key=seen.__getitem__)
        description = f"every materialized partition is within {words(limit)} (oldest: {oldest}, {words(seen[oldest])})"
    else:
        description = "no partition materialized yet: nothing can be stale"
    if not stale:  # nothing seen: checked again with the asset's first materialization, or a window from now
        metadata[FRESH_UNTIL] = dg.MetadataValue.timestamp(now + limit - max(seen.values(), default=0.0))
    return dg.AssetCheckResult(passed=not stale, severity=dg.AssetCheckSeverity.ERROR, description=description,
                               metadata=metadata)


def _freshness_check(asset: dg.AssetsDefinition, window: Callable[[Settings], dt.timedelta],
                     description: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name=f"check_{asset.key.path[-1]}_fresh", description=description)
    def _check(context: dg.AssetCheckExecutionContext, settings: Settings) -> dg.AssetCheckResult:
        now = time.time()
        keys = asset.partitions_def.get_partition_keys()
        return freshness_result(partition_ages(context.instance, asset.key, keys, now), window(settings), now)

    return _check


check_market_bars_fresh = _freshness_check(
    market_bars, lambda s: s.market_bars_window,
    "Every asset class's bars were materialized within the window ($TRADECAST_MARKET_BARS_MAX_AGE, default 26h): "
    "fails naming the stale classes and their ages. Never-materialized classes are listed, not failed.")
check_forecasts_fresh = _freshness_check(
    forecasts, lambda s: s.forecasts_window,
    "Every (asset class, target)'s forecasts were materialized within the window ($TRADECAST_FORECASTS_MAX_AGE, "
    "default 8d: a missed retrain): fails naming the stale partitions and their ages. Never-materialized "
    "partitions are listed, not failed.")
FRESHNESS_CHECKS = [check_market_bars_fresh, check_forecasts_fresh]
# about every partition, not the run's own: the CLI reports them but does not fail a run's command on them
FRESHNESS_CHECK_NAMES = frozenset(c.check_key.name for c in FRESHNESS_CHECKS)
