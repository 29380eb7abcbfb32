"""Run the comparison on one data set: every neural model trains under the same budget on the same training
part and forecasts the same rolling test windows as the naive baselines; then accuracy (MSE, MAE, MASE),
training cost, latency (forward pass and ``NeuralForecast.predict``), throughput and peak memory.

A model that reaches a time cap is reported as capped, with what it did: the steps it trained, the test
windows it was scored on (evenly spaced, with the naive baseline scored on exactly those windows beside it),
or the batch sizes whose latency was not measured.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from models.benchmark.datasets import BenchData
from models.benchmark.measure import (
    PeakMemory,
    Timing,
    forward_batch,
    predict_frame,
    sample_windows,
    step_timer,
    time_calls,
)
from models.benchmark.specs import LATENCY_COLUMNS, RESULT_COLUMNS, Budget
from models.benchmark.zoo import ALIASES, MULTIVARIATE, build_model, count_parameters, samples_for, windows_per_sample
from models.evaluation import Split, baseline_window_predictions, nhits_window_predictions, time_split
from models.metrics import naive_scale, score_predictions


def device_of(accelerator: str) -> str:
    from models.nhits import trainer_settings

    return "cuda" if trainer_settings(accelerator)["accelerator"] == "gpu" else "cpu"


def device_name(device: str) -> str:
    import platform

    if device == "cuda":
        import torch

        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    import os

    return f"CPU {platform.machine()} ({os.cpu_count()} cores)"


def window_keys(split: Split, h: int) -> pd.DataFrame:
    """``unique_id, cutoff, ds, step, y`` of every test window (the next ``h`` rows after each cutoff)."""
    parts = []
    for cutoff in split.cutoffs:
        after = split.full[split.full["ds"] > cutoff]
        nxt = after.groupby("unique_id", sort=True).head(h).copy()
        nxt["step"] = nxt.groupby("unique_id").cumcount() + 1
        parts.append(nxt.assign(cutoff=cutoff))
    return pd.concat(parts, ignore_index=True)[["unique_id", "cutoff", "ds", "step", "y"]]


def run_benchmark(data: BenchData, budget: Budget, models: tuple[str, ...], *, accelerator: str = "auto",
                  log: Callable[[str], Any] = lambda _msg: None,
                  nhits_config: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(results, latency)``: one results row per model (neural and baseline), one latency row per model,
    path and batch size. ``nhits_config``: NHITS trains with this searched config (models.benchmark.search)."""
    spec = data.spec
    device = device_of(accelerator)
    split = time_split(data.frame, h=spec.h, n_windows=spec.n_windows, step_size=spec.step_size)
    val_start = np.sort(split.train["ds"].unique())[-spec.val_size] if spec.val_size else None
    fit_df = split.train if val_start is None else split.train[split.train["ds"] < val_start]
    scale = naive_scale(split.train, seasonality=1)
    keys = window_keys(split, spec.h)
    baselines = baseline_window_predictions(split, keys, spec)
    n_series = int(split.full["unique_id"].nunique())
    context = {"dataset": spec.name, "asset_class": spec.asset_class, "target": spec.target,
               "protocol": spec.protocol, "notes": spec.notes, "h": spec.h, "input_size": spec.input_size,
               "freq": spec.freq,
               "n_series": n_series, "n_windows_protocol": spec.n_windows, "step_size": spec.step_size,
               "train_rows": len(fit_df), "seed": budget.seed, "profile": budget.profile, "device": device,
               "device_name": device_name(device), "max_steps": budget.max_steps, "batch_size": budget.batch_size}
    rows, latency = [], []
    for name in models:
        log(f"{spec.name}: {name} ...")
        row, timings = _run_model(name, data, split, fit_df, keys, baselines, scale, budget, n_series,
                                  accelerator, device, nhits_config if name == "nhits" else None)
        rows.append({**context, **row})
        latency += [{"dataset": spec.name, "model": name, **{k: getattr(t, k) for k in LATENCY_COLUMNS[2:]}}
                    for t in timings]
        log(f"{spec.name}: {name} mase={row['mase']:.4f} train={row['train_seconds']:.1f}s {row['cap_note']}")
    table = score_predictions(baselines, scale)
    naive_mase = float(table.loc[table.model == "naive", "mase"].iloc[0])
    for rec in table.to_dict("records"):
        rows.append({**context, "model": rec["model"], "kind": "baseline", "mse": rec["mse"], "mae": rec["mae"],
                     "mase": rec["mase"], "n_windows": rec["n_windows"], "naive_mase_same_windows": naive_mase,
                     "capped": False, "cap_note": "", "params": 0, "steps_done": 0, "train_seconds": 0.0})
    return pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS), pd.DataFrame(latency, columns=LATENCY_COLUMNS)


