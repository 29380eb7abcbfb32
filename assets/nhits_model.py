"""`nhits_model`: train NHITS on a training frame, evaluate it beside the baselines, register it in MLflow
as the `challenger`; `champion_model` (the promotion gate) decides whether it becomes `champion`."""

from typing import Literal

import dagster as dg
from pydantic import Field

from assets.common import OWNERS, model_keys, model_partitions, png_markdown, pool_slot
from assets.event_features import event_features
from assets.nhits_search import nhits_search
from assets.training_frames import training_frames
from domain.vocabulary import BASELINE_KIND, CHALLENGER, CHAMPION, ENSEMBLE_KIND, NHITS_KIND, model_name
from resources import ModelRegistry, Warehouse
from resources.ray import RayCluster


class NHITSConfig(dg.Config):
    """NHITS settings; empty fields take the asset class's config (hft for crypto, daily otherwise)."""

    profile: Literal["quick", "full"] = Field("quick", description="quick: small step budget (make run, tests)")
    h: int | None = Field(None, ge=1, description="forecast horizon (hft 12, daily 30)")
    input_size: int | None = Field(None, ge=1, description="lookback window (hft 288, daily 365)")
    n_pool_kernel_size: list[int] | None = Field(None, description="pooling per stack (hft [8,4,1], daily [4,2,1])")
    n_freq_downsample: list[int] | None = Field(None, description="downsampling per stack")
    mlp_units: list[list[int]] | None = Field(None, description="hidden sizes per stack, e.g. [[512,512]]*3")
    max_steps: int | None = Field(None, ge=1, description="training steps (profile default when empty)")
    learning_rate: float | None = Field(None, gt=0)
    loss: Literal["mae", "mse", "mase", "quantile", "studentt"] = "mae"
    accelerator: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="auto: CUDA with bf16-mixed precision when present (DDP on several GPUs), else CPU")
    seed: int = 1
    n_windows: int | None = Field(None, ge=1, description="rolling-origin test windows (hft 72, daily 48)")
    step_size: int | None = Field(None, ge=1, description="bars between test origins (hft 12, daily 5)")
    log_every_n_steps: int = Field(50, ge=1, description="training loss to the run log every N steps")
    use_search: bool = Field(True, description="train with the best config of the latest `nhits_search` of this "
                             "partition when one exists (config_source=search); explicit fields here still win")
    ensemble: bool = Field(True, description="also choose, on validation windows before the test part, NHITS "
                           "combined with the best served baseline (w * NHITS + (1 - w) * baseline, w by the gate's "
                           "default loss); when it beats NHITS alone there it is registered and becomes the challenger")
    use_events: bool = Field(False, description="event-aware NHITS: read `event_features` as exogenous columns")
    event_groups: Literal["news", "fomc", "all"] = Field(
        "all", description="with use_events: news (ticker + market-wide headlines, historical), fomc (policy "
                           "surprise historical, scheduled meeting day future) or all")

    def spec(self, asset_class: str, searched: dict | None = None):
        """The spec: the class's report config, then the searched config (when given), then this config's fields."""
        from models.configs import spec_for

        fields = ("h", "input_size", "max_steps", "learning_rate", "n_windows", "step_size")
        overrides = {f: getattr(self, f) for f in fields if getattr(self, f) is not None}
        for f in ("n_pool_kernel_size", "n_freq_downsample"):
            if getattr(self, f) is not None:
                overrides[f] = tuple(getattr(self, f))
        if self.mlp_units is not None:
            overrides["mlp_units"] = tuple(tuple(u) for u in self.mlp_units)
        if self.use_events:
            from models.events.spec import exog_columns

            overrides["hist_exog"], overrides["futr_exog"] = exog_columns(self.event_groups)
        spec = spec_for(asset_class, self.profile, loss=self.loss, seed=self.seed, **overrides)
        if searched:  # a field set here wins over the searched value (mlp_width is mlp_units)
            from models.search import apply

            spec = apply(spec, {k: v for k, v in searched.items()
                                if ("mlp_units" if k == "mlp_width" else k) not in overrides})
        return spec


