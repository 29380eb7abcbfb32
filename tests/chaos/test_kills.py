"""`kill -9` of pipeline runs: an ingest inside its write transaction, a training run mid-fit and while it
registers, an export while it writes its ONNX files; and runs racing each other for the warehouse.

Each victim is a real `tradecast` process (`pipelines.cli.runner.run_job` in a `python -c` child, or `python -m
pipelines.cli ingest`) on the test's own TRADECAST_HOME. Where the kill must land at one exact point, the child
installs a pause before it starts: at that point it writes a marker file and stops itself (SIGSTOP), and the test
kills it with SIGKILL, so what is on disk is exactly what a `kill -9` at that moment leaves. Afterwards: the
warehouse opens read-write and holds the last committed state, the registry holds no half-registered version, and
a re-run (a normal CLI run: `pipelines.run_guard` frees the dead run's writer slot) completes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Self

import pytest

from tests.conftest import ROOT, run_job

FX_CLOSE = {"asset_class": "fx", "target": "close"}
NAME = "nhits-fx-close"
TRAIN = {"max_steps": 5, "n_windows": 2}  # the quick profile, few steps: the kill cases need a model, not a good one
CLEAN_COLUMNS = {  # what a load writes, without the run's id and clock
    "bars": "asset_class, symbol, freq, ts, open, high, low, close, volume, source, source_row",
    "quarantine": "table_name, source, source_file, source_row, asset_class, reasons, raw",
    "source_loads": "source, table_name, asset_class, path, rows_read, rows_accepted, rows_quarantined, kind, "
                    "rows_stored",
    "symbols": "symbol, asset_class, sector, company, source",
}

# installed in a child before its run: `_chaos_pause(what)` writes the marker file and stops the process
PAUSE = """
import os, signal
def _chaos_pause(what):
    with open(os.environ["CHAOS_MARK"], "w") as fh:
        fh.write(what)
    os.kill(os.getpid(), signal.SIGSTOP)
"""
IN_INGEST_TRANSACTION = PAUSE + """
import storage.queries as _w  # write_loaded (the ingest write) looks replace_where up here
_real_replace = _w.replace_where
def _replace(con, table, frame, where):
    n = _real_replace(con, table, frame, where)
    if table == "bars":  # the partition deleted and the new bars inserted, nothing committed yet
        _chaos_pause(f"inside the transaction: {n} bars inserted, not committed")
    return n
_w.replace_where = _replace
"""
AFTER_VERSION_CREATED = PAUSE + """
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as _Store
_real_create = _Store.create_model_version
def _create(self, name, *args, **kwargs):
    created = _real_create(self, name, *args, **kwargs)
    _chaos_pause(f"version {created.version} of {name} created")
    return created
_Store.create_model_version = _create
"""
WHILE_LOGGING_THE_MODEL = PAUSE + """
import mlflow.pyfunc as _pyfunc
def _log_model(*args, **kwargs):
    _chaos_pause("MLflow run started, the model's files not yet logged")
