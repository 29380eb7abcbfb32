"""The warehouse queries and writes several rooms share: a model's input frame (one builder for evaluation,
forecasting and export), its evaluation rows and training end, the promotion decisions, and the rows of an ingest
load. Reads take ``query`` (``(sql, params) -> DataFrame``, e.g. `resources.Warehouse.query`); writes take an open
connection inside the caller's transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from domain.vocabulary import CLASS_FREQ, check_member
from storage.duck import insert_frame, replace_where

if TYPE_CHECKING:
    from ingest.load import Loaded

Query = Callable[[str, list], pd.DataFrame]


def read_frame(query: Query, asset_class: str, target: str, exog=()) -> pd.DataFrame:
    """The training frame of (class, target), with the event feature columns ``exog`` of each (symbol, bar)
    joined when asked; ``attrs['freq']`` is the class's model frequency."""
    frame = query("SELECT unique_id, ds, y FROM training_frames WHERE asset_class = ? AND target = ? "
                  "ORDER BY unique_id, ds", [asset_class, target])
    if frame.empty:
        raise ValueError(f"training_frames[{asset_class}|{target}] is empty: materialize it first")
    frame.attrs["freq"] = CLASS_FREQ[check_member("asset_class", asset_class, CLASS_FREQ)]
    if exog:
        from models.events.features import attach
        from models.events.spec import FEATURE_COLUMNS

        unknown = set(exog) - set(FEATURE_COLUMNS)
        if unknown:
            raise ValueError(f"unknown event feature(s) {sorted(unknown)}; known: {FEATURE_COLUMNS}")
        feats = query(f"SELECT symbol, ds, {', '.join(exog)} FROM event_features WHERE asset_class = ?", [asset_class])
        if feats.empty:
            raise ValueError(f"event_features[{asset_class}] is empty: materialize event_features first")
        frame = attach(frame, feats, exog)
    return frame


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """What a stored forecaster reads: ``history`` (the training frame with the model's exogenous columns) and,
    with ``future``, ``with_future`` = history plus the next ``h`` bars' known-in-advance columns (FOMC days)."""

    history: pd.DataFrame
    with_future: pd.DataFrame


def model_input(query: Query, asset_class: str, target: str, model: Any, *, future: bool = False) -> ModelInput:
    """The input of ``model`` (a `storage.pyfunc` forecaster: NHITS, event-aware or not, or a baseline) on the
    current training frame: the one place evaluation, forecasting and export build it."""
    history = read_frame(query, asset_class, target, model.exog)
    if not (future and model.futr_exog):
        return ModelInput(history, history)
    from models.events.features import future_rows

    macro = query("SELECT ts, event_type, scheduled, policy_surprise FROM macro_events", [])
    ahead = future_rows(history, model.h, model.freq, macro, model.futr_exog)
    return ModelInput(history, pd.concat([history, ahead], ignore_index=True))


def evaluation_of(query: Query, name: str, version: str) -> pd.DataFrame:
    """The `model_evaluations` rows of one version (one per model: nhits and the baselines, same windows)."""
    return query("SELECT * FROM model_evaluations WHERE model_name = ? AND version = ?", [name, str(version)])


def version_train_end(query: Query, name: str, version: str | int) -> pd.Timestamp | None:
    """The version's training end (``model_evaluations.train_end``: its fit used rows up to it), or None."""
    value = query("SELECT max(train_end) AS t FROM model_evaluations WHERE model_name = ? AND version = ?",
                  [name, str(version)]).t.iloc[0]
    return None if pd.isna(value) else pd.Timestamp(value)


def record_evaluation(con, name: str, version: str, asset_class: str, target: str, result, run_id: str) -> int:
    """The evaluation of a training ``result`` (`models.evaluation.TrainResult`): its table as `model_evaluations`
    rows, and every scored model's per-point forecasts (challenger and baselines, same windows, with the series'
    MASE scale) as `evaluation_forecasts` rows, so any later test can run from the warehouse."""
    now = pd.Timestamp.now(tz="UTC")
    rows = result.evaluation.assign(
        model_name=name, version=version, asset_class=asset_class, target=target, h=result.spec.h,
        step=result.spec.step, train_end=result.train_end, test_start=result.test_start, run_id=run_id,
        evaluated_at=now)
    points = result.predictions.assign(
        model_name=name, version=version, asset_class=asset_class, target=target, run_id=run_id,
        scale=result.predictions["unique_id"].map(result.scale) if result.scale is not None else float("nan"))
    return insert_frame(con, "model_evaluations", rows) + insert_frame(con, "evaluation_forecasts", points)


def evaluation_forecasts_of(query: Query, name: str, version: str) -> tuple[pd.DataFrame, pd.Series]:
    """The per-point forecasts a version was evaluated on (every scored model) and the per-series MASE scale."""
    points = query("SELECT model, unique_id, cutoff, ds, step, y, yhat, lo, hi, scale FROM evaluation_forecasts "
                   "WHERE model_name = ? AND version = ? ORDER BY model, unique_id, cutoff, step", [name, str(version)])
    if points.empty:
        raise ValueError(f"{name} v{version} has no evaluation_forecasts rows: it was evaluated before per-point "
                         "forecasts were stored; train it again (materialize nhits_model)")
    scale = points.groupby("unique_id")["scale"].first()
    return points.drop(columns="scale"), scale


def champion_points(query: Query, name: str, champion) -> tuple[pd.DataFrame, str]:
    """The rolling-origin forecasts a champion (`storage.versions.ModelVersion`) is judged by, every model of the
    same windows, and the ``model`` of its own rows. A baseline champion has no weights and no evaluation of its
    own: its rows are those of its baseline in the newest evaluation of the model (the same forecaster on the
    newest windows)."""
    version = champion.version
    if champion.is_baseline:
        newest = query("SELECT version FROM model_evaluations WHERE model_name = ? AND model = ? "
                       "ORDER BY evaluated_at DESC LIMIT 1", [name, champion.evaluated_as])
        if newest.empty:
            raise ValueError(f"{name}: no evaluation scored baseline {champion.evaluated_as}: materialize nhits_model")
        version = newest.version.iloc[0]
    return evaluation_forecasts_of(query, name, version)[0], champion.evaluated_as


def record_decision(con, decision, *, name: str, asset_class: str, target: str, verdict: str, kind: str,
                    run_id: str) -> int:
    """One `model_promotions` row for a gate ``decision`` (`models.promotion.Decision`)."""
    row = pd.DataFrame([{**decision.record(), "decided_at": pd.Timestamp.now(tz="UTC"), "model_name": name,
                         "asset_class": asset_class, "target": target, "model_kind": kind, "decision": verdict,
                         "run_id": run_id}])
    return insert_frame(con, "model_promotions", row)


def write_loaded(con, loaded: Loaded, scope: dict, run_id: str) -> pd.DataFrame:
    """Replace ``scope`` of the loaded table, its quarantine rows and its load records (inside the caller's
    transaction); returns the per-source reconciliation."""
    now = pd.Timestamp.now(tz="UTC")
    recon = loaded.reconciliation().assign(run_id=run_id, loaded_at=now)
    replace_where(con, loaded.table, loaded.split.accepted, scope)
    quarantine = loaded.split.quarantined.assign(run_id=run_id, quarantined_at=now)
    replace_where(con, "quarantine", quarantine, {"table_name": loaded.table, **scope})
    con.execute("DELETE FROM source_loads WHERE list_contains(?, source)", [recon["source"].tolist()])
    replace_where(con, "source_loads", recon, {"table_name": loaded.table, **scope})
    return recon
