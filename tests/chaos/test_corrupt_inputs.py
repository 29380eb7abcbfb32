"""Corrupt inputs to every entry point: a damaged DuckDB file, a truncated or missing ONNX file, a missing MLflow
artifact, an unreadable user catalog, a disk that fills during a write (a file-size limit, RLIMIT_FSIZE).

Entry points: `tradecast ingest FILE`, the Dagster job runs as `tradecast run` executes them
(`pipelines.cli.runner.run_job`: ingest_job, train_job, forecast_job, export_job), and `tradecast serve` (start-up).
Each is a real process: it must exit non-zero with a one-line error naming the file (no Traceback), or, for the service,
start on a stand-in and say why in /health; what was committed before stays as it was."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest

from tests.chaos import test_kills
from tests.chaos.test_kills import (
    FX_CLOSE,
    INGEST_FILE,
    NAME,
    TRAIN,
    Child,
    aliases,
    bars_csv,
    cli_run,
    copied_home,
    fresh_download_verifies,
    half_registered,
    nhits_and_baseline,
    onnx_tag,
    registry,
    tables,
    tiny_catalog,
    untag_onnx,
)
from tests.conftest import run_job

trained_fx = test_kills.trained_fx  # the session's trained home (built once for both modules)


def said_clearly(rc: int, out: str, *names: str) -> None:
    """A failed command that says what went wrong in one line naming ``names``: exit status != 0, no Traceback."""
    assert rc != 0, out[-3000:]
    assert "Traceback" not in out, out[-4000:]
    for name in names:
        assert name in out, f"{name!r} not named:\n{out[-3000:]}"


def error_line(out: str) -> str:
    return next((line for line in out.splitlines() if line.startswith("Error:")), out.strip().splitlines()[-1])


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def damage(path: Path) -> None:
    """Garbage over the middle half of a DuckDB file, its header intact (as a failing disk leaves it)."""
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 4)
        fh.write(os.urandom(size // 2))


def ingest_cli(path: Path, env: dict | None = None, **kwargs) -> tuple[int, str]:
    with Child(["-m", "pipelines.cli", "ingest", str(path), "--asset-class", "crypto"], env=env, **kwargs) as child:
        return child.finish(300), child.output


# --------------------------------------------------------------------------------------------------------- DuckDB

@pytest.mark.fault("a corrupt DuckDB file under `tradecast ingest`",
                   "exit 1, one line naming the warehouse file and that it is damaged; the file is marked and the next "
                   "command refuses it before opening it for writing (its bytes unchanged)")
def test_a_corrupt_warehouse_through_tradecast_ingest(home, tmp_path, chaos_detail):
    assert run_job("ingest_job", "fx", max_rows=300, assets=["market_bars"]).success
    db = home / "warehouse.duckdb"
    damage(db)
    damaged = sha(db)
    path = tmp_path / "mine.csv"
    path.write_text(INGEST_FILE)
    env = tiny_catalog(tmp_path)
    rc, out = ingest_cli(path, env)
    said_clearly(rc, out, str(db), "damaged")
    assert (home / "warehouse.duckdb.corrupt").exists()
    first = "unchanged" if sha(db) == damaged else "changed by DuckDB's open"
    now = sha(db)
    rc, again = ingest_cli(path, env)
    said_clearly(rc, again, str(db), "marked damaged")
    assert sha(db) == now  # refused before it was opened for writing
    chaos_detail(f"said: {error_line(out)[:160]}; file {first} by the first attempt, untouched by the second")


@pytest.mark.slow_chaos
@pytest.mark.fault("a corrupt DuckDB file under forecast_job and `tradecast serve`",
                   "forecast_job: exit 1 naming the warehouse file; serve: exits at start-up naming the file (no "
                   "Traceback), the registry untouched")
def test_a_corrupt_warehouse_under_forecast_job_and_serve(trained_fx, home, tmp_path, chaos_detail):
    copied_home(trained_fx, home)
    before = aliases()
    db = home / "warehouse.duckdb"
    damage(db)
    rc, out = cli_run("forecast_job", FX_CLOSE)
    said_clearly(rc, out, str(db))
    with Child(["-m", "pipelines.cli", "serve", "--asset-class", "fx", "--target", "close", "--port",
                str(free_port())]) as serve:
        rc, served = serve.finish(180), serve.output
    said_clearly(rc, served, str(db))
    assert aliases() == before and half_registered() == []
    chaos_detail(f"forecast_job: {error_line(out)[:120]}; serve: {error_line(served)[:120]}")


# ----------------------------------------------------------------------------------------------- ONNX and MLflow

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def onnx_folder(version: str) -> Path:
    """The version's ONNX export in the artifact store (its run's ``onnx/``)."""
    from urllib.parse import urlparse

    client = registry().client()
    run = client.get_run(client.get_model_version(NAME, version).run_id)
    return Path(urlparse(run.info.artifact_uri).path) / "onnx"


def model_folder(version: str) -> Path:
    """The version's model files in the artifact store (its MLflow logged model)."""
    from urllib.parse import urlparse

    client = registry().client()
    model_id = client.get_model_version(NAME, version).source.removeprefix("models:/")
    return Path(urlparse(client.get_logged_model(model_id).artifact_location).path)


