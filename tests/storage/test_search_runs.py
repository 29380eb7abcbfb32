"""`Registry.log_search`: a hyperparameter search as MLflow parent/child runs, on the default store (sqlite under a
temporary TRADECAST_HOME). The same checks run through a real tracking server in test_tracking_server.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ERROR_TEXT = "Traceback: " + "x" * 6000  # longer than the 5000 characters kept


def search_record() -> dict:
    """A search of 3 trials (one ERROR, one stopped early by ASHA), as the caller of log_search hands it over."""
    trials = [
        {"trial_id": "t1", "status": "TERMINATED", "config": {"input_size": 20, "learning_rate": 0.001},
         "val_loss": 0.5, "last_step": 40, "seconds": 3.25, "stopped_early": False, "error": None},
        {"trial_id": "t2", "status": "TERMINATED", "config": {"input_size": 40, "learning_rate": 0.002},
         "val_loss": 0.75, "last_step": 10, "seconds": 1.5, "stopped_early": True, "error": None},
        {"trial_id": "t3", "status": "ERROR", "config": {"input_size": 10, "learning_rate": 0.003},
         "val_loss": None, "last_step": 0, "seconds": 0.25, "stopped_early": False, "error": ERROR_TEXT},
    ]
    table = "trial_id,status,val_loss\nt1,TERMINATED,0.5\nt2,TERMINATED,0.75\nt3,ERROR,\n"
    return {"run_name": "nhits-fx-close-search", "params": {"num_samples": 3, "max_steps": 40, "seed": 7},
            "trials": trials, "best": {"trial_id": "t1", "config": trials[0]["config"], "val_loss": 0.5},
            "tags": {"asset_class": "fx"}, "files": {"trials.csv": table, "search.png": b"\x89PNG fake"}}


def check_search(registry, tmp_path) -> None:
    """What log_search of `search_record()` must leave in the registry's store (local or a server)."""
    record = search_record()
    parent_id, child_ids = registry.log_search(**record)
    client = registry.client()

    parent = client.get_run(parent_id)
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.name == "tradecast-search"
    assert parent.info.status == "FINISHED" and parent.info.run_name == "nhits-fx-close-search"
    assert parent.data.params == {"num_samples": "3", "max_steps": "40", "seed": "7", "best_input_size": "20",
                                  "best_learning_rate": "0.001"}
    assert parent.data.metrics == {"best_val_loss": 0.5}
    assert parent.data.tags["asset_class"] == "fx" and parent.data.tags["best_trial_id"] == "t1"
    assert "mlflow.parentRunId" not in parent.data.tags
    assert sorted(a.path for a in client.list_artifacts(parent_id)) == ["search.png", "trials.csv"]
    local = client.download_artifacts(parent_id, "trials.csv", str(tmp_path))
    assert Path(local).read_text() == record["files"]["trials.csv"]

    found = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert sorted(r.info.run_id for r in found) == sorted(child_ids) and len(child_ids) == 3
    runs = {r.data.tags["trial_id"]: r for r in found}
    assert [client.get_run(c).data.tags["trial_id"] for c in child_ids] == ["t1", "t2", "t3"]  # in trial order
    assert {t: r.info.status for t, r in runs.items()} == {"t1": "FINISHED", "t2": "FINISHED", "t3": "FAILED"}
    assert runs["t1"].data.params == {"input_size": "20", "learning_rate": "0.001"}
    assert runs["t3"].data.params == {"input_size": "10", "learning_rate": "0.003"}
    assert runs["t1"].data.metrics == {"val_loss": 0.5, "last_step": 40.0, "seconds": 3.25}
    assert runs["t2"].data.metrics == {"val_loss": 0.75, "last_step": 10.0, "seconds": 1.5}
    assert runs["t3"].data.metrics == {"last_step": 0.0, "seconds": 0.25}  # no val_loss: it never reported
    assert {t: (r.data.tags["status"], r.data.tags["stopped_early"]) for t, r in runs.items()} == {
        "t1": ("TERMINATED", "false"), "t2": ("TERMINATED", "true"), "t3": ("ERROR", "false")}
    assert runs["t3"].data.tags["error"] == ERROR_TEXT[:5000] and "error" not in runs["t1"].data.tags
    assert runs["t1"].info.run_name == "nhits-fx-close-search/t1"


@pytest.fixture
def registry(home, monkeypatch):
    from storage.registry import Registry

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return Registry(home)


def test_a_search_is_a_parent_run_with_one_child_per_trial(registry, home, tmp_path):
    check_search(registry, tmp_path)
    assert (home / "mlflow.db").is_file()  # the default store: sqlite under the home
    assert registry.server is None


def test_a_bad_best_or_file_name_is_refused_before_any_run(registry):
    record = search_record()
    with pytest.raises(ValueError, match="best must hold 'config'"):
        registry.log_search(**{**record, "best": {"input_size": 20}})
    with pytest.raises(ValueError, match="plain file name"):
        registry.log_search(**{**record, "files": {"../trials.csv": "x"}})
    client = registry.client()
    search = client.get_experiment_by_name("tradecast-search")
    assert search is None or client.search_runs([search.experiment_id]) == []


def test_a_failure_while_logging_ends_the_runs_failed(registry):
    record = search_record()
    bad = {**record["trials"][1], "config": {"bad key!": 1}}  # not a valid MLflow param name
    with pytest.raises(Exception, match="bad key"):
        registry.log_search(**{**record, "trials": [record["trials"][0], bad]})
    client = registry.client()
    runs = client.search_runs([registry.experiment_id("tradecast-search")])
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED", "FINISHED"]  # parent and t2 failed, t1 done
    assert json.dumps(sorted(r.data.tags.get("trial_id", "parent") for r in runs)) == '["parent", "t1", "t2"]'