def _run_model(name: str, data: BenchData, split: Split, fit_df: pd.DataFrame, keys: pd.DataFrame,
               baselines: pd.DataFrame, scale: pd.Series, budget: Budget, n_series: int, accelerator: str,
               device: str, config: dict | None = None) -> tuple[dict, list[Timing]]:
    from neuralforecast import NeuralForecast

    from models.nhits import lightning_quiet

    spec = data.spec
    timer = step_timer()
    model = build_model(name, spec, budget, n_series=n_series, accelerator=accelerator, callbacks=[timer],
                        nhits_config=config)
    nf = NeuralForecast(models=[model], freq=spec.freq)
    notes = []
    with PeakMemory(device) as peak:
        start = time.perf_counter()
        with lightning_quiet():
            nf.fit(df=fit_df[["unique_id", "ds", "y"]], val_size=0)
        train_seconds = time.perf_counter() - start
        steps = len(timer.seconds)
        if steps < budget.max_steps:
            notes.append(f"training capped at {budget.train_cap_s:g} s: {steps} of {budget.max_steps} steps"
                         if budget.train_cap_s is not None else f"training stopped at {steps} of {budget.max_steps}"
                         " steps (no time cap)")
        timings = measure_latency(nf, name, split.full, nf.models[0].input_size, budget, n_series, device)
        unmeasured = [f"{t.path} b{t.batch}" for t in timings if t.skipped.startswith("capped")]
        if unmeasured:
            notes.append(f"latency cap {budget.latency_cap_s:.0f} s: {', '.join(unmeasured)} not measured")
        per_window = _seconds_per_window(timings)
        eval_split, eval_spec, note = _eval_windows(split, spec, per_window, n_series, budget.eval_cap_s)
        notes += [note] if note else []
        start = time.perf_counter()
        preds = nhits_window_predictions(nf, eval_split, eval_spec, alias=ALIASES[name], model=name)
        eval_seconds = time.perf_counter() - start
    score = score_predictions(preds, scale).iloc[0]
    same = baselines[baselines["model"] == "naive"]
    same = same[same["cutoff"].isin(eval_split.cutoffs)]
    forward = [t for t in timings if t.path == "forward" and t.windows_per_s]
    return {
        "model": name, "kind": "neural", "params": count_parameters(nf.models[0]), "steps_done": steps,
        "train_seconds": train_seconds, "seconds_per_step": float(np.median(timer.seconds)) if steps else None,
        "eval_seconds": eval_seconds, "mse": score["mse"], "mae": score["mae"], "mase": score["mase"],
        "n_windows": int(score["n_windows"]),
        "naive_mase_same_windows": float(score_predictions(same, scale).iloc[0]["mase"]),
        "capped": bool(notes), "cap_note": "; ".join(notes),
        "peak_memory_mb": peak.mb, "peak_rss_mb": peak.absolute_mb, "memory_kind": peak.kind,
        "throughput_wps": max((t.windows_per_s for t in forward), default=None),
    }, timings


def _seconds_per_window(timings: list[Timing]) -> float:
    measured = [t for t in timings if t.path == "forward" and t.windows_per_s]
    if not measured:
        return float("inf")
    return 1.0 / max(measured, key=lambda t: t.batch).windows_per_s  # windows_per_s counts series windows


