"""``tradecast bench --csv FILE ... --search N``: tune NHITS on the file's validation part before the test part is
scored, as the N-HiTS paper did (its figures come from a hyperparameter search on the validation split).

The search is :func:`models.search.run_search` (Ray Tune: Optuna's TPE, ASHA early stopping) on the caller's Ray
cluster. Its trials see the training part only (``time_split(...).train``: every row before the first test
cutoff), holding out its last ``spec.val_size`` steps -- the split's validation fraction -- for the trials'
``val_loss``. The benchmark then trains NHITS with the best config, on the same steps and data as every other
model, and scores the same test windows; the document records the config and the trials.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from models.benchmark.datasets import BenchData
from models.benchmark.specs import BenchSpec, Budget


def nhits_spec(spec: BenchSpec, budget: Budget, *, series_batch_size: int, config: dict | None = None) -> Any:
    """The ``NHITSSpec`` the benchmark trains for ``spec`` under ``budget`` (with a searched ``config`` applied)."""
    from models.configs import NHITSSpec
    from models.search import apply

    nspec = NHITSSpec(name=spec.name, h=spec.h, input_size=spec.input_size, freq=spec.freq,
                      season_length=spec.season_length, n_pool_kernel_size=spec.n_pool_kernel_size,
                      n_freq_downsample=spec.n_freq_downsample, batch_size=budget.batch_size,
                      series_batch_size=series_batch_size, learning_rate=budget.learning_rate,
                      max_steps=budget.max_steps, val_check_steps=budget.max_steps, loss="mae",
                      scaler_type=spec.scaler_type, seed=budget.seed)
    return apply(nspec, config) if config else nspec


def search_nhits(data: BenchData, budget: Budget, *, num_samples: int, storage: Path, max_concurrent: int | None = None,
                 time_budget_s: float | None = None) -> dict:
    """Search NHITS on ``data``'s validation part; returns the JSON-ready record (``best_config``,
    ``best_val_mae``, ``trials``, ...). ValueError when the protocol has no validation part of ``h`` steps."""
    from models.evaluation import time_split
    from models.search import run_search

    spec = data.spec
    if num_samples < 1:
        raise ValueError(f"--search needs at least 1 trial (got {num_samples})")
    if spec.val_size < spec.h:
        raise ValueError(f"{spec.name}: --search needs a validation part of at least h={spec.h} steps (got "
                         f"{spec.val_size}); give --split a validation fraction, e.g. 0.7,0.1,0.2")
    split = time_split(data.frame, h=spec.h, n_windows=spec.n_windows, step_size=spec.step_size)
    n_series = int(split.train["unique_id"].nunique())
    base = nhits_spec(spec, budget, series_batch_size=min(32, n_series))
    every = max(1, budget.max_steps // 4)
    found = run_search(split.train, base, spec.freq, num_samples=num_samples, max_steps=budget.max_steps,
                       val_size=spec.val_size, grace_steps=every, val_check_steps=every,
                       max_concurrent=max_concurrent, time_budget_s=time_budget_s, storage_path=storage,
                       seed=budget.seed, name=f"bench-{spec.name}-{int(time.time())}")
    trials = found.trials.drop(columns=["config"]).copy()
    for column in ("data_end", "val_start", "val_end"):
        trials[column] = trials[column].astype(str)
    return {
        "dataset": spec.name, "num_samples": num_samples, "trials_run": len(found.trials),
        "max_steps": budget.max_steps, "val_size": spec.val_size, "val_check_steps": every,
        "best_config": found.best_config, "best_val_mae": found.best_val_loss, "best_trial_id": found.best_trial_id,
        "wall_seconds": found.wall_seconds, "space": found.space,
        "validation": {"start": str(trials["val_start"].iloc[0]), "end": str(trials["val_end"].iloc[0]),
                       "test_start": str(split.test_start)},
        "trials": json.loads(trials.to_json(orient="records", double_precision=15)),
    }


def to_markdown(record: dict) -> str:
    """The search section of the benchmark's markdown."""
    import pandas as pd

    table = pd.DataFrame(record["trials"])
    keep = [c for c in ("trial_id", "status", "stopped_early", "val_loss", "last_step", "seconds", *record["space"])
            if c in table]
    v = record["validation"]
    return "\n".join([
        f"## NHITS search ({record['dataset']})", "",
        f"{record['trials_run']} Ray Tune trials (Optuna TPE, ASHA), at most {record['max_steps']} steps each, "
        f"validation {v['start']} .. {v['end']} (before the test part, from {v['test_start']}); "
        f"{record['wall_seconds']:.0f} s. Best: trial {record['best_trial_id']}, validation MAE "
        f"{record['best_val_mae']:.4f}, config `{json.dumps(record['best_config'], sort_keys=True)}` "
        "(NHITS above was trained with it).", "",
        table[keep].round(4).to_markdown(index=False), ""])
