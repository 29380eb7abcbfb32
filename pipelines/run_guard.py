"""A killed run never blocks the writer pool: CLI runs record their process, and every CLI run first frees
what dead runs held.

`tradecast` executes jobs in its own process (`execute_in_process`). Killed with `kill -9`, such a run stays
STARTED and keeps its `duckdb_writer` concurrency slot, so every later writer waits forever; the daemon's run
monitoring (enabled in the instance's `dagster.yaml`, see `pipelines.instance`) looks after runs that the
daemon or the UI launched, not these. So each CLI run carries the tags `tradecast/pid`, `tradecast/host` and
`tradecast/pid_started`; before a run starts, `reap` marks failed every in-progress run whose process on this
host is gone (the start time guards against a reused pid) and frees the concurrency slots of every finished
run (a run marked failed by hand keeps its slot otherwise). `wait_for_pool` then waits, saying who holds the
pool and since when, instead of waiting silently inside Dagster (where SIGINT/SIGTERM are deferred).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg

PID_TAG, HOST_TAG, STARTED_TAG = "tradecast/pid", "tradecast/host", "tradecast/pid_started"
IN_PROGRESS = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
               dg.DagsterRunStatus.CANCELING]


def process_tags() -> dict[str, str]:
    """Tags that let a later process tell whether this run's process still lives."""
    import psutil

    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(),
            STARTED_TAG: f"{psutil.Process().create_time():.3f}"}


def process_alive(tags: dict[str, str]) -> bool | None:
    """True / False for a run started by a tradecast process on this host; None when that cannot be told."""
    import psutil

    if PID_TAG not in tags or tags.get(HOST_TAG) != socket.gethostname():
        return None
    try:
        proc = psutil.Process(int(tags[PID_TAG]))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(proc.create_time() - float(tags.get(STARTED_TAG, proc.create_time()))) < 1.0
    except (psutil.NoSuchProcess, ValueError):
        return False


@dataclass(frozen=True)
class Holder:
    """A run holding (or queued for) a slot of a pool."""

    run_id: str
    job: str
    partition: str
    step: str
    since: Any  # datetime (UTC) when the slot was assigned, or None
    pid: str

    def describe(self) -> str:
        since = f" since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else ""
        where = f" [{self.partition}]" if self.partition else ""
        pid = f", pid {self.pid}" if self.pid else ""
        return f"run {self.run_id[:8]} ({self.job}{where}, step {self.step}{pid}){since}"


def reap(instance: dg.DagsterInstance) -> list[str]:
    """Fail in-progress runs whose process died, free slots of finished runs; returns what was done."""
    done = []
    for run in instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS)):
        if process_alive(run.tags) is False:
            message = (f"the process of this run (pid {run.tags[PID_TAG]} on {run.tags[HOST_TAG]}) is gone (killed?): "
                       "marked failed by tradecast, its concurrency slots freed")
            instance.report_run_failed(run, message=message)
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            done.append(f"run {run.run_id[:8]} ({run.job_name}): {message}")
    storage = instance.event_log_storage
    for pool in storage.get_concurrency_keys():
        info = storage.get_concurrency_info(pool)
        for run_id in {s.run_id for s in info.claimed_slots} | {s.run_id for s in info.pending_steps}:
            run = instance.get_run_by_id(run_id)
            if run is None or run.is_finished:
                storage.free_concurrency_slots_for_run(run_id)
                state = run.status.value if run else "deleted"
                done.append(f"pool {pool}: freed the slot of run {run_id[:8]} ({state})")
    return done


def holders(instance: dg.DagsterInstance, pool: str, exclude: str | None = None) -> list[Holder]:
    """The runs holding a slot of ``pool`` (not ``exclude``), with the time each slot was assigned."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    assigned = {(p.run_id, p.step_key): p.assigned_timestamp for p in info.pending_steps}
    out = []
    for slot in info.claimed_slots:
        if slot.run_id == exclude:
            continue
        run = instance.get_run_by_id(slot.run_id)
        tags = run.tags if run else {}
        out.append(Holder(slot.run_id, run.job_name if run else "?", tags.get("dagster/partition", ""),
                          slot.step_key, assigned.get((slot.run_id, slot.step_key)), tags.get(PID_TAG, "")))
    return out


def pool_free(instance: dg.DagsterInstance, pool: str) -> bool:
    info = instance.event_log_storage.get_concurrency_info(pool)
    return info.limit is None or len(info.claimed_slots) < info.limit


def wait_for_pool(instance: dg.DagsterInstance, pool: str, echo: Callable[[str], None], *,
                  poll_s: float = 1.0, say_every_s: float = 30.0, timeout_s: float | None = None) -> None:
    """Return once ``pool`` has a free slot; meanwhile reap dead runs and say who holds it (Ctrl-C stops)."""
    for line in reap(instance):
        echo(line)
    start, said = time.monotonic(), None
    while not pool_free(instance, pool):
        now = time.monotonic()
        if said is None or now - said >= say_every_s:
            held = "; ".join(h.describe() for h in holders(instance, pool)) or "another run"
            echo(f"waiting for the {pool} pool: held by {held}")
            said = now
        if timeout_s is not None and now - start > timeout_s:
            raise TimeoutError(f"the {pool} pool is still held after {timeout_s:.0f} s: "
                               + "; ".join(h.describe() for h in holders(instance, pool)))
        time.sleep(poll_s)
        for line in reap(instance):
            echo(line)


class RunWatch:
    """While run ``run_id`` executes in this process: say who holds ``pool`` when the run waits for it, and honour
    SIGINT/SIGTERM during such a wait (Dagster defers them to its next checkpoint, which a waiting run never
    reaches): the run is marked canceled, its pending claims freed, and the process exits with 130."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str, pool: str, echo: Callable[[str], None],
                 poll_s: float = 1.0, say_every_s: float = 30.0) -> None:
        import threading

        self.instance, self.run_id, self.pool, self.echo = instance, run_id, pool, echo
        self.poll_s, self.say_every_s = poll_s, say_every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tradecast-run-watch", daemon=True)

    def __enter__(self) -> RunWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def waiting(self) -> bool:
        info = self.instance.event_log_storage.get_concurrency_info(self.pool)
        mine = {p.step_key for p in info.pending_steps if p.run_id == self.run_id and p.assigned_timestamp is None}
        return bool(mine)

    def _loop(self) -> None:
        from dagster._utils.interrupts import check_captured_interrupt

        said = None
        while not self._stop.wait(self.poll_s):
            try:
                if not self.waiting():
                    continue
                if check_captured_interrupt():
                    self._cancel()
                now = time.monotonic()
                if said is None or now - said >= self.say_every_s:
                    held = "; ".join(h.describe() for h in holders(self.instance, self.pool, exclude=self.run_id))
                    self.echo(f"waiting for the {self.pool} pool: held by {held or 'another run'}")
                    said = now
            except Exception as exc:  # noqa: BLE001 - the watch must never take the run down; say why it stopped
                self.echo(f"run watch stopped: {type(exc).__name__}: {exc}")
                return

    def _cancel(self) -> None:
        run = self.instance.get_run_by_id(self.run_id)
        self.instance.event_log_storage.free_concurrency_slots_for_run(self.run_id)
        if run is not None and not run.is_finished:
            self.instance.report_run_canceled(run, message="interrupted while waiting for the "
                                                           f"{self.pool} pool: nothing was written")
        self.echo(f"interrupted while waiting for the {self.pool} pool: run {self.run_id[:8]} canceled")
        os._exit(130)
