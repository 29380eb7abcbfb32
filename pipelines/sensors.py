"""Event-driven runs: new files in `$TRADECAST_HOME/incoming/` -> ingestion; a drifted asset class (the latest
`drift_metrics`) -> `retrain_job` for its partitions; a freshness check that can have turned stale -> its
evaluation; a failed run -> an alert. All on by default."""

import json
import warnings

import dagster as dg

from assets.freshness import FRESHNESS_CHECKS
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


# Dagster's own sensor for freshness checks: it re-runs a passing check once its `dagster/fresh_until_timestamp`
# has passed (a failed one re-runs with the asset's next materialization). Superseded in 1.13 by FreshnessPolicy,
# which judges an asset as a whole, not per partition (assets/freshness.py): its notice is silenced here only.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # dagster's SupersessionWarning
    freshness_checks_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=FRESHNESS_CHECKS, name="freshness_checks_sensor", minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING)


def _root_error(error) -> str:
    """The first error of a chain that is not Dagster's wrapper ("Error occurred while executing op ...")."""
    while error.cause is not None and error.cls_name.startswith("Dagster"):
        error = error.cause
    return error.message.strip()[:2000]


# On by default, unlike Dagster's default: locally an alert is one line in a file under $TRADECAST_HOME (a POST only
# where $TRADECAST_ALERT_WEBHOOK is set), so nothing leaves the machine unasked, and a failure that nobody watched
# still leaves a trace. The `make ui` daemon evaluates it. monitor_all_code_locations: the `tradecast` CLI's runs
# (in process, same instance) carry no code-location origin, so only "all" matches them; the instance has this one
# code location (workspace.yaml), so "all" is nothing more.
@dg.run_failure_sensor(name="run_failure_sensor", minimum_interval_seconds=30, monitor_all_code_locations=True,
                       default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Writes one alert per failed run to $TRADECAST_HOME/alerts/alerts.jsonl (time, "
                                   "job, partition, run id, failed steps, error) and POSTs it as JSON to "
                                   "$TRADECAST_ALERT_WEBHOOK when set (5 s timeout; a failed POST is logged).")
def run_failure_sensor(context: dg.RunFailureSensorContext, settings: Settings) -> None:
    from storage.alerts import post_webhook, record_alert, webhook_url

    run, failure = context.dagster_run, context.failure_event
    steps = {e.step_key: _root_error(e.event_specific_data.error) for e in context.get_step_failure_events()
             if e.event_specific_data is not None and e.event_specific_data.error is not None}
    run_error = getattr(failure.event_specific_data, "error", None)  # a run that failed outside any step
    error = next(iter(steps.values()), None) or (_root_error(run_error) if run_error else failure.message)
    alert = record_alert({"kind": "run_failure", "job": run.job_name, "run_id": run.run_id,
                          "partition": run.tags.get("dagster/partition"), "steps": sorted(steps),
                          "error": error, "step_errors": steps, "message": failure.message}, home=settings.root)
    context.log.error(f"alert: {run.job_name} run {run.run_id} failed (steps {sorted(steps) or '-'}): {error}")
    url = webhook_url()
    if url:
        problem = post_webhook(url, alert)
        if problem:
            context.log.warning(f"alert webhook not reached (the alert is in alerts.jsonl): {problem}")
        else:
            context.log.info("alert posted to $TRADECAST_ALERT_WEBHOOK")
