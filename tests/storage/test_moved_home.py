"""A `$TRADECAST_HOME` copied elsewhere (a backup restored, a moved home) works on its own once the original is
gone: its MLflow artifact locations are re-rooted to the copy (real MLflow store, real jobs)."""

import os
import shutil
import sqlite3
import subprocess
import sys

import dagster as dg
import pytest

from tests.conftest import ROOT, run_job, warehouse_query

KEY = dg.MultiPartitionKey({"asset_class": "fx", "target": "close"})
TRAIN = {"ops": {"nhits_model": {"config": {"max_steps": 3, "h": 5, "input_size": 30, "n_windows": 2}}}}


def _locations(home) -> list[str]:
    con = sqlite3.connect(home / "mlflow.db")
    try:
        rows = con.execute("SELECT artifact_location FROM experiments UNION ALL SELECT artifact_uri FROM runs "
                           "UNION ALL SELECT storage_location FROM model_versions").fetchall()
    finally:
        con.close()
    return [r[0] for r in rows if r[0] and "mlartifacts" in r[0]]


@pytest.mark.slow
@pytest.mark.fault('$TRADECAST_HOME copied elsewhere, the original deleted',
                   'forecast, retrain, export on the copy; every MLflow location under the copy; nothing written to '
                   'the original')
def test_a_copied_home_reads_and_writes_its_own_artifacts_after_the_original_is_deleted(home, tmp_path,
                                                                                         monkeypatch):
    from resources import ModelRegistry, Settings

    assert run_job("ingest_job", "fx", max_rows=1500, assets=["market_bars"]).success
    assert run_job("train_job", KEY, run_config=TRAIN).success
    assert run_job("export_job", KEY).success
    assert _locations(home) and all(str(home) in loc for loc in _locations(home))

    copy = tmp_path / "restored" / "home"
    shutil.copytree(home, copy)
    shutil.rmtree(home)  # the original is gone: the copy must not need it
    monkeypatch.setenv("TRADECAST_HOME", str(copy))
    monkeypatch.setenv("DAGSTER_HOME", str(copy / "dagster_home"))

    # a new process, as after a restore (one process that used the original keeps MLflow's per-run caches)
    code = ("import dagster as dg; from pipelines.cli.runner import run_job; "
            "key = dg.MultiPartitionKey({'asset_class': 'fx', 'target': 'close'}); "
            f"run_job('forecast_job', key); run_job('train_job', key, {TRAIN!r}); run_job('export_job', key)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=os.environ.copy(), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    registry = ModelRegistry(settings=Settings())
    assert not home.exists(), "something wrote into the deleted original"
    locations = _locations(copy)
    assert locations and all(loc.startswith(f"file://{copy}") or loc.startswith(str(copy)) for loc in locations)
    versions = warehouse_query("SELECT DISTINCT version FROM model_evaluations").version.tolist()
    trained = [v.version for v in registry.versions("nhits-fx-close") if not v.is_baseline]  # NHITS (+ ensembles)
    assert sorted(versions) == sorted(trained) and len(versions) >= 2  # one per training at least
    for version in versions:
        assert registry.load("nhits-fx-close", version) is not None
