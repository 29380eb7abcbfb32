"""Drift of one asset class measured on the warehouse: the champions' training end (the reference window ends
there), their test MAE and stored forecasts (performance drift), the `models.drift` statistics on the class's
bars, and the `drift_metrics` rows. Reads take ``query`` (``(sql, params) -> DataFrame``); the write takes an open
connection inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import pandas as pd

from domain.vocabulary import TARGETS, model_name
from models.drift import Thresholds, class_verdict, features, input_drift, performance_drift
from models.frames import to_training_frame
from storage.duck import insert_frame
from storage.queries import Query, version_train_end
from storage.versions import ModelVersion

Champions = Mapping[str, ModelVersion | None]  # target -> the champion version (None: no champion yet)


def reference_end(query: Query, asset_class: str, champions: Champions) -> pd.Timestamp | None:
    """End of the champions' training period (the earliest over the class's targets), or None without any.
    A baseline champion has no fit of its own: the latest training end recorded for its model counts."""
    ends = []
    for target, version in champions.items():
        if version is None:
            continue
        name = model_name(asset_class, target)
        if version.is_baseline:
            found = query("SELECT max(train_end) AS t FROM model_evaluations WHERE model_name = ?", [name]).t.iloc[0]
            end = None if pd.isna(found) else pd.Timestamp(found)
        else:
            end = version_train_end(query, name, version.version)
        if end is not None:
            ends.append(end)
    return min(ends) if ends else None


def champion_test_mae(query: Query, asset_class: str, target: str, champion: ModelVersion) -> float | None:
    """The MAE the champion's model (NHITS, or its baseline) had on its latest test windows, or None."""
    model = champion.evaluated_as  # the `model` of its evaluation rows: nhits, ensemble or the baseline's name
    found = query("SELECT mae FROM model_evaluations WHERE model_name = ? AND model = ? "
                  "ORDER BY evaluated_at DESC LIMIT 1", [model_name(asset_class, target), model])
    return float(found.mae.iloc[0]) if len(found) else None


def performance(query: Query, asset_class: str, target: str, champion: ModelVersion | None,
                actuals: pd.DataFrame, th: Thresholds) -> pd.DataFrame:
    """The performance-drift row of (class, target): the stored forecasts scored on ``actuals`` (the training
    frame) over the champion's test MAE (`models.drift.performance_drift`)."""
    fc = query("SELECT symbol, ds, yhat, model_kind, model_version FROM forecasts "
               "WHERE asset_class = ? AND target = ?", [asset_class, target])
    test_mae = None
    if champion is not None and not fc.empty:
        test_mae = champion_test_mae(query, asset_class, target, champion)
    fc["ds"] = pd.to_datetime(fc["ds"])
    return performance_drift(fc[["symbol", "ds", "yhat"]], actuals, test_mae, asset_class, target, th)


class Drift(NamedTuple):
    table: pd.DataFrame  # `models.drift.DRIFT_COLUMNS`: one row per (symbol, feature), one per target's performance
    reference_end: pd.Timestamp | None  # end of the champions' training period; None without a champion
    drifted: bool  # the class verdict
    verdict: str
    watermark: pd.Timestamp  # the newest bar measured


def measure_drift(query: Query, bars: pd.DataFrame, asset_class: str, champions: Champions,
                  th: Thresholds) -> Drift:
    """Input drift (PSI, KS of log returns and volatility per symbol) of the class's ``bars`` (not empty) against
    the champions' training data, performance drift per target, and the class verdict."""
    frames = {t: to_training_frame(bars, asset_class, t, min_length=2) for t in TARGETS}
    ref_end = reference_end(query, asset_class, champions)
    parts = [input_drift(features(frames["close"], frames["volatility"]), asset_class, ref_end, th)]
    for target in TARGETS:
        parts.append(performance(query, asset_class, target, champions.get(target), frames[target], th))
    table = pd.concat(parts, ignore_index=True)
    drifted, verdict = class_verdict(table, th)
    return Drift(table, ref_end, drifted, verdict, pd.Timestamp(bars["ts"].max()))


def record_drift(con, drift: Drift, run_id: str) -> int:
    """Append the measurement to `drift_metrics` with the verdict and watermark; returns the rows written."""
    rows = drift.table.assign(computed_at=pd.Timestamp.now(tz="UTC"), watermark=drift.watermark,
                              class_drifted=drift.drifted, verdict=drift.verdict, run_id=run_id)
    return insert_frame(con, "drift_metrics", rows)