def nhits_champion() -> tuple[str, str]:
    """Aliases as a served NHITS champion has them: champion = NHITS, previous_champion = the baseline."""
    nhits, baseline = nhits_and_baseline()
    reg = registry()
    reg.set_alias(NAME, "champion", nhits)
    reg.set_alias(NAME, "previous_champion", baseline)
    reg.set_alias(NAME, "challenger", baseline)
    return nhits, baseline


def health_of_serve(timeout_s: float = 180) -> tuple[dict, str]:
    """Start `tradecast serve` (fx close, cold) on a free port, return its /health once it answers (then stop it)."""
    port = free_port()
    with Child(["-m", "pipelines.cli", "serve", "--asset-class", "fx", "--target", "close", "--cold", "--port",
                str(port)]) as serve:
        answer: dict = {}

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    answer.update(json.loads(response.read()))
                return True
            except OSError:
                return False
        serve.wait_for(up, "/health answering", timeout_s, poll_s=0.5)
        return answer, serve.output


@pytest.mark.slow_chaos
@pytest.mark.fault("a truncated / missing ONNX file at `tradecast serve` start-up",
                   "the champion's stored model.onnx cut in half, or deleted: the service starts on the previous "
                   "champion, /health degraded with a note naming model.onnx")
@pytest.mark.parametrize("how", ["truncated", "missing"])
def test_a_damaged_onnx_file_at_serve_startup_falls_back_with_a_note(trained_fx, home, how, chaos_detail):
    copied_home(trained_fx, home)
    nhits, baseline = nhits_champion()
    stored = onnx_folder(nhits) / "model.onnx"
    if how == "truncated":
        stored.write_bytes(stored.read_bytes()[: stored.stat().st_size // 2])
    else:
        stored.unlink()
    health, _ = health_of_serve()
    notes = " | ".join(health["notes"])
    assert health["status"] == "degraded", health
    assert f"serving previous champion v{baseline}" in notes and "model.onnx" in notes, notes
    chaos_detail(f"{how}: /health degraded, notes: {notes[:200]}")


@pytest.mark.slow_chaos
@pytest.mark.fault("a missing MLflow artifact (NHITS_0.safetensors) under forecast_job",
                   "the champion's weights deleted from mlartifacts/: exit 1 naming NHITS_0.safetensors and the "
                   "version, no Traceback; the forecasts table unchanged")
def test_a_missing_weights_file_fails_forecast_job_naming_it(trained_fx, home, chaos_detail):
    copied_home(trained_fx, home)
    nhits, _ = nhits_champion()
    weights = next(model_folder(nhits).rglob("NHITS_0.safetensors"))
    weights.unlink()
    before = tables_of(home, "forecasts")
    rc, out = cli_run("forecast_job", FX_CLOSE)
    said_clearly(rc, out, "NHITS_0.safetensors", f"{NAME}/{nhits}")
    assert tables_of(home, "forecasts") == before
    chaos_detail(f"said: {error_line(out)[:200]}")


def tables_of(home: Path, table: str) -> tuple:
    from storage.duck import connect

    con = connect(home / "warehouse.duckdb", read_only=True)
    try:
        return con.execute(f"SELECT count(*), coalesce(sum(hash(COLUMNS(*))), 0) FROM {table}").fetchone()
    finally:
        con.close()


# --------------------------------------------------------------------------------------------- the user catalog

GARBAGE = {"bad YAML": b"sources: [\n  - {name: user_a, path: files/user_a.csv\n",
           "binary": b"\xff\xfe\x00\x81garbage\x00"}


@pytest.mark.fault("an unreadable user catalog ($TRADECAST_HOME/sources/sources.yaml)",
                   "`tradecast ingest` of a changed registered file: exit 1 naming sources.yaml and that nothing was "
                   "changed; the catalog's bytes, the registered copy and the warehouse as they were; ingest_job "
                   "(the asset run) also names the file")
@pytest.mark.parametrize("garbage", list(GARBAGE))
def test_an_unreadable_user_catalog_changes_nothing(home, tmp_path, garbage, chaos_detail):
    from pipelines.registration import register_file

    env = tiny_catalog(tmp_path)
    path = tmp_path / "a.csv"
    path.write_text(INGEST_FILE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRADECAST_CATALOG", env["TRADECAST_CATALOG"])
        spec = register_file(str(path), asset_class="crypto")
        assert run_job("ingest_job", "crypto").success
    catalog = home / "sources" / "sources.yaml"
    catalog.write_bytes(GARBAGE[garbage])
    files = {p.name: sha(p) for p in (home / "sources" / "files").iterdir()}
    committed = tables(home)
    path.write_text(INGEST_FILE.replace(",10.5,", ",10.25,"))  # the user's file changed since it was registered
    rc, out = ingest_cli(path, env)
    said_clearly(rc, out, str(catalog), "nothing was changed")
    assert catalog.read_bytes() == GARBAGE[garbage]
    assert {p.name: sha(p) for p in (home / "sources" / "files").iterdir()} == files, "the registered copy changed"
    assert Path(spec.path).name in files
    rc, run = cli_run("ingest_job", "crypto", env=env)
    said_clearly(rc, run, str(catalog))
    assert tables(home) == committed
    chaos_detail(f"{garbage}: ingest said: {error_line(out)[:150]}; ingest_job said: {error_line(run)[:100]}")


# ------------------------------------------------------------------------------------------------------ disk full

@pytest.mark.fault("a full disk during `tradecast ingest` (RLIMIT_FSIZE)",
                   "exit 1, 'File too large' naming the warehouse file; the committed rows unchanged; without the "
                   "limit the same command completes with the file's rows")
def test_a_full_disk_during_tradecast_ingest_keeps_the_committed_rows(home, tmp_path, chaos_detail):
    assert run_job("ingest_job", "fx", max_rows=300, assets=["market_bars"]).success
    committed = tables(home)
    db = home / "warehouse.duckdb"
    path = tmp_path / "mine.csv"
    text = bars_csv(("AAA", "BBB", "CCC"), 24 * 300)  # 1.2 MB: the copy fits under the limit, its rows do not
    path.write_text(text)
    env = tiny_catalog(tmp_path)
    limit = max(path.stat().st_size, *(p.stat().st_size for p in home.rglob("*.db"))) + 64 * 1024
    rc, out = ingest_cli(path, env, fsize_limit=limit)
    said_clearly(rc, out, "File too large", str(db))
    assert tables(home) == committed
    rc, again = ingest_cli(path, env)
    assert rc == 0, again[-3000:]
    assert tables(home)["bars"][0] == committed["bars"][0] + text.count("\n") - 1
    chaos_detail(f"limit {limit / 1e6:.1f} MB: {error_line(out)[:160]}")


def _stores_size(home: Path) -> int:
    """The largest database file of the home (the warehouse, MLflow's, the Dagster instance's)."""
    return max(p.stat().st_size for p in (home / "warehouse.duckdb", home / "mlflow.db", *home.rglob("*.db")))


@pytest.mark.slow_chaos
@pytest.mark.fault("a full disk during train_job (RLIMIT_FSIZE)",
                   "exit 1 naming the file that could not grow ('File too large'), no Traceback; no half-registered "
                   "version, aliases unchanged; without the limit the re-run completes")
def test_a_full_disk_during_training_registers_nothing_half(trained_fx, home, chaos_detail):
    copied_home(trained_fx, home)
    before = aliases()
    limit = _stores_size(home) + 2 * 2**20  # the stores may grow a little; the new weights file cannot be written
    assert limit < next(home.glob("mlartifacts/models/*/artifacts/artifacts/nf/NHITS_0.safetensors")).stat().st_size
    config = {"ops": {"nhits_model": {"config": TRAIN}}}
    rc, out = cli_run("train_job", FX_CLOSE, config, fsize_limit=limit, timeout_s=400)
    said_clearly(rc, out, "File too large: '/")  # before: "OSError: [Errno 27] File too large", no file named
    assert half_registered() == [] and aliases() == before
    rc, again = cli_run("train_job", FX_CLOSE, config, timeout_s=400)
    assert rc == 0, again[-3000:]
    assert half_registered() == []
    chaos_detail(f"limit {limit / 1e6:.1f} MB: {error_line(out)[:200]}")


@pytest.mark.slow_chaos
@pytest.mark.fault("a full disk during export_job (RLIMIT_FSIZE)",
                   "exit 1 naming the file that could not be written ('File too large': the weights download comes "
                   "first, as they are larger than the ONNX file), no Traceback; the version not tagged servable; "
                   "without the limit the re-run exports it and a fresh download verifies")
def test_a_full_disk_during_export_tags_nothing(trained_fx, home, tmp_path, chaos_detail):
    copied_home(trained_fx, home)
    nhits, _ = nhits_and_baseline()
    untag_onnx(nhits)
    size = (onnx_folder(nhits) / "model.onnx").stat().st_size
    limit = _stores_size(home) + 2 * 2**20  # the stores may grow a little; the new model.onnx cannot be written
    assert limit < size
    rc, out = cli_run("export_job", FX_CLOSE, fsize_limit=limit)
    said_clearly(rc, out, "File too large")
    assert "NHITS_0.safetensors" in out or "model.onnx" in out, out[-3000:]
    assert onnx_tag(nhits) is None
    rc, again = cli_run("export_job", FX_CLOSE)
    assert rc == 0, again[-3000:]
    assert fresh_download_verifies(tmp_path, nhits)["files"]
    chaos_detail(f"model.onnx {size / 1e6:.1f} MB, limit {limit / 1e6:.1f} MB: {error_line(out)[:200]}")
