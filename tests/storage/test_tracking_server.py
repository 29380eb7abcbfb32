"""MLflow beyond one process: `MLFLOW_TRACKING_URI` at a REAL `mlflow server --serve-artifacts` (started here on a
free port, its own sqlite file and artifacts folder). Versions, aliases, loads, ONNX files and searches all go
through the server: its store holds the runs and files, the home holds no MLflow store of its own."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.assets.test_training import _sine_frame
from tests.storage.test_search_runs import check_search

NAME = "nhits-fx-close"
BASELINE = {"name": "window_mean", "h": 5, "input_size": 20, "season_length": 5, "freq": "B"}
STARTUP_S = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Terminate the server's process group (mlflow runs uvicorn as a child), then kill what is left."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def booting(tmp_path_factory):
    """A tracking server starting (its own sqlite file and artifacts folder); stopped after this module's tests."""
    root = tmp_path_factory.mktemp("mlflow-server")
    db, artifacts, log = root / "server.db", root / "artifacts", root / "server.log"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no job-runner processes: a faster start on few CPUs
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", str(artifacts), "--serve-artifacts",
           "--workers", "1"]
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield {"uri": f"http://127.0.0.1:{port}", "db": db, "artifacts": artifacts, "log": log, "proc": proc,
               "start": start}
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def tiny_nhits(booting):
    """``(frame, nf)``: a NeuralForecast NHITS fitted for 3 steps, while the server boots (hence ``booting``)."""
    from models.configs import spec_for
    from models.evaluation import fit_nhits

    frame = _sine_frame(n_series=2, length=200)
    spec = spec_for("fx", "quick", h=5, input_size=20, max_steps=3, n_windows=1, val_size=5)
    return frame, fit_nhits(frame, spec, "B", accelerator="cpu")


@pytest.fixture(scope="module")
def server(booting, tiny_nhits):
    """``{"uri", "db", "artifacts", ...}`` of the tracking server, once ``/health`` answers."""
    proc, log = booting["proc"], booting["log"]
    while True:
        try:
            with urllib.request.urlopen(f"{booting['uri']}/health", timeout=2) as answer:
                if answer.status == 200:
                    return {**booting, "startup_s": time.perf_counter() - booting["start"]}
        except OSError:
            pass
        if proc.poll() is not None or time.perf_counter() - booting["start"] > STARTUP_S:
            raise RuntimeError(f"mlflow server did not come up (rc {proc.poll()}):\n{log.read_text()[-3000:]}")
        time.sleep(0.25)


@pytest.fixture
def registry(server, home, monkeypatch):
    """A Registry on the server through the environment, as another process (a Ray worker, a second host) sees it."""
    import mlflow

    from storage.registry import Registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server["uri"])
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)  # mlflow.set_registry_uri writes it: restored after
    yield Registry()
    mlflow.set_tracking_uri(None)  # the module globals back to unset; monkeypatch restores the variables
    mlflow.set_registry_uri(None)


def _server_rows(db: Path, sql: str, params=()) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def _log(registry, **model) -> str:
    evaluation = pd.DataFrame({"model": ["nhits"], "mase": [1.0]})
    return registry.log_version(NAME, params={"h": 5}, metrics={"mase": 1.0}, tags={}, evaluation=evaluation, **model)


def _model_folder(server, registry, version: str) -> Path:
    """The version's model folder inside the server's artifacts destination (mlflow-artifacts:/<path>)."""
    source = registry.client().get_model_version(NAME, version).source
    location = registry.client().get_logged_model(source.removeprefix("models:/")).artifact_location
    assert location.startswith("mlflow-artifacts:/"), location  # proxied by the server, not a local file URI
    return server["artifacts"] / location.removeprefix("mlflow-artifacts:/").lstrip("/")


def _home_holds_no_store(home: Path) -> None:
    assert not (home / "mlflow.db").exists() and not (home / "mlartifacts").exists()
    assert not list((home / "mlflow_tmp").iterdir()), "a temporary download folder was left in the home"


def test_the_server_is_chosen_by_env_or_argument_and_nothing_else(monkeypatch, home):
    from storage.home import tracking_server
    from storage.registry import Registry

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_server() is None and Registry().uri == f"sqlite:///{home / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'other' / 'mlflow.db'}")  # what mlflow leaves
    assert tracking_server() is None and Registry().server is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999/")
    assert Registry().uri == "http://127.0.0.1:5999" and Registry(tracking_uri="https://mlflow.example").server \
        == "https://mlflow.example"
    with pytest.raises(ValueError, match="must be an MLflow tracking server"):
        Registry(tracking_uri="sqlite:///elsewhere.db")