_pyfunc.log_model = _log_model
"""
MID_ONNX_COPY = PAUSE + """
import shutil
_real_copy2 = shutil.copy2
def _copy2(src, dst, *args, **kwargs):
    if str(dst).endswith("model.onnx") and "mlartifacts" in str(dst):  # MLflow copying the export into the store
        data = open(src, "rb").read()
        with open(dst, "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            os.fsync(fh.fileno())
        _chaos_pause(f"{dst}: {len(data) // 2} of {len(data)} bytes written")
    return _real_copy2(src, dst, *args, **kwargs)
shutil.copy2 = _copy2
"""

FSIZE_LAUNCHER = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
                  "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


def job_code(job: str, partition=None, run_config: dict | None = None, hook: str = "") -> str:
    """A `python -c` program: ``hook``, then ``pipelines.cli.runner.run_job`` as `tradecast` runs it (a failed run
    prints click's one-line error and exits 1)."""
    key = f"dg.MultiPartitionKey({partition!r})" if isinstance(partition, dict) else repr(partition)
    return hook + f"""
import sys, click, dagster as dg
from pipelines.cli.runner import run_job
try:
    run_job({job!r}, {key}, {run_config!r})
except click.ClickException as exc:
    exc.show()
    sys.exit(exc.exit_code)
"""


class Child:
    """A `tradecast` process (its own process group, killed in ``close``); its output is collected by a thread."""

    def __init__(self, args: list[str], env: dict | None = None, fsize_limit: int | None = None,
                 mark: Path | None = None):
        env = {**(env or os.environ), "PYTHONUNBUFFERED": "1"}
        if mark is not None:
            env["CHAOS_MARK"] = str(mark)
        if fsize_limit is not None:  # no file it writes may grow past this (a full disk): RLIMIT_FSIZE, then exec
            args = ["-c", FSIZE_LAUNCHER.format(limit=fsize_limit), *args]
        self.mark, self.lines = mark, []
        self.proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @classmethod
    def job(cls, job: str, partition=None, run_config=None, hook: str = "", **kwargs) -> Child:
        return cls(["-c", job_code(job, partition, run_config, hook)], **kwargs)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, ready, what: str, timeout_s: float, poll_s: float = 0.05) -> None:
        """Poll ``ready()`` (every ``poll_s``, at most ``timeout_s``) while the process lives."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert self.proc.poll() is None, f"the process ended (rc {self.proc.returncode}) before {what}:\n" + \
                self.output[-3000:]
            assert time.monotonic() < deadline, f"no {what} after {timeout_s:.0f} s:\n" + self.output[-3000:]
            time.sleep(poll_s)

    def wait_paused(self, timeout_s: float = 240) -> str:
        """Wait until the child reached its pause (marker written, process stopped); returns what it said."""
        self.wait_for(lambda: self.mark.exists() and _stopped(self.proc.pid), "pause", timeout_s)
        return self.mark.read_text()

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL

    def finish(self, timeout_s: float = 300) -> int:
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.close()
            raise AssertionError(f"still running after {timeout_s} s:\n{self.output[-3000:]}") from None
        self._reader.join(timeout=10)
        return rc

    def close(self) -> None:
        """Kill what is left of its process group (the process, anything it started)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stopped(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


def cli_run(job: str, partition=None, run_config=None, timeout_s: float = 300, **kwargs) -> tuple[int, str]:
    """A normal `tradecast` job run to its end: (exit status, output)."""
    with Child.job(job, partition, run_config, **kwargs) as child:
        return child.finish(timeout_s), child.output


def tables(home: Path) -> dict[str, tuple]:
    """Per table of a load: (rows, order-free fingerprint of the rows), the run's id and clock left out."""
    from storage.duck import connect

    con = connect(home / "warehouse.duckdb", read_only=True)
    try:
        return {t: con.execute(f"SELECT count(*), coalesce(sum(hash({cols})), 0) FROM {t}").fetchone()
                for t, cols in CLEAN_COLUMNS.items()}
    finally:
        con.close()


def opens_for_writing(home: Path) -> None:
    """The warehouse opens read-write (schema prepared), answers, and is not marked damaged."""
    from storage.duck import connect

    con = connect(home / "warehouse.duckdb")
    try:
        con.execute("CHECKPOINT")
        assert con.execute("SELECT count(*) FROM bars").fetchone()[0] >= 0
    finally:
        con.close()
    assert not (home / "warehouse.duckdb.corrupt").exists()


@contextlib.contextmanager
def in_home(path: Path):
    """Point TRADECAST_HOME (and the Dagster instance) at ``path`` for the block."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRADECAST_HOME", str(path))
        mp.setenv("DAGSTER_HOME", str(path / "dagster_home"))
        mp.delenv("TRADECAST_CATALOG", raising=False)
        yield path


# ---------------------------------------------------------------------------------------------------- registry state

def registry():
    from resources import ModelRegistry, Settings

    return ModelRegistry(settings=Settings())


def aliases(name: str = NAME) -> dict[str, str]:
    reg = registry()
    return {a: str(v.version) for a in ("champion", "challenger", "previous_champion") if (v := reg.alias(name, a))}


def half_registered(name: str = NAME) -> list[str]:
    """The versions of ``name`` that are not whole. A version is whole when it loads through
    `ModelRegistry.load` (its files are complete), carries the tags the project reads from a version
    (`model_kind`, `run_id`), and its MLflow run ended FINISHED (its metrics, evaluation table and plot are all
    there). A run left RUNNING without a version is no registered state: it is allowed."""
    reg = registry()
    client = reg.client()
    bad = []
    for version in client.search_model_versions(f"name = '{name}'"):
        problems = [f"no tag {t}" for t in ("model_kind", "run_id") if t not in version.tags]
        status = client.get_run(version.run_id).info.status
        if status != "FINISHED":
            problems.append(f"its run {version.run_id[:8]} is {status}")
        try:
            reg.load(name, version.version)
        except Exception as exc:  # noqa: BLE001 - any load failure is the finding
            problems.append(f"does not load ({type(exc).__name__}: {str(exc)[:200]})")
        if problems:
            bad.append(f"v{version.version}: " + "; ".join(problems))
    return bad


def versions(name: str = NAME) -> list[str]:
    return sorted((str(v.version) for v in registry().client().search_model_versions(f"name = '{name}'")), key=int)


def mlflow_runs(status: str) -> list:
    reg = registry()
    return reg.client().search_runs([reg.experiment_id()], f"attributes.status = '{status}'")


@pytest.fixture(scope="session")
def trained_fx(tmp_path_factory) -> Path:
    """A home with fx|close trained (quick profile, 5 steps, on 1000 rows per source) and exported: an NHITS version
    and a baseline version (the gate's bootstrap champion, or NHITS if it won), both with ONNX. Built once per
    session (a folder shared by the modules of the suite); tests copy it (`copied_home`)."""
    base = tmp_path_factory.getbasetemp() / "chaos-trained-fx"
    if not (base / "built").exists():
        shutil.rmtree(base, ignore_errors=True)
        with in_home(base / "home"):
            assert run_job("ingest_job", "fx", max_rows=1000, assets=["market_bars"]).success
            import dagster as dg

            key = dg.MultiPartitionKey(FX_CLOSE)
            assert run_job("train_job", key, run_config={"ops": {"nhits_model": {"config": TRAIN}}}).success
            assert run_job("export_job", key).success
        (base / "built").touch()
    return base / "home"


def copied_home(trained: Path, home: Path) -> Path:
    """This test's TRADECAST_HOME as a copy of ``trained`` (MLflow re-roots its locations: storage.rehome)."""
    shutil.copytree(trained, home, symlinks=True)
    return home


def nhits_and_baseline() -> tuple[str, str]:
    found = {v.tags.get("model_kind"): str(v.version)
             for v in registry().client().search_model_versions(f"name = '{NAME}'")}
    return found["nhits"], found["baseline"]


# ------------------------------------------------------------------------------------------------------------ ingest

@pytest.mark.fault("kill -9 of an ingest mid-transaction",
                   "killed inside the write transaction (partition deleted, new bars inserted, not committed): the "
                   "warehouse opens read-write; bars, quarantine, source_loads, symbols = the last commit exactly; the "
                   "re-run frees the dead run's slot and completes; final tables = a clean run's in a fresh home")
@pytest.mark.parametrize("asset_class", ["fx", pytest.param("crypto", marks=pytest.mark.slow_chaos)])
def test_kill_9_inside_the_ingest_transaction_keeps_the_last_commit(home, tmp_path, asset_class, chaos_detail):
    # fx: 67k bars, one row group; crypto: 240k bars, so DuckDB writes row groups into the file before the commit
    assert run_job("ingest_job", asset_class, max_rows=300, assets=["market_bars"]).success
    committed = tables(home)
    db = home / "warehouse.duckdb"
    size = db.stat().st_size
    with Child.job("ingest_job", asset_class, hook=IN_INGEST_TRANSACTION, mark=tmp_path / "mark") as victim:
        said = victim.wait_paused()
        grown = db.stat().st_size - size
        victim.kill9()
    opens_for_writing(home)
    assert tables(home) == committed, "the killed transaction left part of its partition"

    rc, out = cli_run("ingest_job", asset_class, timeout_s=300)  # before run_guard: waited forever for the slot
    assert rc == 0, out[-3000:]
    assert "is gone" in out, out[-2000:]
    final = tables(home)
    with in_home(tmp_path / "clean"):
        assert run_job("ingest_job", asset_class).success
        clean = tables(tmp_path / "clean")
    assert final == clean
    chaos_detail(f"{asset_class}: killed {said.split(': ', 1)[1]} (file +{grown / 1e6:.1f} MB before the kill); "
                 f"after: {committed['bars'][0]} bars as committed; re-run {final['bars'][0]} bars = clean run")


def bars_csv(symbols=("AAA", "BBB"), hours: int = 24 * 30) -> str:
    """A canonical hourly bar file: ``hours`` bars per symbol from 2024-01-01."""
    import pandas as pd

    stamps = pd.date_range("2024-01-01", periods=hours, freq="h", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    return "ts,symbol,open,high,low,close,volume\n" + "".join(
        f"{ts},{s},10,11,9,10.5,{i}\n" for s in symbols for i, ts in enumerate(stamps))


INGEST_FILE = bars_csv()


# `tradecast` (pipelines.cli's main) once every process of the test is ready: they start their commands together
AT_ONCE = """
import os, time
import pipelines.cli, pipelines.definitions
open(os.environ["CHAOS_READY"] + str(os.getpid()), "w").close()
deadline = time.monotonic() + 120
while not os.path.exists(os.environ["CHAOS_GO"]) and time.monotonic() < deadline:
    time.sleep(0.01)
pipelines.cli.main(prog_name="tradecast")
"""


def tiny_catalog(tmp_path: Path) -> dict:
    """An environment whose bundled catalog is empty: an ingest loads only the registered file (fast)."""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("sources: []\n")
    return {**os.environ, "TRADECAST_CATALOG": str(catalog)}


def _bars_state(home: Path) -> dict:
    from storage.duck import connect

    con = connect(home / "warehouse.duckdb", read_only=True)
    try:
        rows, keys = con.execute(
            "SELECT count(*), count(DISTINCT (asset_class, symbol, freq, ts)) FROM bars").fetchone()
        loads = con.execute("SELECT source, rows_read, rows_accepted, rows_quarantined FROM source_loads").fetchall()
        return {"rows": rows, "keys": keys, "loads": sorted(loads)}
    finally:
        con.close()


@pytest.mark.fault("two `tradecast ingest` of the same file at once",
                   "both registrations and both runs finish (the second waits for the writer pool); bars = the file's "
                   "rows, no duplicate key, one source_loads row with read = accepted = the file's rows")
def test_two_ingests_of_the_same_file_at_once_both_finish_without_duplicates(home, tmp_path, chaos_detail):
    path = tmp_path / "mine.csv"
    path.write_text(INGEST_FILE)
    expected = INGEST_FILE.count("\n") - 1
    env = {**tiny_catalog(tmp_path), "CHAOS_READY": str(tmp_path / "ready-"), "CHAOS_GO": str(tmp_path / "go")}
    args = ["-c", AT_ONCE, "ingest", str(path), "--asset-class", "crypto"]
    children = [Child(args, env=env) for _ in range(2)]
    try:
        children[0].wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == 2, "both processes ready", 180)
        (tmp_path / "go").touch()
        started = time.monotonic()
        codes = [c.finish(300) for c in children]
    finally:
        for child in children:
            child.close()
    outputs = [c.output for c in children]
    assert codes == [0, 0], "\n-----\n".join(o[-2000:] for o in outputs)  # before: the second's instance crashed
    assert all("Traceback" not in o for o in outputs)
    state = _bars_state(home)
    assert state == {"rows": expected, "keys": expected, "loads": [("user_mine", expected, expected, 0)]}, state
    waited = sum("waiting for the duckdb_writer pool" in o for o in outputs)
    chaos_detail(f"{expected} rows, both runs exit 0 in {time.monotonic() - started:.0f} s, {waited} said it waited "
                 "for the writer pool")


# ------------------------------------------------------------------------------------------------------- registration

REGISTER_BASELINE = """
import pandas as pd
from resources import ModelRegistry, Settings
registry = ModelRegistry(settings=Settings())
params = {"name": "window_mean", "h": 5, "input_size": 20, "season_length": 5, "freq": "B"}
print("registered v" + registry.log_version("nhits-fx-close", kind="baseline", baseline=params, params=params,
      metrics={"mase": 1.0}, tags={}, evaluation=pd.DataFrame({"model": ["window_mean"], "mase": [1.0]})), flush=True)
"""


@pytest.mark.fault("kill -9 of a registration right after MLflow created the version",
                   "no half-registered version (every version loads, carries model_kind and run_id, its run "
                   "FINISHED); the next registration completes and is whole")
def test_kill_9_right_after_the_version_is_created_leaves_no_half_registered_version(home, tmp_path, chaos_detail):
    with Child(["-c", AFTER_VERSION_CREATED + REGISTER_BASELINE], mark=tmp_path / "mark") as victim:
        said = victim.wait_paused(180)
        victim.kill9()
    assert half_registered() == []  # before: v1 without tags, its run RUNNING (tags were set after the run ended)
    with Child(["-c", REGISTER_BASELINE]) as again:
        assert again.finish(180) == 0, again.output[-3000:]
    assert half_registered() == [] and len(versions()) == 2
    chaos_detail(f"killed at: {said}; afterwards {len(versions())} versions, all whole")


# --------------------------------------------------------------------------------------------------------- training

def _evaluation(version: str):
    from tests.conftest import warehouse_query

    return warehouse_query("SELECT model, mse, mae, mase FROM model_evaluations WHERE model_name = ? AND version = ? "
                           "ORDER BY model", [NAME, version])


def _after_the_killed_training(before_versions: list[str], before_aliases: dict) -> None:
    assert half_registered() == []
    assert aliases() == before_aliases
    from tests.conftest import warehouse_query

    assert set(warehouse_query("SELECT DISTINCT version FROM model_evaluations").version) <= set(before_versions)


def _rerun_training_completes(first_nhits: str) -> str:
    """A normal re-run: completes, reaps the dead run, registers a whole challenger that scores as the first run's
    (same data, config and seed: the clean run's result)."""
    import numpy as np

    rc, out = cli_run("train_job", FX_CLOSE, {"ops": {"nhits_model": {"config": TRAIN}}}, timeout_s=400)
    assert rc == 0, out[-3000:]
    assert "is gone" in out, out[-2000:]
    assert half_registered() == []
    challenger = aliases()["challenger"]
    assert challenger not in (first_nhits,)
    again, first = _evaluation(challenger), _evaluation(first_nhits)
    assert again.model.tolist() == first.model.tolist()
    np.testing.assert_allclose(again[["mse", "mae", "mase"]], first[["mse", "mae", "mase"]], rtol=1e-6)
    return challenger


def _train_victim(tmp_path: Path, hook: str = "", config: dict | None = None) -> Child:
    return Child.job("train_job", FX_CLOSE, {"ops": {"nhits_model": {"config": {**TRAIN, **(config or {})}}}},
                     hook=hook, mark=tmp_path / "mark")


@pytest.mark.slow_chaos
@pytest.mark.fault("kill -9 of a training run mid-fit",
                   "killed while NHITS trains (its step log in the run's event log): no new version, none "
                   "half-registered, aliases unchanged, no evaluation rows of it; the re-run completes and scores as "
                   "the first clean run")
def test_kill_9_of_a_training_run_mid_fit(trained_fx, home, tmp_path, chaos_detail):
    import dagster as dg

    copied_home(trained_fx, home)
    before_versions, before_aliases = versions(), aliases()
    first_nhits, _ = nhits_and_baseline()
    victim = _train_victim(tmp_path, config={"max_steps": 100_000, "log_every_n_steps": 2})
    with victim, dg.DagsterInstance.get() as instance:
        def training() -> bool:
            runs = instance.get_runs(dg.RunsFilter(job_name="train_job", statuses=[dg.DagsterRunStatus.STARTED]))
            return any((e.user_message or "").startswith("step ") and e.step_key == "nhits_model"
                       for run in runs for e in instance.all_logs(run.run_id))
        victim.wait_for(training, "training step in the event log", 300, poll_s=0.5)
        victim.kill9()
    assert versions() == before_versions
    _after_the_killed_training(before_versions, before_aliases)
    assert mlflow_runs("RUNNING") == []  # the fit comes before the MLflow run starts
    challenger = _rerun_training_completes(first_nhits)
    chaos_detail(f"killed mid-fit; versions {before_versions} unchanged; re-run registered v{challenger}, scores "
                 "equal to the first run's")


@pytest.mark.slow_chaos
@pytest.mark.fault("kill -9 of a training run while it registers its version",
                   "killed right after MLflow created the version: every version whole (loads, tags, run FINISHED), "
                   "aliases unchanged; the re-run completes, its challenger whole")
def test_kill_9_of_a_training_run_right_after_the_version_is_created(trained_fx, home, tmp_path, chaos_detail):
    copied_home(trained_fx, home)
    before_versions, before_aliases = versions(), aliases()
    first_nhits, _ = nhits_and_baseline()
    with _train_victim(tmp_path, AFTER_VERSION_CREATED) as victim:
        said = victim.wait_paused(400)
        victim.kill9()
    _after_the_killed_training(before_versions, before_aliases)
    orphans = sorted(set(versions()) - set(before_versions))
    challenger = _rerun_training_completes(first_nhits)
    chaos_detail(f"killed at: {said}; left {len(orphans)} whole version(s) no alias points at; re-run v{challenger}")


@pytest.mark.slow_chaos
@pytest.mark.fault("kill -9 of a training run while it logs the model",
                   "killed with its MLflow run started and the model's files not logged: no version of it, aliases "
                   "unchanged; the re-run completes and marks the abandoned MLflow run KILLED")
def test_kill_9_of_a_training_run_while_it_logs_the_model(trained_fx, home, tmp_path, chaos_detail):
    copied_home(trained_fx, home)
    before_versions, before_aliases = versions(), aliases()
    first_nhits, _ = nhits_and_baseline()
    with _train_victim(tmp_path, WHILE_LOGGING_THE_MODEL) as victim:
        victim.wait_paused(400)
        victim.kill9()
    assert versions() == before_versions
    _after_the_killed_training(before_versions, before_aliases)
    [abandoned] = [r.info.run_id for r in mlflow_runs("RUNNING")]
    _rerun_training_completes(first_nhits)
    assert mlflow_runs("RUNNING") == []
    killed = registry().client().get_run(abandoned)
    assert killed.info.status == "KILLED", killed.info.status  # before: RUNNING for ever
    chaos_detail(f"abandoned MLflow run {abandoned[:8]} marked KILLED by the re-run: "
                 f"{killed.data.tags.get('tradecast/ended', '')}")


@pytest.mark.slow_chaos
@pytest.mark.fault("an ingest racing a training run",
                   "`tradecast ingest` (crypto) started while train_job (fx|close) trains: both finish (one waits for "
                   "the writer pool, saying so); bars = the bundled fx rows + the file's rows, no duplicate key; the "
                   "training's version whole")
def test_an_ingest_racing_a_training_run(trained_fx, home, tmp_path, chaos_detail):
    import dagster as dg

    copied_home(trained_fx, home)
    fx_before = _bars_state(home)
    path = tmp_path / "mine.csv"
    path.write_text(INGEST_FILE)
    expected = INGEST_FILE.count("\n") - 1
    env = tiny_catalog(tmp_path)
    train = Child.job("train_job", FX_CLOSE, {"ops": {"nhits_model": {"config": TRAIN}}}, env=env)
    with train, dg.DagsterInstance.get() as instance:
        train.wait_for(lambda: bool(instance.event_log_storage.get_concurrency_info("duckdb_writer").claimed_slots),
                       "train_job holding the writer pool", 300)
        with Child(["-m", "pipelines.cli", "ingest", str(path), "--asset-class", "crypto"], env=env) as ingest:
            codes = [train.finish(400), ingest.finish(400)]
            outputs = [train.output, ingest.output]
    assert codes == [0, 0], "\n-----\n".join(o[-2000:] for o in outputs)
    state = _bars_state(home)
    assert state["rows"] == state["keys"] == fx_before["rows"] + expected, state
    assert ("user_mine", expected, expected, 0) in state["loads"]
    assert half_registered() == []
    waited = "waiting for the duckdb_writer pool" in outputs[1]
    chaos_detail(f"both exit 0; ingest {'waited for the pool held by train_job' if waited else 'did not wait'}; "
                 f"{state['rows']} bars, no duplicate")


# ----------------------------------------------------------------------------------------------------------- export

def fresh_download_verifies(tmp_path: Path, version: str) -> dict:
    from serving.source import ModelSource, verify_export

    source = ModelSource()
    source.cache = tmp_path / "fresh-cache"
    return verify_export(source.onnx_dir(NAME, source.registry.version(NAME, version)))


def onnx_tag(version: str) -> str | None:
    return registry().client().get_model_version(NAME, version).tags.get("onnx")


def untag_onnx(version: str) -> None:
    registry().client().delete_model_version_tag(NAME, version, "onnx")


@pytest.mark.slow_chaos
@pytest.mark.fault("kill -9 of an export mid-write",
                   "killed with model.onnx half copied into the artifact store: the version has no `onnx` tag (not "
                   "servable); the re-run completes and a fresh download passes verify_export")
def test_kill_9_of_an_export_mid_write(trained_fx, home, tmp_path, chaos_detail):
    from serving.source import MissingOnnx

    copied_home(trained_fx, home)
    nhits, _ = nhits_and_baseline()
    untag_onnx(nhits)  # the version as it was before its first export
    with Child.job("export_job", FX_CLOSE, hook=MID_ONNX_COPY, mark=tmp_path / "mark") as victim:
        said = victim.wait_paused(300)
        victim.kill9()
    assert onnx_tag(nhits) is None
    with pytest.raises(MissingOnnx):
        fresh_download_verifies(tmp_path / "a", nhits)
    rc, out = cli_run("export_job", FX_CLOSE)
    assert rc == 0, out[-3000:]
    assert onnx_tag(nhits) and fresh_download_verifies(tmp_path / "b", nhits)["files"]
    chaos_detail(f"killed with {said.rsplit(': ', 1)[1]}; no onnx tag after the kill; re-run export verifies")


@pytest.mark.slow_chaos
@pytest.mark.fault("kill -9 of a re-export mid-write",
                   "a version already exported, `reexport` killed with model.onnx half overwritten: the version is "
                   "not tagged servable over damaged files; a plain re-run exports it again and a fresh download "
                   "passes verify_export")
def test_kill_9_of_a_reexport_mid_write(trained_fx, home, tmp_path, chaos_detail):
    from serving.source import CorruptExport, MissingOnnx

    copied_home(trained_fx, home)
    exported = nhits_and_baseline()
    config = {"ops": {"onnx_model": {"config": {"reexport": True}}}}
    with Child.job("export_job", FX_CLOSE, config, hook=MID_ONNX_COPY, mark=tmp_path / "mark") as victim:
        said = victim.wait_paused(300)
        victim.kill9()
    states = {}
    for version in exported:  # the one being overwritten, and the other
        try:
            fresh_download_verifies(tmp_path / "a", version)
            states[version] = "complete"
        except MissingOnnx:
            states[version] = "no onnx tag"
        except CorruptExport as exc:
            pytest.fail(f"v{version} stays tagged servable over a half-written export: {exc}")
    assert "no onnx tag" in states.values(), states
    rc, out = cli_run("export_job", FX_CLOSE)  # before: 'already' exported, the damage stayed
    assert rc == 0, out[-3000:]
    assert all(fresh_download_verifies(tmp_path / "b", v)["files"] for v in exported)
    chaos_detail(f"killed with {said.rsplit(': ', 1)[1]}; after the kill {states}; a plain re-run exported again, "
                 "fresh downloads verify")
