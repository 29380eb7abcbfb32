"""A killed `tradecast` run never blocks the writer pool (real processes, real signals, a real instance)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

POOL = "duckdb_writer"
INGEST_FX = "from pipelines.cli.runner import run_job; run_job('ingest_job', 'fx')"


def _instance():
    import dagster as dg

    from pipelines.instance import ensure_dagster_home

    ensure_dagster_home()
    return dg.DagsterInstance.get()


def _start(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=os.environ.copy(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for_claim(proc: subprocess.Popen, timeout_s: float = 120) -> str:
    """The run id of the process's run once it holds the pool's slot."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        with _instance() as instance:
            claimed = instance.event_log_storage.get_concurrency_info(POOL).claimed_slots
        if claimed:
            return claimed[0].run_id
        time.sleep(0.2)
    raise AssertionError("the run never claimed the writer slot")


@pytest.mark.slow
@pytest.mark.fault('kill -9 of `tradecast ingest` holding the duckdb_writer slot',
                   'the next CLI run fails the dead run, frees its slot and completes (before: waited forever)')
def test_a_killed_ingest_is_failed_and_its_slot_freed_by_the_next_run(home):
    import dagster as dg

    victim = _start(INGEST_FX)
    run_id = _wait_for_claim(victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    with _instance() as instance:  # the state the probe found: run STARTED, slot held by nobody alive
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
        assert [s.run_id for s in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots] == [run_id]
    again = subprocess.run([sys.executable, "-c", INGEST_FX], cwd=ROOT, env=os.environ.copy(), text=True,
                           capture_output=True, timeout=240)  # before the fix: waits forever (timeout fails it)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"run {run_id[:8]}" in again.stdout and "is gone" in again.stdout
    with _instance() as instance:
        dead = instance.get_run_by_id(run_id)
        assert dead.status == dg.DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_info(POOL).claimed_slots == []
        latest = instance.get_runs(limit=1)[0]
        assert latest.run_id != run_id and latest.status == dg.DagsterRunStatus.SUCCESS


@pytest.mark.slow
@pytest.mark.fault('a run waiting for the writer pool held by a live (stopped) run',
                   'it names the holder (run, job, partition, step, pid, since when) and SIGTERM ends it')
def test_a_waiting_run_says_who_holds_the_writer_and_stops_on_sigterm(home):
    holder = _start(INGEST_FX)
    run_id = _wait_for_claim(holder)
    holder.send_signal(signal.SIGSTOP)  # alive, holding the slot
    try:
        waiter = _start(INGEST_FX)
        lines, deadline = [], time.monotonic() + 120
        while time.monotonic() < deadline:
            line = waiter.stdout.readline()
            lines.append(line)
            if "waiting for the duckdb_writer pool" in line:
                break
        said = "".join(lines)
        assert f"held by run {run_id[:8]} (ingest_job [fx], step market_bars, pid {holder.pid}) since " in said, said
        waiter.send_signal(signal.SIGTERM)
        assert waiter.wait(timeout=15) != 0  # before the fix SIGTERM was ignored while waiting
    finally:
        holder.send_signal(signal.SIGCONT)
    assert holder.wait(timeout=240) == 0, holder.stdout.read()[-2000:]


@pytest.mark.fault('a slot held by a run the instance no longer knows',
                   'the next run frees it')
def test_slots_of_finished_or_unknown_runs_are_freed(home):
    from pipelines.run_guard import reap

    with _instance() as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots(POOL, 1)
        storage.claim_concurrency_slot(POOL, "0" * 36, "market_bars")  # a run the instance no longer knows
        assert len(storage.get_concurrency_info(POOL).claimed_slots) == 1
        done = reap(instance)
        assert storage.get_concurrency_info(POOL).claimed_slots == []
        assert any("freed the slot of run 00000000 (deleted)" in line for line in done), done
