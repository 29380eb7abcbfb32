"""`nhits_search` on the session's real Ray cluster: trials in DuckDB `search_trials` and as MLflow child runs of
one parent run, and `nhits_model` trained with the best searched config (config_source); the six trainings on Ray
equal the in-process ones (same seed)."""

import json

import pytest

from tests.assets.test_training import _key, _registry, _sine_frame
from tests.conftest import warehouse_query

SMALL = {"h": 10, "input_size": 40, "n_windows": 4, "step_size": 10}


@pytest.mark.slow
def test_search_fills_search_trials_and_child_runs_and_the_model_trains_with_the_best_config(home):
    import dagster as dg

    from assets.champion_model import champion_model
    from assets.nhits_model import nhits_model
    from assets.nhits_search import nhits_search
    from pipelines.definitions import defs
    from pipelines.instance import ensure_dagster_home
    from resources import Settings, Warehouse
    from storage.duck import replace_where

    with Warehouse(settings=Settings()).transaction() as con:
        replace_where(con, "training_frames", _sine_frame(length=400).assign(asset_class="fx", target="close"),
                      {"asset_class": "fx", "target": "close"})
    ensure_dagster_home()
    search = {"num_samples": 4, "max_steps": 16, "grace_steps": 4, "val_check_steps": 4, "val_windows": 2,
              "max_concurrent": 2, **SMALL}
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [nhits_search, nhits_model, champion_model], partition_key=_key("fx", "close"), instance=instance,
            resources=defs.resources, run_config={"ops": {
                "nhits_search": {"config": search},
                # input_size left to the search (a field set here would win over the searched value)
                "nhits_model": {"config": {"max_steps": 10, "ensemble": False, "h": 10, "n_windows": 4,
                                           "step_size": 10}}}})
    assert result.success
    trials = warehouse_query("SELECT * FROM search_trials ORDER BY trial_id")
    assert len(trials) == 4 and trials.search_id.nunique() == 1 and int(trials.is_best.sum()) == 1
    scored = trials.dropna(subset=["val_loss"])
    best = trials[trials.is_best].iloc[0]
    assert best.val_loss == scored.val_loss.min()  # the best is the argmin of the trials' validation loss
    # every trial is an MLflow child run of the one parent run
    client = _registry().client()
    children = client.search_runs(
        [client.get_experiment_by_name("tradecast-search").experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{best.parent_run_id}'")
    assert sorted(r.info.run_id for r in children) == sorted(trials.mlflow_run_id)
    # nhits_model used the searched config
    [model] = result.asset_materializations_for_node("nhits_model")
    assert model.metadata["config_source"].value == f"search {best.search_id}"
    config = json.loads(best.config)
    version = _registry().alias("nhits-fx-close", "challenger")
    params = _registry().store.run_params(version.run_id)
    assert float(params["learning_rate"]) == pytest.approx(float(config["learning_rate"]))
    assert int(params["input_size"]) == int(config["input_size"])


@pytest.mark.slow
def test_six_trainings_on_ray_equal_the_in_process_ones():
    import ray

    from compute.cluster import connect
    from compute.training import train_many
    from models.configs import spec_for
    from models.evaluation import train_and_evaluate

    connect()  # the session's head ($RAY_ADDRESS)
    assert ray.cluster_resources().get("CPU") == 2
    frames = {(c, t): _sine_frame(n_series=2, length=260 + 10 * i).assign(y=lambda f, i=i: f.y + i)
              for i, (c, t) in enumerate((c, t) for c in ("crypto", "equities", "fx") for t in ("close", "x"))}
    specs = {k: spec_for("fx", "quick", max_steps=8, **SMALL) for k in frames}
    jobs = [(frames[k], specs[k], {"accelerator": "cpu", "freq": "B"}) for k in frames]
    shipped = train_many(jobs)
    assert len({s.node for s in shipped}) == 1  # one node here; the tasks ran concurrently on its 2 slots
    for (frame, spec, kw), remote in zip(jobs, shipped, strict=True):
        local = train_and_evaluate(frame, spec, **kw).evaluation.set_index("model")
        there = remote.result.evaluation.set_index("model")
        assert list(there.index) == list(local.index)
        assert there["mae"].to_numpy() == pytest.approx(local["mae"].to_numpy(), rel=1e-4)