@pytest.mark.slow
def test_a_baseline_version_goes_through_the_server(server, registry, home, tmp_path):
    from models.served_baselines import BaselineForecaster
    from storage.versions import IncompleteModel

    assert registry.server == server["uri"]
    version = _log(registry, kind="baseline", baseline=BASELINE)
    registry.set_alias(NAME, "champion", version)
    champion = registry.alias(NAME, "champion")
    assert champion is not None and champion.version == version and champion.kind == "baseline"
    text = json.dumps(BASELINE)  # the file log_version writes, recorded at registration: [bytes, sha256]
    sha = hashlib.sha256(text.encode()).hexdigest()
    assert champion.recorded_files == {"artifacts/baseline.json": [len(text), sha]}
    frame = _sine_frame(n_series=2, length=60)
    expected = BaselineForecaster(**BASELINE).predict(frame).assign(lo=float("nan"), hi=float("nan"))
    pd.testing.assert_frame_equal(registry.load(NAME, "champion").predict(frame), expected)

    # the data lives in the server: its sqlite has the run and the version, its artifacts folder the files
    assert _server_rows(server["db"], "SELECT status FROM runs WHERE run_uuid = ?", (champion.run_id,)) == [
        ("FINISHED",)]
    assert _server_rows(server["db"], "SELECT alias, version FROM registered_model_aliases WHERE name = ?",
                        (NAME,)) == [("champion", int(version))]
    folder = _model_folder(server, registry, version)
    assert (folder / "artifacts" / "baseline.json").read_text() == text
    assert (folder / "MLmodel").is_file() and (folder / "mlflow_model.py").is_file()
    assert list(server["artifacts"].rglob("evaluation.json"))
    _home_holds_no_store(home)

    # ONNX files up and back down through the server
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.onnx").write_bytes(b"onnx bytes")
    (export / "export.json").write_text('{"files": {"fp32": "model.onnx"}}')
    registry.log_onnx(NAME, version, export, {"onnx_seconds": "1"})
    got = registry.download_onnx(registry.version(NAME, version), tmp_path / "down")
    assert (got / "model.onnx").read_bytes() == b"onnx bytes" and registry.version(NAME, version).onnx

    # the files are checked as for a local store: a file changed on the server is refused, naming it
    (folder / "artifacts" / "baseline.json").write_text(json.dumps({**BASELINE, "h": 6}))
    with pytest.raises(IncompleteModel, match=r"artifacts/baseline\.json differs .*mlflow-artifacts:/"):
        registry.load(NAME, version)
    _home_holds_no_store(home)


@pytest.mark.slow
def test_a_planted_pickle_on_the_server_is_refused(server, registry, home):
    from storage.pyfunc import UnsafeModelError

    version = _log(registry, kind="baseline", baseline=BASELINE)
    (_model_folder(server, registry, version) / "python_model.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(UnsafeModelError, match=r"\['python_model\.pkl'\], which could run code"):
        registry.load(NAME, version)
    _home_holds_no_store(home)


@pytest.mark.slow
def test_an_nhits_version_goes_through_the_server(server, registry, home, tiny_nhits):
    from models.forecasting import forecast

    frame, nf = tiny_nhits
    version = _log(registry, kind="nhits", nf=nf)
    registry.set_alias(NAME, "challenger", version)
    assert set(registry.version(NAME, "challenger").recorded_files) == {"artifacts/nf/configuration.json",
                                                                        "artifacts/nf/NHITS_0.safetensors"}
    loaded = registry.load(NAME, "challenger")
    pd.testing.assert_frame_equal(loaded.predict(frame), forecast(nf, frame))
    folder = _model_folder(server, registry, version)
    assert (folder / "artifacts" / "nf" / "NHITS_0.safetensors").stat().st_size > 0
    _home_holds_no_store(home)


@pytest.mark.slow
def test_a_search_goes_through_the_server(server, registry, home, tmp_path):
    check_search(registry, tmp_path)
    assert len(_server_rows(server["db"], "SELECT run_uuid FROM runs r JOIN experiments e USING (experiment_id) "
                                          "WHERE e.name = 'tradecast-search'")) == 4  # the parent and 3 trials
    assert len(list(server["artifacts"].rglob("trials.csv"))) == 1
    _home_holds_no_store(home)
