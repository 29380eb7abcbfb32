"""A refused promotion is a normal outcome: a successful train_job whose `champion_model` says "refused: champion
stays", with the decision recorded, and the champion alias untouched (real fx bars, instance, DuckDB, MLflow)."""

import dagster as dg
import pytest

from tests.conftest import run_job, warehouse_query
from tests.pipelines.test_automation import fx_slice  # noqa: F401  (fixture: the bundled daily fx file, 1100 days)

KEY = dg.MultiPartitionKey({"asset_class": "fx", "target": "close"})
NAME = "nhits-fx-close"
# 2 training steps: on fx closes the last value beats it by far, so the gate refuses it
UNDERTRAINED = {"ops": {"nhits_model": {"config": {"max_steps": 2, "h": 10, "input_size": 60, "n_windows": 3}}}}


def _registry():
    from resources import ModelRegistry, Settings

    return ModelRegistry(settings=Settings())


def _instance():
    from pipelines.instance import ensure_dagster_home

    ensure_dagster_home()
    return dg.DagsterInstance.get()


def _train():
    result = run_job("train_job", KEY, run_config=UNDERTRAINED, raise_on_error=False)
    failed = [e.step_key for e in result.all_events if e.is_step_failure]
    assert result.success and not failed, f"a refused promotion failed the run: steps {failed}"
    return result


@pytest.mark.slow
def test_a_refused_challenger_is_a_green_run_and_the_champion_stays(fx_slice):  # noqa: F811
    from pipelines.definitions import defs

    first = _train()  # no champion yet: the best baseline holds the alias, the NHITS challenger is refused
    [decided] = first.asset_materializations_for_node("champion_model")
    champion = _registry().alias(NAME, "champion")
    assert champion.tags["model_kind"] == "baseline", decided.metadata["reason"].value
    with _instance() as instance:
        before = dg.evaluate_automation_conditions(defs=defs, instance=instance)

    second = _train()
    registry = _registry()
    challenger = registry.alias(NAME, "challenger")
    assert registry.alias(NAME, "champion").version == champion.version  # the guarantee: the alias did not move
    assert challenger.version != champion.version and challenger.tags["promotion"] == "refused"
    [decided] = second.asset_materializations_for_node("champion_model")
    meta = {k: v.value for k, v in decided.metadata.items()}
    # refused because it loses, or because it is not significantly better (DM p >= alpha): the champion stays
    assert meta["decision"].endswith("champion stays") and meta["champion_version"] == str(champion.version)
    assert meta["challenger_version"] == str(challenger.version)
    if meta["decision"] == "refused: champion stays":
        assert f"does not beat baseline '{meta['best_baseline']}'" in meta["reason"]
        assert meta["challenger_score"] >= meta["best_baseline_score"]
    else:
        assert meta["decision"].startswith("not significantly better (p = ")
        assert f"not significantly better than baseline '{meta['best_baseline']}'" in meta["reason"]
        assert meta["p_value_vs_best_baseline"] >= meta["alpha"]

    rows = warehouse_query("SELECT decision, version, champion_version, reason, run_id FROM model_promotions "
                           "ORDER BY decided_at")
    assert rows.decision.tolist() == ["bootstrap", "refused", "refused"]
    last = rows.iloc[-1]
    assert (last.version, last.champion_version, last.run_id) == (str(challenger.version), str(champion.version),
                                                                  second.run_id)
    assert last.reason == meta["reason"]

    with _instance() as instance:  # what the UI shows: green runs, the decision on the asset page
        statuses = {r.run_id: r.status for r in instance.get_runs()}
        page = instance.get_latest_materialization_event(dg.AssetKey("champion_model")).asset_materialization
        after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=before.cursor)
    assert set(statuses.values()) == {dg.DagsterRunStatus.SUCCESS} and len(statuses) == 3  # ingest + 2 train
    assert page.metadata["decision"].value == meta["decision"]
    assert page.metadata["reason"].value == meta["reason"]
    # downstream: forecasts and the ONNX export follow the decision (with the unchanged champion)
    assert str(KEY) in after.get_requested_partitions(dg.AssetKey("forecasts"))
    assert str(KEY) in after.get_requested_partitions(dg.AssetKey("onnx_model"))
    assert run_job("forecast_job", KEY).success
    stored = warehouse_query("SELECT DISTINCT model_version, model_kind FROM forecasts")
    assert stored.to_dict("records") == [{"model_version": str(champion.version), "model_kind": "baseline"}]
