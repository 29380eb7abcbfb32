"""`nhits_search` on the session's real Ray cluster: trials in DuckDB `search_trials` and as MLflow child runs of
one parent run, and `nhits_model` trained with the best searched config (config_source); a backfill of the six
`nhits_model` partitions trains two at a time on the cluster's two slots, each equal to the in-process path."""

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


BACKFILL = {"max_steps": 8, "ensemble": False, "use_search": False, "input_size": 40, **SMALL}


@pytest.mark.slow
def test_a_backfill_of_the_six_partitions_trains_concurrently_on_ray_as_in_process(home):
    """Six nhits_model partition runs launched at once (as a backfill does): the Ray cluster's 2 slots run two
    trainings at a time (the writer pool is held only around reads and writes), and every partition's scores equal
    the in-process path's on the same frame and spec (same seed)."""
    from concurrent.futures import ThreadPoolExecutor

    import dagster as dg
    import numpy as np

    from assets.nhits_model import NHITSConfig, nhits_model
    from domain.vocabulary import ASSET_CLASSES, TARGETS
    from models.evaluation import train_and_evaluate
    from pipelines.definitions import defs
    from pipelines.instance import ensure_dagster_home
    from resources import Settings, Warehouse
    from storage.duck import replace_where
    from storage.queries import read_frame

    warehouse = Warehouse(settings=Settings())
    with warehouse.transaction() as con:
        for i, asset_class in enumerate(ASSET_CLASSES):
            close = _sine_frame(n_series=2, length=260 + 10 * i)
            frames = {"close": close, "volatility": close.assign(y=lambda f: 0.002 * f.y + 0.001 * np.cos(f.y))}
            for target, frame in frames.items():
                replace_where(con, "training_frames", frame.assign(asset_class=asset_class, target=target),
                              {"asset_class": asset_class, "target": target})
    ensure_dagster_home()
    keys = [(c, t) for c in ASSET_CLASSES for t in TARGETS]

    def partition_run(key):
        with dg.DagsterInstance.get() as instance:
            return dg.materialize([nhits_model], partition_key=_key(*key), instance=instance,
                                  resources=defs.resources, run_config={"ops": {"nhits_model": {"config": BACKFILL}}})

    with ThreadPoolExecutor(len(keys)) as pool:
        results = dict(zip(keys, pool.map(partition_run, keys), strict=True))
    assert all(r.success for r in results.values())
    spans = []
    for result in results.values():
        [m] = result.asset_materializations_for_node("nhits_model")
        start = m.metadata["ray_started_at"].value
        spans.append((start, start + m.metadata["ray_seconds"].value))
    # at the busiest instant, as many trainings ran as the cluster has slots: 2 CPUs, 1 per training
    busiest = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert busiest == 2, spans
    with dg.DagsterInstance.get() as instance:
        assert instance.event_log_storage.get_concurrency_info("duckdb_writer").claimed_slots == []
    stored = warehouse.query("SELECT asset_class, target, model, mae FROM model_evaluations")
    for asset_class, target in keys:
        frame = read_frame(warehouse.query, asset_class, target)
        close = read_frame(warehouse.query, asset_class, "close")[["unique_id", "ds", "y"]]
        local = train_and_evaluate(frame, NHITSConfig(**BACKFILL).spec(asset_class), accelerator="cpu",
                                   target=target, close=close if target == "volatility" else None)
        want = local.evaluation.set_index("model")["mae"]
        got = stored[(stored.asset_class == asset_class) & (stored.target == target)].set_index("model")["mae"]
        assert sorted(got.index) == sorted(want.index), (asset_class, target)
        assert got[want.index].to_numpy() == pytest.approx(want.to_numpy(), rel=1e-4), (asset_class, target)
