"""`nhits_search`: tune NHITS per (asset class, target) on Ray Tune (Optuna's TPE proposes, ASHA stops the weak
trials early) on validation windows inside the training part, strictly before the gate's test windows. Trials go
to DuckDB `search_trials` and to MLflow as child runs of one parent run; `nhits_model` trains with the best."""

from typing import Literal

import dagster as dg
from pydantic import Field

from assets.common import OWNERS, model_keys, model_partitions, png_markdown, pool_slot
from assets.training_frames import training_frames
from domain.vocabulary import model_name
from resources import ModelRegistry, Warehouse
from resources.ray import RayCluster


class SearchConfig(dg.Config):
    """The search budget: trials, steps per trial, the early-stopping scheduler and the wall-time cap."""

    profile: Literal["quick", "full"] = Field("quick", description="the base config the space is centred on")
    num_samples: int = Field(8, ge=1, description="trials (Optuna proposes each from the ones before)")
    max_steps: int = Field(300, ge=1, description="training steps of a trial that is never stopped early")
    grace_steps: int = Field(50, ge=1, description="ASHA: steps every trial gets before it can be stopped")
    val_check_steps: int = Field(25, ge=1, description="steps between validation losses (ASHA's rungs)")
    val_windows: int = Field(2, ge=1, description="validation: the last val_windows x h steps of the training part")
    max_concurrent: int | None = Field(None, ge=1, description="trials at once (empty: as many as the cluster fits)")
    time_budget_s: float | None = Field(1800.0, gt=0, description="stop proposing trials after this many seconds")
    seed: int = 1
    h: int | None = Field(None, ge=1, description="horizon (empty: the class's config, as nhits_model)")
    input_size: int | None = Field(None, ge=1, description="centre of the input-size choices (empty: the class's)")
    n_windows: int | None = Field(None, ge=1, description="the gate's test windows, kept out of the search")
    step_size: int | None = Field(None, ge=1, description="bars between the gate's test origins")

    def spec(self, asset_class: str):
        from models.configs import spec_for

        fields = ("h", "input_size", "n_windows", "step_size")
        return spec_for(asset_class, self.profile, seed=self.seed,
                        **{f: getattr(self, f) for f in fields if getattr(self, f) is not None})


@dg.asset(
    partitions_def=model_partitions,
    deps=[training_frames],
    group_name="training",
    kinds={"ray", "optuna", "mlflow"},
    owners=OWNERS,
    description=(
        "Hyperparameter search for NHITS on Ray Tune: Optuna (TPE) proposes configs around the report's (input "
        "size, pooling and downsampling, MLP width, learning rate, scaler), ASHA stops weak trials early. Each trial "
        "trains on the training part without its last val_windows x h steps and is scored (MAE, original scale) on "
        "those, all before the gate's test windows. Trials: DuckDB `search_trials` and MLflow child runs of one "
        "parent run; `nhits_model` trains with the best config (config_source). Compute on the `ray` resource's "
        "cluster; the warehouse pool only while reading and writing."),
)
def nhits_search(context: dg.AssetExecutionContext, config: SearchConfig, warehouse: Warehouse,
                 registry: ModelRegistry, ray: RayCluster) -> dg.MaterializeResult:
    from models.evaluation import time_split
    from models.plots import plot_trials
    from models.search import run_search
    from storage.queries import read_frame
    from storage.searches import record_search

    asset_class, target = model_keys(context)
    name = model_name(asset_class, target)
    spec = config.spec(asset_class)
    with pool_slot(context):
        frame = read_frame(warehouse.query, asset_class, target)
    split = time_split(frame, h=spec.h, n_windows=spec.n_windows, step_size=spec.step)
    search_id = f"{name}-{context.run_id[:8]}"
    context.log.info(f"searching {name} on Ray ({ray.ray_address}): {config.num_samples} trials x <= "
                     f"{config.max_steps} steps, training part up to {split.train_end}")
    found = run_search(
        split.train, spec, frame.attrs.get("freq") or spec.freq, num_samples=config.num_samples,
        max_steps=config.max_steps, val_size=config.val_windows * spec.h, grace_steps=config.grace_steps,
        val_check_steps=config.val_check_steps, cpus_per_trial=ray.cpus_per_training,
        gpus_per_trial=ray.gpus_per_training, max_concurrent=config.max_concurrent,
        time_budget_s=config.time_budget_s, storage_path=warehouse.settings.root / "ray" / "tune", seed=config.seed,
        name=search_id)
    trials = found.trials
    plot = plot_trials(found.history, best=found.best_trial_id, title=f"{name}: validation MAE per trial")
    table = trials[["trial_id", "status", "stopped_early", "val_loss", "last_step", "seconds", "config"]]
    parent, children = registry.log_search(
        run_name=search_id, params={**config.model_dump(), "asset_class": asset_class, "target": target,
                                    "train_end": split.train_end, "space": found.space},
        trials=[_trial_dict(row) for row in trials.to_dict("records")],
        best={"config": found.best_config, "val_loss": found.best_val_loss, "trial_id": found.best_trial_id},
        tags={"asset_class": asset_class, "target": target, "dagster_run_id": context.run_id},
        files={"trial_loss.png": plot, "trials.md": table.to_markdown(index=False)})
    with pool_slot(context), warehouse.transaction() as con:
        record_search(con, trials, search_id=search_id, name=name, asset_class=asset_class, target=target,
                      best_trial_id=found.best_trial_id, train_end=split.train_end, parent_run_id=parent,
                      child_run_ids=children, run_id=context.run_id)
    failed = int((trials.status == "ERROR").sum())
    return dg.MaterializeResult(metadata={
        "search_id": search_id, "best_val_mae": dg.MetadataValue.float(float(found.best_val_loss)),
        "best_config": dg.MetadataValue.json(found.best_config), "trials": len(trials), "failed_trials": failed,
        "stopped_early": int(trials.stopped_early.sum()), "wall_seconds": round(found.wall_seconds, 1),
        "mlflow_parent_run": parent, "trial_table": dg.MetadataValue.md(table.round(6).to_markdown(index=False)),
        "trial_loss_plot": png_markdown(plot, f"{name} trial loss"),
    })


def _trial_dict(row: dict) -> dict:
    import json
    import math

    loss = row.get("val_loss")
    return {"trial_id": row["trial_id"], "status": row["status"], "config": json.loads(row["config"]),
            "val_loss": None if loss is None or (isinstance(loss, float) and math.isnan(loss)) else float(loss),
            "last_step": row.get("last_step"), "seconds": row.get("seconds"),
            "stopped_early": bool(row.get("stopped_early")), "error": row.get("error")}
