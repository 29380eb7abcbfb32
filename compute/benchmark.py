"""`make bench-scale`: what Ray buys on this machine, measured side by side in one run.

1. search trials per hour with 1 vs 2 Ray worker slots (the same search, max_concurrent 1 then 2);
2. wall time of the six (class x target) trainings, one after another in this process vs all submitted to Ray at
   once, and whether their scores agree (same seed);
3. data-parallel training: steps/s and final loss with 1 vs 2 processes (Lightning DDP, gloo on CPU);
4. per partition the gate's loss of the default NHITS, the searched NHITS and the best baseline on the same
   windows, with the gate's decision against the best baseline (no champion: the bar a challenger must clear).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd


def _job(frame: pd.DataFrame, spec, target: str, close: pd.DataFrame | None) -> dict:
    return {"accelerator": "cpu", "target": target, "close": close, "freq": frame.attrs.get("freq") or spec.freq}


def six_trainings(frames: dict[tuple[str, str], pd.DataFrame], specs: dict[tuple[str, str], Any],
                  closes: dict[str, pd.DataFrame | None]) -> tuple[dict, dict, dict]:
    """Serial in-process vs concurrent on Ray; returns (timing row, serial results, ray results) keyed by partition."""
    from compute.training import train_many
    from models.evaluation import train_and_evaluate

    keys = list(frames)
    start = time.perf_counter()
    serial = {k: train_and_evaluate(frames[k], specs[k], **_job(frames[k], specs[k], k[1], closes.get(k[0])))
              for k in keys}
    serial_s = time.perf_counter() - start
    start = time.perf_counter()
    shipped = train_many([(frames[k], specs[k], _job(frames[k], specs[k], k[1], closes.get(k[0]))) for k in keys])
    ray_s = time.perf_counter() - start
    on_ray = {k: s.result for k, s in zip(keys, shipped, strict=True)}
    diffs = [abs(float(serial[k].evaluation.set_index("model").loc["nhits", "mae"])
                 - float(on_ray[k].evaluation.set_index("model").loc["nhits", "mae"])) for k in keys]
    return ({"partitions": len(keys), "serial_s": serial_s, "ray_s": ray_s, "ratio": ray_s / serial_s,
             "max_abs_mae_diff": max(diffs)}, serial, on_ray)


def search_rate(train: pd.DataFrame, spec, freq: str, *, num_samples: int, max_steps: int, storage: Path,
                slots: tuple[int, ...] = (1, 2)) -> tuple[list[dict], Any]:
    """The same search with ``max_concurrent`` 1, then 2: trials per hour; returns the rows and the last result."""
    from models.search import run_search

    rows, found = [], None
    for n in slots:
        found = run_search(train, spec, freq, num_samples=num_samples, max_steps=max_steps, val_size=2 * spec.h,
                           grace_steps=max(1, max_steps // 4), val_check_steps=max(1, max_steps // 4),
                           max_concurrent=n, time_budget_s=None, storage_path=storage, seed=1,
                           name=f"bench-scale-{n}-slots-{int(time.time())}")
        rows.append({"slots": n, "trials": len(found.trials), "wall_s": found.wall_seconds,
                     "trials_per_hour": 3600 * len(found.trials) / found.wall_seconds,
                     "best_val_mae": found.best_val_loss})
    return rows, found


def gate_row(key: tuple[str, str], default, searched, best_config: dict | None) -> dict:
    """The gate's loss of default and searched NHITS and of the best baseline (same windows), and the decision of
    the searched NHITS against the best baseline (DM test, the gate's alpha)."""
    from models.promotion import GateRule, Windows, best_baseline, decide, scores

    rule = GateRule.for_target(key[1])
    points = default.predictions
    best, best_score = best_baseline(points, rule.metric, default.scale)
    row = {"asset_class": key[0], "target": key[1], "metric": rule.metric, "best_baseline": best,
           "best_baseline_score": best_score,
           "default_nhits": float(scores(points[points.model == "nhits"], rule.metric, default.scale).iloc[0])}
    if searched is not None:
        s_points = searched.predictions
        row["searched_nhits"] = float(scores(s_points[s_points.model == "nhits"], rule.metric, searched.scale).iloc[0])
        spec = searched.spec
        decision = decide("searched", s_points, searched.scale, Windows(h=spec.h, n_windows=spec.n_windows,
                                                                        step=spec.step), rule)
        row.update(decision="promoted" if decision.passed else "refused", p_value=decision.p_value_baseline,
                   reason=decision.reason, best_config=best_config)
    return row


def more_series(bars: pd.DataFrame, spec, *, small: int = 60, asset_class: str = "equities") -> list[dict]:
    """Per target: NHITS on ``small`` series (the default training frame) vs on every series of the class, one
    after the other in this process. Both are scored on the windows they share (the small model's series and
    cutoffs: the gate's loss and MASE, each next to the best baseline on exactly those points); times are
    NHITS's fit and the whole evaluation (every baseline of every series)."""
    from domain.vocabulary import TARGETS
    from models.evaluation import train_and_evaluate
    from models.frames import to_training_frame
    from models.promotion import GateRule, best_baseline, scores

    rows = []
    closes = to_training_frame(bars, asset_class, "close")[["unique_id", "ds", "y"]]
    for target in TARGETS:
        rule, results = GateRule.for_target(target), {}
        for n in (small, None):
            frame = to_training_frame(bars, asset_class, target, max_series=n)
            results[n] = (frame, train_and_evaluate(frame, spec, **_job(frame, spec, target,
                                                                     closes if target == "volatility" else None)))
        keys = ["unique_id", "cutoff", "ds"]
        shared = results[small][1].predictions[keys].drop_duplicates().merge(
            results[None][1].predictions[keys].drop_duplicates(), on=keys)
        scale = results[small][1].scale
        for frame, result in results.values():
            points = result.predictions.merge(shared, on=keys)
            best, best_score = best_baseline(points, rule.metric, scale)
            mine = points[points.model == "nhits"]
            rows.append({"target": target, "series_trained": int(frame.unique_id.nunique()),
                         "rows_trained": int(len(frame)),
                         "scored_series": int(shared.unique_id.nunique()), "scored_points": len(mine),
                         "metric": rule.metric, "nhits": float(scores(mine, rule.metric, scale).iloc[0]),
                         "nhits_mase": float(scores(mine, "mase", scale).iloc[0]), "best_baseline": best,
                         "best_baseline_score": best_score, "train_s": result.train_seconds,
                         "eval_s": result.eval_seconds})
    return rows


def to_markdown(doc: dict) -> str:
    lines = [f"# Scale-out benchmark ({doc['device']}, {doc['machine']['cpus']} CPUs)", "",
             f"Command: `{doc['command']}`; Ray {doc['machine']['ray']}; created {doc['created_at']}.", ""]
    lines += ["## Search trials per hour (same search, 1 vs 2 Ray worker slots)", "",
              pd.DataFrame(doc["search_rate"]).round(3).to_markdown(index=False), ""]
    t = doc.get("six_trainings")
    if t:
        lines += ["## Six trainings: serial in one process vs concurrent on Ray", "",
                  pd.DataFrame([t]).round(3).to_markdown(index=False), "",
                  f"Goal: Ray <= 0.6x serial; measured {t['ratio']:.2f}x "
                  f"({'met' if t['ratio'] <= 0.6 else 'not met'}).", ""]
    if doc.get("ddp"):
        lines += ["## Data-parallel training (Lightning DDP, gloo on CPU)", "",
                  pd.DataFrame(doc["ddp"]).drop(columns=["model_dir"], errors="ignore").round(4)
                  .to_markdown(index=False), "",
                  "`final_train_loss` is rank 0's own loss (half the windows of a step with 2 processes), averaged "
                  "over the last tenth of the steps: noisy; `val_loss` (all series, gathered) is the comparable "
                  "figure.", ""]
    if doc.get("more_series"):
        lines += ["## Equities NHITS on 60 series vs every series (scored on the 60 series' shared windows)", "",
                  pd.DataFrame(doc["more_series"]).round(4).to_markdown(index=False), ""]
    if not doc.get("gate"):
        return "\n".join(lines)
    gate = pd.DataFrame(doc["gate"])
    lines += ["## Default vs searched NHITS vs the best baseline (same windows, the gate's loss)", "",
              gate.drop(columns=["best_config", "reason"], errors="ignore").round(4).to_markdown(index=False), ""]
    wins = int((gate["decision"] == "promoted").sum()) if "decision" in gate else 0
    lines += [f"Searched NHITS passes the gate against the best baseline in **{wins} of {len(gate)}** partitions "
              "(goal: 3 of 6).", ""]
    return "\n".join(lines)
