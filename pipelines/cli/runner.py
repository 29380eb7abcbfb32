"""Running a job of the code location from the command line: `run_job` (each `tradecast` command goes through it),
the user-facing message of a failed run, and the "load the bundled bars first" step several commands share.

Runs go through the Dagster instance under $TRADECAST_HOME/dagster_home, so they show in the UI (`make ui`).
Nothing here imports a command module."""

from __future__ import annotations

import click

GATE = "champion_model"  # the promotion gate: its materialization carries the decision ("promoted" / "refused: ...")


def run_job(name: str, partition=None, run_config: dict | None = None, echo=click.echo):
    """Execute a job of the code location in this process, recorded in the tradecast instance.

    Before it starts, dead runs are failed and their writer slots freed, and while the `duckdb_writer` pool is
    held it waits saying by whom and since when (`pipelines.run_guard`); the run carries this process's pid."""
    import uuid

    import dagster as dg

    from assets.common import DUCKDB_POOL
    from assets.freshness import FRESHNESS_CHECK_NAMES
    from pipelines.definitions import defs
    from pipelines.instance import ensure_dagster_home
    from pipelines.run_guard import RunWatch, process_tags, wait_for_pool

    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        wait_for_pool(instance, DUCKDB_POOL, echo)
        run_id = str(uuid.uuid4())
        with RunWatch(instance, run_id, DUCKDB_POOL, echo):
            result = defs.resolve_job_def(name).execute_in_process(
                instance=instance, partition_key=partition, raise_on_error=False, run_id=run_id,
                tags=process_tags(),
                run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}, **(run_config or {})})
    if not result.success:  # a refused promotion is a decision of a successful run, never a failure
        errors = [e.event_specific_data.error for e in result.all_events
                  if e.is_step_failure and e.event_specific_data and e.event_specific_data.error]
        raise click.ClickException(f"{name}{f' [{partition}]' if partition else ''} failed: "
                                   + (user_error(errors[0]) if errors else "see the run in the Dagster UI"))
    checks = [(c.asset_check_key.name, partition or "-", _verdict(c)) for c in result.get_asset_check_evaluations()]
    # a freshness check judges every partition, not this run's: reported (red in the table and the UI), but a
    # stale fx must not stop `tradecast run --asset-class crypto`
    failed = [c.asset_check_key.name for c in result.get_asset_check_evaluations()
              if not c.passed and c.severity.value == "ERROR" and c.asset_check_key.name not in FRESHNESS_CHECK_NAMES]
    if failed:
        raise click.ClickException(f"{name} [{partition}]: checks failed: {failed}")
    decisions = [(f"{GATE} (promotion gate)", partition or "-", e.materialization.metadata["decision"].value)
                 for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == GATE]
    return checks + decisions


def user_error(error) -> str:
    """The first error of a chain that is not Dagster's wrapper, with its own cause when that says more."""
    while error.cause is not None and error.cls_name.startswith("Dagster"):
        error = error.cause
    message = error.message.strip()
    if error.cause is not None and error.cause.message.strip().splitlines()[0] not in message:
        message += f" (cause: {error.cause.message.strip().splitlines()[0]})"
    return message


def _verdict(evaluation) -> str:
    return "passed" if evaluation.passed else f"FAILED ({evaluation.severity.value})"


def ensure_bars(warehouse, asset_class: str, echo=click.echo) -> None:
    """Load the catalog's bars of ``asset_class`` (ingest_job) when ``warehouse`` has none yet."""
    if warehouse.query("SELECT count(*) AS n FROM bars WHERE asset_class = ?", [asset_class]).n.iloc[0] == 0:
        echo(f"ingest_job [{asset_class}] (no bars yet) ...")
        run_job("ingest_job", asset_class)
