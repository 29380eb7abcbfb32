"""The promotion gate of `champion_model`: a challenger replaces the champion only if, on the same test windows,
its MASE beats the champion's and the best naive baseline's; every decision is recorded."""

import dataclasses

import pandas as pd

from resources import ModelRegistry, Warehouse
from resources.warehouse import insert_frame

BASELINE_MODELS = ("naive", "seasonal_naive", "window_mean")


@dataclasses.dataclass
class Decision:
    passed: bool
    reason: str
    version: str
    challenger_mase: float
    champion_version: str | None
    champion_kind: str | None
    champion_mase: float | None
    best_baseline: str
    best_baseline_mase: float


def record_evaluation(warehouse: Warehouse, name, version, asset_class, target, result, run_id) -> None:
    rows = result.evaluation.assign(
        model_name=name, version=version, asset_class=asset_class, target=target, h=result.spec.h,
        step=result.spec.step, train_end=result.train_end,
        test_start=result.test_start, run_id=run_id, evaluated_at=pd.Timestamp.now(tz="UTC"))
    with warehouse.transaction() as con:
        insert_frame(con, "model_evaluations", rows)


def evaluation_of(warehouse: Warehouse, name: str, version: str) -> pd.DataFrame:
    return warehouse.query("SELECT * FROM model_evaluations WHERE model_name = ? AND version = ?", [name, version])


def record_decision(warehouse: Warehouse, registry: ModelRegistry, name, asset_class, target, d: Decision,
                    decision: str, kind: str, run_id: str) -> None:
    row = pd.DataFrame([{**dataclasses.asdict(d), "decided_at": pd.Timestamp.now(tz="UTC"), "model_name": name,
                         "asset_class": asset_class, "target": target, "model_kind": kind, "decision": decision,
                         "run_id": run_id}])
    with warehouse.transaction() as con:
        insert_frame(con, "model_promotions", row)
    registry.tag(name, d.version, {"promotion": decision, "promotion_reason": d.reason})


def ensure_champion(registry: ModelRegistry, warehouse: Warehouse, name, asset_class, target, spec, result,
                    run_id) -> None:
    """There is always a champion: until an NHITS version passes the gate, the best baseline holds the alias."""
    if registry.alias(name, "champion") is not None:
        return
    table = result.evaluation.set_index("model")
    best = table.loc[list(BASELINE_MODELS), "mase"].idxmin()
    params = {"name": best, "h": spec.h, "input_size": spec.input_size, "season_length": spec.season_length,
              "freq": result.freq}
    version = registry.log_version(
        name, kind="baseline", baseline=params, evaluation=result.evaluation, params=params,
        metrics={"mase": table.loc[best, "mase"], "mae": table.loc[best, "mae"], "mse": table.loc[best, "mse"]},
        tags={"asset_class": asset_class, "target": target, "baseline": best}, run_name=f"{name}-baseline-{best}")
    registry.tag(name, version, {"baseline": best})
    registry.set_alias(name, "champion", version)
    reason = f"no champion yet: baseline '{best}' (MASE {table.loc[best, 'mase']:.4f}) holds the alias"
    d = Decision(True, reason, version, float(table.loc[best, "mase"]), None, None, None, best,
                 float(table.loc[best, "mase"]))
    record_decision(warehouse, registry, name, asset_class, target, d, "bootstrap", "baseline", run_id)


def champion_mase_on(registry, warehouse, name, champion, evaluation, asset_class, target, spec) -> float:
    """The champion's MASE on the challenger's test windows."""
    kind = champion.tags.get("model_kind")
    if kind == "baseline":
        return float(evaluation.set_index("model").loc[champion.tags["baseline"], "mase"])
    from assets.nhits_model import read_frame
    from models.evaluation import exog_of, loaded_window_predictions, time_split
    from models.metrics import naive_scale, score_predictions

    nf = registry.load(name, champion.version).nf
    hist, futr = exog_of(nf)  # an event-aware champion reads its event features on the same bars
    frame = read_frame(warehouse, asset_class, target, hist + futr)
    split = time_split(frame, h=spec.h, n_windows=spec.n_windows, step_size=spec.step)
    preds = loaded_window_predictions(nf, split)
    return float(score_predictions(preds, naive_scale(split.train, seasonality=1)).mase.iloc[0])


def decide(registry: ModelRegistry, warehouse: Warehouse, name, asset_class, target) -> Decision:
    from models.configs import spec_for

    challenger = registry.alias(name, "challenger")
    if challenger is None:
        raise ValueError(f"{name} has no challenger: materialize nhits_model first")
    evaluation = evaluation_of(warehouse, name, str(challenger.version))
    table = evaluation.set_index("model")
    first = evaluation.iloc[0]  # the windows the challenger was evaluated on
    spec = spec_for(asset_class, "quick", h=int(first.h), n_windows=int(first.n_windows), step_size=int(first.step))
    mase = float(table.loc["nhits", "mase"])
    best = table.loc[list(BASELINE_MODELS), "mase"].idxmin()
    best_mase = float(table.loc[best, "mase"])
    champion = registry.alias(name, "champion")
    champ_mase = None
    if champion is not None and str(champion.version) != str(challenger.version):
        champ_mase = champion_mase_on(registry, warehouse, name, champion, evaluation, asset_class, target, spec)
    failures = []
    if not mase < best_mase:
        failures.append(f"MASE {mase:.4f} does not beat baseline '{best}' ({best_mase:.4f})")
    if champ_mase is not None and not mase < champ_mase:
        failures.append(f"MASE {mase:.4f} does not beat champion v{champion.version} ({champ_mase:.4f})")
    reason = "; ".join(failures) or (f"MASE {mase:.4f} beats baseline '{best}' ({best_mase:.4f})"
                                      + (f" and champion v{champion.version} ({champ_mase:.4f})" if champ_mase else ""))
    return Decision(not failures, reason, str(challenger.version), mase, str(champion.version) if champion else None,
                    champion.tags.get("model_kind") if champion else None, champ_mase, best, best_mase)