def _eval_windows(split: Split, spec: Any, per_window_s: float, n_series: int,
                  cap_s: float | None) -> tuple[Split, Any, str]:
    """The test windows scored within ``cap_s``: all (always when ``cap_s`` is None), or every k-th cutoff
    counted back from the last one."""
    n = len(split.cutoffs)
    if cap_s is None or per_window_s * n * n_series <= cap_s:
        return split, spec, ""
    m = max(1, min(n, int(cap_s / max(per_window_s * n_series, 1e-9))))
    k = max(1, (n - 1) // max(1, m - 1)) if m > 1 else n
    m = (n - 1) // k + 1
    cutoffs = split.cutoffs[(n - 1) - k * (m - 1)::k]
    note = (f"evaluation capped at {cap_s:g} s: scored {m} of {n} windows (every {k}th); "
            f"naive on the same windows beside it")
    return (dataclasses.replace(split, cutoffs=tuple(cutoffs)),
            spec.replace(n_windows=m, step_size=spec.step_size * k), note)


def measure_latency(nf: Any, name: str, full: pd.DataFrame, input_size: int, budget: Budget, n_series: int,
                    device: str) -> list[Timing]:
    """Forward-pass and ``NeuralForecast.predict`` latency at every batch size (half the cap each). A forward batch
    of ``b`` is ``b`` series windows for every model: a multivariate one gets ``max(1, b // n_series)`` samples."""
    import torch

    from models.nhits import lightning_quiet

    model = nf.models[0]
    multivariate = name in MULTIVARIATE
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rng = np.random.default_rng(budget.seed)
    model.eval()
    model.to(device)

    def forward_call(batch: int) -> Callable[[], Any]:
        wb = forward_batch(model, sample_windows(full, samples_for(name, batch, n_series), input_size,
                                                 multivariate=multivariate, rng=rng),
                           multivariate=multivariate, device=device)

        def call() -> Any:
            with torch.inference_mode():
                return model(wb)
        return call

    def predict_call(batch: int) -> Callable[[], Any]:
        df = full.groupby("unique_id").tail(input_size) if multivariate else predict_frame(full, batch, input_size)

        def call() -> Any:
            with lightning_quiet():
                return nf.predict(df=df)
        return call

    def multivariate_predict(batch: int) -> str:
        return (f"multivariate: one predict call forecasts all {n_series} series (measured at batch 1)"
                if multivariate and batch != budget.batches[0] else "")

    half = budget.latency_cap_s / 2
    return [*_sweep("forward", forward_call, budget.batches, half, budget.latency_repeats, budget.latency_warmup, sync,
                    windows=lambda b: samples_for(name, b, n_series) * windows_per_sample(name, n_series)),
            *_sweep("predict", predict_call, budget.batches, half, budget.predict_repeats, 1, sync,
                    windows=lambda b: n_series if multivariate else b, not_measured=multivariate_predict)]


def _sweep(path: str, make_call: Callable[[int], Callable[[], Any]], batches: tuple[int, ...], cap_s: float,
           repeats: int, warmup: int, sync: Callable[[], None], *, windows: Callable[[int], int],
           not_measured: Callable[[int], str] = lambda _b: "") -> list[Timing]:
    """Time ``make_call(batch)`` for each batch size within ``cap_s``; larger batches are estimated from the last
    measured one and skipped (reported as capped) when they would not fit."""
    deadline, last, out = time.perf_counter() + cap_s, None, []
    for batch in batches:
        why = not_measured(batch)
        if why:
            out.append(Timing(path, batch, skipped=why))
            continue
        t = time_calls(make_call(batch), path=path, batch=batch, repeats=repeats, warmup=warmup, deadline=deadline,
                       sync=sync, estimate_s=_estimate(last, windows(batch)), windows=windows(batch))
        last = t if t.p50_ms else last
        out.append(t)
    return out


def _estimate(last: Timing | None, windows: int) -> float:
    """Seconds one call on ``windows`` series windows should take, scaled linearly from the last measured call."""
    return 0.0 if last is None or not last.windows_per_s else windows / last.windows_per_s


def run_many(datasets: list[BenchData], budget: Budget, models: tuple[str, ...], *, accelerator: str = "auto",
             log: Callable[[str], Any] = lambda _msg: None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`run_benchmark` over several data sets, concatenated."""
    parts = [run_benchmark(d, budget, models, accelerator=accelerator, log=log) for d in datasets]
    return (pd.concat([p[0] for p in parts], ignore_index=True),
            pd.concat([p[1] for p in parts], ignore_index=True))
