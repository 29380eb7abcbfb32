"""Event-driven runs: new files in `$TRADECAST_HOME/incoming/` -> ingestion; a drifted asset class (the latest
`drift_metrics`) -> `retrain_job` for its partitions. Both on by default."""

import json

import dagster as dg

from domain.vocabulary import TARGETS
from pipelines.jobs import events_job, ingest_job, retrain_job
from resources import Settings, Warehouse


def _read(warehouse: Warehouse, sql: str, params: list | None = None):
    """A read that tolerates a missing table or a DuckDB file held by a writing run (try again next tick)."""
    import duckdb

    try:
        return warehouse.query(sql, params), None
    except (duckdb.IOException, duckdb.CatalogException) as exc:
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


@dg.sensor(name="incoming_files_sensor", jobs=[ingest_job, events_job], minimum_interval_seconds=30,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Registers files dropped into $TRADECAST_HOME/incoming/ (folders equities/, crypto/, fx/, "
                       "news/, or a <file>.yaml with `tradecast ingest` options) and requests one ingest run per "
                       "partition; files move to incoming/done/, unusable ones to incoming/rejected/ with a "
                       ".reason.txt.")
def incoming_files_sensor(context: dg.SensorEvaluationContext, settings: Settings, warehouse: Warehouse):
    from pipelines.incoming import incoming_dir, process

    root = incoming_dir(settings.root)
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    symbols, _ = _read(warehouse, "SELECT symbol, any_value(asset_class) AS asset_class FROM symbols GROUP BY symbol")
    known = dict(zip(symbols.symbol, symbols.asset_class, strict=True)) if symbols is not None else {}
    outcomes = process(root, known, seen, settings=settings)
    if not outcomes:
        return dg.SkipReason(f"no new files in {root}")
    requests: dict[tuple[str, str | None], list[str]] = {}
    for o in outcomes:
        if o.rejected:
            context.log.warning(f"rejected {o.file}: {o.rejected}")
        else:
            requests.setdefault(("ingest_job" if o.table == "bars" else "events_job", o.asset_class), []).append(o.key)
    cursor = json.dumps(sorted(seen | {o.key for o in outcomes})[-1000:])
    runs = [dg.RunRequest(job_name=job, partition_key=partition, run_key="incoming:" + ",".join(sorted(keys)),
                          tags={"tradecast/trigger": "incoming_files_sensor"})
            for (job, partition), keys in requests.items()]
    skip = None if runs else f"rejected {len(outcomes)} file(s): see incoming/rejected/*.reason.txt"
    return dg.SensorResult(run_requests=runs, cursor=cursor, skip_reason=skip)


LATEST_DRIFT = """
    SELECT asset_class, any_value(class_drifted) AS drifted, any_value(verdict) AS verdict,
           any_value(watermark) AS watermark, max(computed_at) AS computed_at
    FROM drift_metrics d
    WHERE computed_at = (SELECT max(computed_at) FROM drift_metrics x WHERE x.asset_class = d.asset_class)
    GROUP BY asset_class ORDER BY asset_class"""


@dg.sensor(name="drift_sensor", job=retrain_job, minimum_interval_seconds=60,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Reads the latest drift_metrics per asset class; a drifted class gets a retrain_job run per "
                       "target. run_key = partition + data watermark, so the same drift never triggers twice.")
def drift_sensor(context: dg.SensorEvaluationContext, warehouse: Warehouse):
    latest, problem = _read(warehouse, LATEST_DRIFT)
    if latest is None:
        return dg.SkipReason(f"no drift_metrics to read yet ({problem})")
    if latest.empty:
        return dg.SkipReason("drift_metrics has no rows yet: it is computed when market_bars of a class change")
    runs, why = [], []
    for row in latest.itertuples():
        if not row.drifted:
            why.append(f"{row.asset_class}: no drift ({row.verdict})")
            continue
        stamp = row.watermark.isoformat()
        for target in TARGETS:
            key = dg.MultiPartitionKey({"asset_class": row.asset_class, "target": target})
            runs.append(dg.RunRequest(run_key=f"drift|{key}|{stamp}", partition_key=key,
                                      tags={"tradecast/trigger": "drift_sensor", "tradecast/drift": row.verdict[:200]}))
        context.log.info(f"{row.asset_class} drifted ({row.verdict}); requesting retrain_job")
    if not runs:
        return dg.SkipReason("; ".join(why))
    return dg.SensorResult(run_requests=runs)


automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    "automation_condition_sensor", target=dg.AssetSelection.all(), minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Declarative automation, on by default: `quarantine` and `drift_metrics` follow new bars, "
                "`forecasts` follow each promotion decision (`champion_model`, promoted or refused) and "
                "each new training frame.")