@dg.asset(
    partitions_def=model_partitions,
    deps=[training_frames, event_features, nhits_search],  # event_features: with use_events; nhits_search: its best
    # config, when one exists (use_search)
    group_name="training",
    kinds={"pytorch", "ray", "mlflow"},
    owners=OWNERS,
    description=(
        "NHITS (neuralforecast) trained per (asset class, target) with the report's configs: hft (h=12, input 288, "
        "pooling/downsampling [8,4,1]) for crypto, daily (h=30, input 365, [4,2,1]) for equities and fx. Evaluated "
        "on rolling-origin test windows after the training period beside naive, seasonal naive and window mean; "
        "logged to MLflow and registered as a new version of `nhits-<class>-<target>` with alias `challenger`. "
        "With `use_events` the model reads `event_features` (news: historical exogenous; scheduled FOMC day: "
        "future exogenous) and is tagged features=events; it goes through the same gate. With `ensemble` (default) "
        "NHITS combined with the best served baseline is chosen on validation windows before the test part; when "
        "it beats NHITS alone there it is registered too (model_kind=ensemble) and becomes the challenger instead. "
        "The fit runs as a Ray task on the `ray` resource's cluster; the `duckdb_writer` pool is held only while "
        "the warehouse is read or written, so the partitions train in parallel. With `use_search` the best config "
        "of the latest `nhits_search` is used (metadata config_source)."),
)
def nhits_model(context: dg.AssetExecutionContext, config: NHITSConfig, warehouse: Warehouse,
                registry: ModelRegistry, ray: RayCluster) -> dg.MaterializeResult:
    from compute.training import submit, unpack
    from models.promotion import GateRule
    from storage.queries import read_frame
    from storage.searches import best_config

    asset_class, target = model_keys(context)
    name = model_name(asset_class, target)
    with pool_slot(context):  # reads: the frame, the searched config, the close frame for GARCH
        searched = best_config(warehouse.query, asset_class, target) if config.use_search else None
        spec = config.spec(asset_class, searched[0] if searched else None)
        frame = read_frame(warehouse.query, asset_class, target, spec.exog)
        close = None
        if target == "volatility":  # the field's baselines are judged on the same windows; GARCH reads returns
            close = warehouse.query("SELECT unique_id, ds, y FROM training_frames WHERE asset_class = ? AND "
                                    "target = 'close' ORDER BY unique_id, ds", [asset_class])
    if target == "volatility" and close.empty:
        close = None
        context.log.warning(f"training_frames[{asset_class}|close] is empty: GARCH (on close returns) is not "
                            "judged in this run; materialize the close partition first")
    config_source = f"search {searched[1]}" if searched else "report config"
    features = f"events:{config.event_groups}" if config.use_events else "none"
    feature_tags = {"features": "events", "event_groups": config.event_groups} if config.use_events else {
        "features": "none"}
    context.log.info(f"training {name} on Ray ({ray.ray_address}): {frame.unique_id.nunique()} series, "
                     f"{spec.max_steps} steps, loss {spec.loss}, config from {config_source}, exogenous: {features}")
    import ray as ray_core

    shipped = ray_core.get(submit(
        frame, spec, **ray.resources(), accelerator=config.accelerator, target=target, close=close,
        log_every_n_steps=config.log_every_n_steps,
        ensemble_metric=GateRule.for_target(target).metric if config.ensemble else None))
    for step, loss in shipped.train_loss_trajectory[::max(1, config.log_every_n_steps)]:
        context.log.info(f"step {step}: train loss {loss:.5f}")
    context.log.info(f"trained on Ray node {shipped.node[:12]} in {shipped.ended_at - shipped.started_at:.1f} s")
    result = unpack(shipped, warehouse.settings.root, accelerator="cpu")
    placement = {"ray_node": shipped.node, "ray_started_at": dg.MetadataValue.timestamp(shipped.started_at),
                 "ray_seconds": dg.MetadataValue.float(round(shipped.ended_at - shipped.started_at, 2))}
    return _register(context, config, warehouse, registry, name, asset_class, target, frame, result, features,
                     feature_tags, config_source, placement)


