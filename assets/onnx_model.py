"""`onnx_model`: the champion's (and challenger's) ONNX export for the forecast service, verified against torch."""

import dagster as dg
from pydantic import Field

from assets.champion_model import champion_model
from assets.common import DUCKDB_POOL, FOLLOW_DEPS, OWNERS, model_keys, model_partitions
from assets.nhits_model import nhits_model
from domain.vocabulary import CHAMPION, SERVED_ALIASES, model_name
from resources import ModelRegistry, Warehouse


class OnnxConfig(dg.Config):
    """Export settings."""

    tolerance: float = Field(1e-5, gt=0, description="per series: max |onnx - torch| / max |torch| over its windows "
                                                      "(post-training and in-sample: a numerical equality test)")
    int8_tolerance: float = Field(0.01, gt=0, description="offer INT8 only if, per series, mean |int8 - fp32| / "
                                                           "mean |fp32| on the post-training windows is at most this")
    max_windows: int = Field(256, ge=1, description="post-training windows (forecasting only after the version's "
                                                     "train_end), and in-sample windows over the whole frame, at "
                                                     "most this many each")
    reexport: bool = Field(False, description="export again even when the version already has an ONNX file")


@dg.asset(
    partitions_def=model_partitions,
    deps=[nhits_model, champion_model],
    group_name="deployment",
    kinds={"onnx", "mlflow"},
    owners=OWNERS,
    pool=DUCKDB_POOL,
    automation_condition=FOLLOW_DEPS,
    description=(
        "The versions holding aliases `champion` and `challenger` of `nhits-<class>-<target>` (and "
        "`previous_champion`, the service's backup) as ONNX graphs with a dynamic batch, the model's window "
        "scaler inside. NHITS is re-expressed with shape ops (neuralforecast's own module freezes the batch size "
        "when traced) with its first two Linear layers and the knot interpolation folded; a baseline champion "
        "exports too. Each export must reproduce torch at batch 1, 16 and 256 on every series (max relative "
        "difference to that series' scale <= tolerance, on post-training and in-sample windows: an equality test) or "
        "the run fails; dynamic INT8 is kept only when, on the post-training windows (every forecast step after "
        "the version's train_end) of every series, its forecasts stay within 1% of fp32's. Stored as artifacts "
        "`onnx/` of the version's MLflow run, tag `onnx` on the version."),
)
def onnx_model(context: dg.AssetExecutionContext, config: OnnxConfig, warehouse: Warehouse,
               registry: ModelRegistry) -> dg.MaterializeResult:
    import tempfile
    from pathlib import Path

    import pandas as pd

    from serving.export import export_model
    from serving.windows import check_windows
    from storage.queries import model_input, version_train_end

    asset_class, target = model_keys(context)
    name = model_name(asset_class, target)
    rows, seen = [], set()
    for alias in SERVED_ALIASES:
        version = registry.alias(name, alias)
        if version is None or version.version in seen:
            continue
        seen.add(version.version)
        if version.onnx is not None and not config.reexport:
            rows.append({"alias": alias, "version": version.version, "exported": "already",
                         "max_rel_diff": float(version.tags.get("onnx_max_rel_diff", "nan")),
                         "int8": version.tags.get("onnx_int8", "")})
            continue
        model = registry.load(name, version.version)
        held = model_input(warehouse.query, asset_class, target, model).history
        checks = check_windows(held, model.input_size, model.h, model.hist_exog, model.futr_exog,
                               max_windows=config.max_windows,
                               train_end=version_train_end(warehouse.query, name, version.version))
        with tempfile.TemporaryDirectory() as tmp:
            report = export_model(model, Path(tmp), checks, tol=config.tolerance, int8_tolerance=config.int8_tolerance)
            registry.log_onnx(name, version.version, Path(tmp), {
                "onnx_max_rel_diff": f"{report.max_rel_diff:.3g}",
                "onnx_int8": "offered" if report.int8_offered else (report.int8_note or "not applicable")})
        context.log.info(f"{name} v{version.version} ({alias}): ONNX max rel diff {report.max_rel_diff:.2g}; "
                         f"{report.int8_note or 'baseline: fp32 only'}")
        rows.append({"alias": alias, "version": version.version, "exported": "now", "kind": report.kind,
                     "max_rel_diff": report.max_rel_diff, "int8": report.int8_note or "n/a",
                     "train_end": report.train_end or "", "post_training_windows": report.post_training_windows,
                     "in_sample_windows": report.in_sample_windows})
    if not rows:
        raise dg.Failure(f"{name} has no champion or challenger yet: materialize nhits_model first")
    table = pd.DataFrame(rows)
    return dg.MaterializeResult(metadata={
        "exports": dg.MetadataValue.md(table.to_markdown(index=False)),
        "champion_version": next((r["version"] for r in rows if r["alias"] == CHAMPION), ""),
        "max_rel_diff": dg.MetadataValue.float(float(table.max_rel_diff.max())),
        "serve": f"tradecast serve --asset-class {asset_class} --target {target}",
    })
