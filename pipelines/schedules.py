"""Retraining on a clock: crypto several times a day (it trades around the clock), equities and fx once a day
after their close, and the benchmark weekly. All on by default (`make ui` starts the daemon)."""

import dagster as dg

from domain.vocabulary import ASSET_CLASSES, TARGETS
from pipelines.jobs import benchmark_job, retrain_job

# cron in UTC: US equities close 16:00 New York (21:00 UTC in winter, 20:00 in summer -> 21:30 is after both);
# the fx day rolls at 17:00 New York (22:00 UTC in winter) -> 22:30
RETRAIN_CRONS = {"crypto": "15 */6 * * *", "equities": "30 21 * * 1-5", "fx": "30 22 * * 1-5"}


def retrain_requests(asset_class: str, stamp: str) -> list[dg.RunRequest]:
    """One run per target of the class; the run_key (class, target, scheduled time) makes a tick idempotent."""
    return [dg.RunRequest(run_key=f"{asset_class}|{target}|{stamp}",
                          partition_key=dg.MultiPartitionKey({"asset_class": asset_class, "target": target}),
                          tags={"tradecast/trigger": "schedule"})
            for target in TARGETS]


def _retrain_schedule(asset_class: str) -> dg.ScheduleDefinition:
    @dg.schedule(name=f"{asset_class}_retrain_schedule", cron_schedule=RETRAIN_CRONS[asset_class], job=retrain_job,
                 execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"Retrain the {asset_class} models (close and volatility) at "
                             f"{RETRAIN_CRONS[asset_class]} UTC.")
    def _schedule(context: dg.ScheduleEvaluationContext):
        return retrain_requests(asset_class, context.scheduled_execution_time.isoformat())

    return _schedule


retrain_schedules = [_retrain_schedule(c) for c in ASSET_CLASSES]


@dg.schedule(name="weekly_benchmark_schedule", cron_schedule="0 3 * * 0", job=benchmark_job, execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="The benchmark comparison (quick profile) for every asset class, Sundays 03:00 UTC.")
def weekly_benchmark_schedule(context: dg.ScheduleEvaluationContext):
    stamp = context.scheduled_execution_time.isoformat()
    return [dg.RunRequest(run_key=f"{c}|{stamp}", partition_key=c, tags={"tradecast/trigger": "schedule"})
            for c in ASSET_CLASSES]