def _register(context, config: NHITSConfig, warehouse: Warehouse, registry: ModelRegistry, name: str,
              asset_class: str, target: str, frame, result, features: str, feature_tags: dict,
              config_source: str, placement: dict) -> dg.MaterializeResult:
    """Log the trained version (and the ensemble), record the evaluation, set the aliases: the asset's writes."""
    from models.plots import plot_forecasts
    from storage.queries import record_evaluation

    spec = result.spec
    table = result.evaluation
    nhits = table.set_index("model").loc["nhits"]
    symbols = sorted(frame.unique_id.unique())[:3]
    nhits_preds = result.predictions[result.predictions.model == "nhits"]
    last_cut = nhits_preds.cutoff.max()
    plot = plot_forecasts(frame[frame.ds <= nhits_preds.ds.max()],
                          nhits_preds[nhits_preds.cutoff == last_cut], symbols,
                          title=f"{name}: last test window (NHITS)")
    version = registry.log_version(
        name, kind=NHITS_KIND, nf=result.nf, evaluation=table, plot_png=plot, run_name=f"{name}-{context.run_id[:8]}",
        params={**spec.to_params(), "asset_class": asset_class, "target": target, "accelerator": config.accelerator,
                "n_series": frame.unique_id.nunique(), "train_end": result.train_end, "config_source": config_source},
        metrics={f"{row.model}_{m}": getattr(row, m) for row in table.itertuples() for m in ("mse", "mae", "mase")}
        | {"train_seconds": result.train_seconds, "coverage_80": nhits.get("coverage_80", float("nan"))}
        | {f"checkpoint_{k}": float(v) for k, v in (result.best_checkpoint or {}).items() if k != "restored"},
        tags={"asset_class": asset_class, "target": target, "dagster_run_id": context.run_id,
              "config_source": config_source, **feature_tags})
    registry.tag(name, version, feature_tags)  # on the version too: the gate and forecasts read them there
    with pool_slot(context), warehouse.transaction() as con:
        record_evaluation(con, name, version, asset_class, target, result, context.run_id)
    challenger, ensemble = version, _ensemble_text(result, config.ensemble)
    if result.ensemble is not None and result.ensemble.improves:
        challenger = _register_ensemble(context, warehouse, registry, name, asset_class, target, result, version,
                                        feature_tags, plot)
        ensemble = f"{ensemble}: registered as v{challenger}, the challenger"
    registry.set_alias(name, CHALLENGER, challenger)  # last: a challenger always has its evaluation rows
    if registry.alias(name, CHAMPION) is None:  # there is always a champion: the best baseline until NHITS passes
        _bootstrap_champion(context, warehouse, registry, name, asset_class, target, result)
    context.log.info(f"{name}: ensemble {ensemble}")
    return dg.MaterializeResult(metadata={
        "model_name": name, "version": version, "challenger_version": challenger, "ensemble": ensemble,
        "target": target, "features": features, "config_source": config_source,
        "mase": dg.MetadataValue.float(float(nhits.mase)), "mae": dg.MetadataValue.float(float(nhits.mae)),
        "train_seconds": dg.MetadataValue.float(round(result.train_seconds, 2)),
        "weights": _checkpoint_text(result.best_checkpoint),
        "evaluation": dg.MetadataValue.md(table.round(6).to_markdown(index=False)),
        "test_windows": f"{result.test_start} .. (after train_end {result.train_end})",
        "forecast_plot": png_markdown(plot, name), **placement,
    })


def _checkpoint_text(record: dict | None) -> str:
    """Which weights were kept: the best validated step (models.nhits.best_checkpoint) or the last."""
    if not record:
        return "last step (no validation set)"
    return (f"best validated: step {record['best_step']} (val loss {record['best_val_loss']:.4g}); "
            f"last validation step {record['last_step']} had {record['last_val_loss']:.4g}")


