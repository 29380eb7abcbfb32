"""Hyperparameter searches in the warehouse: every trial of a search as a `search_trials` row (config as JSON text,
its status and loss, its MLflow child run), and the best searched config a training reads."""

from __future__ import annotations

import json
from collections.abc import Callable

import pandas as pd

from storage.duck import insert_frame

Query = Callable[..., pd.DataFrame]


def record_search(con, trials: pd.DataFrame, *, search_id: str, name: str, asset_class: str, target: str,
                  best_trial_id: str, train_end, parent_run_id: str | None, child_run_ids: list[str] | None,
                  run_id: str) -> int:
    """One row per trial of ``trials`` (`models.search.SearchResult.trials`: trial_id, status, stopped_early,
    config JSON, val_loss, last_step, seconds, error); the best marked ``is_best``."""
    rows = trials.assign(
        search_id=search_id, searched_at=pd.Timestamp.now(tz="UTC"), model_name=name, asset_class=asset_class,
        target=target, is_best=trials["trial_id"] == best_trial_id, train_end=pd.Timestamp(train_end),
        parent_run_id=parent_run_id, run_id=run_id,
        mlflow_run_id=list(child_run_ids) if child_run_ids else None)
    return insert_frame(con, "search_trials", rows)


def best_config(query: Query, asset_class: str, target: str) -> tuple[dict, str] | None:
    """The best config of the latest search for (asset class, target) and its search id; None without one."""
    if query("SELECT 1 FROM information_schema.tables WHERE table_name = 'search_trials'").empty:
        return None  # a warehouse from before searches
    found = query("SELECT config, search_id FROM search_trials WHERE asset_class = ? AND target = ? AND is_best "
                  "ORDER BY searched_at DESC LIMIT 1", [asset_class, target])
    if found.empty:
        return None
    return json.loads(found.config.iloc[0]), str(found.search_id.iloc[0])