def _ensemble_text(result, asked: bool) -> str:
    """What the ensemble step chose, for the log and the asset page."""
    e = result.ensemble
    if e is None:
        return "off (NHITSConfig.ensemble)" if not asked else f"none ({result.ensemble_note})"
    loss = e.metric.upper()
    verdict = ("beats NHITS alone and the baseline alone" if e.improves else
               f"{'NHITS' if e.weight == 1 else e.baseline} alone is best: no new candidate, not registered")
    return (f"{e.weight:g} x NHITS + {1 - e.weight:g} x {e.baseline}, validation {loss} {e.validation_loss:.4g} vs "
            f"NHITS {e.nhits_validation_loss:.4g} and {e.baseline} {e.baseline_validation_loss:.4g} on {e.n_windows} "
            f"window(s), {e.n_points} points: {verdict}")


def _register_ensemble(context, warehouse: Warehouse, registry: ModelRegistry, name: str, asset_class: str,
                       target: str, result, nhits_version: str, feature_tags: dict, plot: bytes) -> str:
    """Register the ensemble (the same NHITS weights + its weight and served baseline) as a new version with its
    evaluation rows (the same windows: model ``ensemble``); returns the version."""
    from models.ensemble import served_params
    from storage.queries import record_evaluation

    e, table = result.ensemble, result.evaluation
    row = table.set_index("model").loc[ENSEMBLE_KIND]
    tags = {"ensemble_of": nhits_version, "ensemble_baseline": e.baseline, "ensemble_weight": f"{e.weight:g}"}
    version = registry.log_version(
        name, kind=ENSEMBLE_KIND, nf=result.nf, ensemble=served_params(e, result.spec, result.freq), evaluation=table,
        plot_png=plot, run_name=f"{name}-ensemble-{context.run_id[:8]}",
        params={**result.spec.to_params(), **{f"ensemble_{k}": v for k, v in e.as_dict().items()},
                "asset_class": asset_class, "target": target, "train_end": result.train_end},
        metrics={"mase": float(row.mase), "mae": float(row.mae), "mse": float(row.mse),
                 "validation_loss": e.validation_loss, "nhits_validation_loss": e.nhits_validation_loss},
        tags={"asset_class": asset_class, "target": target, "dagster_run_id": context.run_id, **feature_tags, **tags})
    registry.tag(name, version, {**feature_tags, **tags})
    with pool_slot(context), warehouse.transaction() as con:
        record_evaluation(con, name, version, asset_class, target, result, context.run_id)
    return version


def _bootstrap_champion(context, warehouse: Warehouse, registry: ModelRegistry, name: str, asset_class: str,
                        target: str, result) -> None:
    """Register the best servable baseline of the first evaluation (by the gate's loss for the target) as a version,
    give it alias `champion`, record why."""
    import dataclasses

    from models.promotion import BOOTSTRAP, GateRule, bootstrap_champion
    from storage.queries import record_decision

    spec = result.spec
    chosen = bootstrap_champion(result.predictions, result.scale, GateRule.for_target(target), h=spec.h,
                                input_size=spec.input_size, season_length=spec.season_length, freq=result.freq)
    version = registry.log_version(
        name, kind=BASELINE_KIND, baseline=chosen.params, evaluation=result.evaluation, params=chosen.params,
        metrics=chosen.metrics, tags={"asset_class": asset_class, "target": target, "baseline": chosen.name},
        run_name=f"{name}-baseline-{chosen.name}")
    registry.tag(name, version, {"baseline": chosen.name})
    registry.set_alias(name, CHAMPION, version)
    decision = dataclasses.replace(chosen.decision, version=version)
    with pool_slot(context), warehouse.transaction() as con:
        record_decision(con, decision, name=name, asset_class=asset_class, target=target, verdict=BOOTSTRAP,
                        kind=BASELINE_KIND, run_id=context.run_id)
    registry.tag(name, version, {"promotion": BOOTSTRAP, "promotion_reason": decision.reason})
