"""Benchmark results as a JSON document (stable schema), a markdown report and two plots.

The inputs are the two frames :func:`models.benchmark.runner.run_benchmark` returns (concatenated over data
sets), so the asset (from DuckDB) and the CLI (from a run) write the same report.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pandas as pd

SCHEMA = "tradecast.benchmark/1"
DATASET_KEYS = ("dataset", "asset_class", "target", "protocol", "notes", "h", "input_size", "freq", "n_series",
                "n_windows_protocol", "step_size", "train_rows")
MODEL_KEYS = ("model", "kind", "mse", "mae", "mase", "n_windows", "naive_mase_same_windows", "params", "steps_done",
              "train_seconds", "seconds_per_step", "windows_per_step", "eval_seconds", "throughput_wps",
              "peak_memory_mb", "peak_rss_mb", "memory_kind", "capped", "cap_note")
# ratio name -> the column divided by NHITS's; the step and forward costs are per series window (iTransformer's
# sample holds a window of every series: a step or forward call of k samples is k x n_series windows)
RATIOS = {"params": "params", "train_seconds": "train_seconds", "seconds_per_step": "s_per_train_window",
          "forward_ms_b1": "fwd_b1_per_window", "forward_ms_b256": "fwd_b256_per_window",
          "peak_memory_mb": "peak_memory_mb"}


def _clean(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if value is pd.NA or value is None:
        return None
    return value


def ordered(results: pd.DataFrame) -> pd.DataFrame:
    """Data sets in their first-seen order, the neural models (in :data:`domain.vocabulary.BENCHMARK_MODELS` order)
    before the baselines."""
    from domain.vocabulary import BASELINES, BENCHMARK_MODELS

    rank = {m: i for i, m in enumerate((*BENCHMARK_MODELS, *BASELINES))}
    first = {d: i for i, d in enumerate(dict.fromkeys(results["dataset"]))}
    keys = results["dataset"].map(first) * 100 + results["model"].map(lambda m: rank.get(m, 99))
    return results.iloc[keys.argsort(kind="stable")].reset_index(drop=True)


def with_costs(results: pd.DataFrame, latency: pd.DataFrame) -> pd.DataFrame:
    """``results`` plus forward/predict p50 at batch 1 and 256, the per-window costs (forward ms per series
    window, training seconds per step per window trained) and each cost's ratio to NHITS's (same data set)."""
    from models.benchmark.zoo import samples_for, windows_per_sample

    out = ordered(results)
    keys = out.set_index(["dataset", "model"]).index
    for path, batch in (("forward", 1), ("forward", 256), ("predict", 1)):
        sel = latency[(latency["path"] == path) & (latency["batch"] == batch)].set_index(["dataset", "model"])
        col = f"{'fwd' if path == 'forward' else 'predict'}_b{batch}"
        out[col] = keys.map(sel["p50_ms"])
        if path == "forward":  # windows_per_s counts series windows (b x n_series for a multivariate model)
            out[f"{col}_per_window"] = 1e3 / keys.map(sel["windows_per_s"]).astype(float)
    out["windows_per_step"] = [samples_for(m, int(b), int(n)) * windows_per_sample(m, int(n))
                               if k == "neural" else np.nan
                               for m, b, n, k in zip(out["model"], out["batch_size"], out["n_series"], out["kind"],
                                                     strict=True)]
    out["s_per_train_window"] = out["seconds_per_step"].astype(float) / out["windows_per_step"].astype(float)
    for name, col in RATIOS.items():
        nhits = out[out["model"] == "nhits"].set_index("dataset")[col]
        out[f"x_{name}"] = out[col].astype(float) / out["dataset"].map(nhits).astype(float)
        out.loc[out["kind"] != "neural", f"x_{name}"] = np.nan
    return out


def to_document(results: pd.DataFrame, latency: pd.DataFrame, *, name: str, created_at: str,
                budget: dict[str, Any]) -> dict[str, Any]:
    """The JSON document (``schema = tradecast.benchmark/1``)."""
    costs = with_costs(results, latency)
    first = results.iloc[0]
    datasets = []
    for dataset, part in costs.groupby("dataset", sort=False):
        models = []
        for rec in part.to_dict("records"):
            lat = latency[(latency["dataset"] == dataset) & (latency["model"] == rec["model"])]
            models.append({
                **{k: _clean(rec.get(k)) for k in MODEL_KEYS},
                "ratio_to_nhits": {k: _clean(rec.get(f"x_{k}")) for k in RATIOS},
                "latency": {path: {str(int(r["batch"])): {k: _clean(r[k]) for k in
                                                          ("p50_ms", "p95_ms", "repeats", "windows_per_s", "skipped")}
                                   for r in lat[lat["path"] == path].to_dict("records")}
                            for path in ("forward", "predict")},
            })
        datasets.append({**{k: _clean(part.iloc[0][k]) for k in DATASET_KEYS}, "models": models})
    return {"schema": SCHEMA, "name": name, "created_at": created_at, "profile": str(first["profile"]),
            "seed": int(first["seed"]), "device": str(first["device"]), "device_name": str(first["device_name"]),
            "budget": {k: _clean(v) if not isinstance(v, (list, tuple)) else list(v) for k, v in budget.items()},
            "datasets": datasets}


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def to_markdown(results: pd.DataFrame, latency: pd.DataFrame, *, title: str = "Benchmark") -> str:
    """One accuracy-and-cost table per data set (ratios to NHITS), then the latency table."""
    costs = with_costs(results, latency)
    first = results.iloc[0]
    lines = [f"# {title}", "",
             (f"Profile `{first['profile']}`, seed {first['seed']}, device {first['device_name']}; same steps "
             f"({first['max_steps']}), windows per step ({first['batch_size']}; iTransformer, whose sample holds a "
             "window of every series, the nearest whole number of samples: `win/step`) and test windows for every "
             "neural model. MASE < 1 beats the in-sample naive forecast; `naive (same windows)` is the last value "
             "scored on exactly the windows of that row. `×NHITS` = cost divided by NHITS's cost on the same data "
             "set, per series window for s/step and the forward pass. "
             "`peak MB`: on CPU the rise of the process RSS while the model trained, predicted and was timed "
             "(freed memory is returned to the OS before each model); on a GPU `torch.cuda.max_memory_allocated`."),
             ""]
    for dataset, part in costs.groupby("dataset", sort=False):
        row0 = part.iloc[0]
        lines += [f"## {dataset}", "",
                  f"{row0['protocol']}, h={row0['h']}, input={row0['input_size']}, freq={row0['freq']}, "
                  f"{row0['n_series']} series, {int(part['n_windows'].max())} test windows "
                  f"(step {row0['step_size']}), {row0['train_rows']:,} training rows."
                  + (f" {row0['notes']}." if row0.get("notes") else ""), ""]
        header = ["model", "MSE", "MAE", "MASE", "naive MASE (same windows)", "params", "steps", "win/step",
                  "train s", "s/step", "train ×NHITS", "fwd b1 ms", "fwd b256 ms", "predict b1 ms", "windows/s",
                  "peak MB (+RSS)", "note"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in part.to_dict("records"):
            neural = r["kind"] == "neural"
            cells = [r["model"], _fmt(r["mse"]), _fmt(r["mae"]), _fmt(r["mase"]), _fmt(r["naive_mase_same_windows"]),
                     _fmt(int(r["params"])) if neural else "–", f"{int(r['steps_done'])}" if neural else "–",
                     f"{int(r['windows_per_step'])}" if neural else "–",
                     _fmt(r["train_seconds"], 3) if neural else "–", _fmt(r.get("seconds_per_step"), 3),
                     _fmt(r.get("x_train_seconds"), 3), _fmt(r.get("fwd_b1"), 3), _fmt(r.get("fwd_b256"), 3),
                     _fmt(r.get("predict_b1"), 3), _fmt(r.get("throughput_wps"), 3), _fmt(r.get("peak_memory_mb"), 4),
                     str(r.get("cap_note") or "")]
            lines.append("| " + " | ".join(cells) + " |")
        neural = part[part["kind"] == "neural"]
        lines += ["", ("Cost relative to NHITS (×; training seconds of a capped model are a lower bound; s/step and "
                  "forward per series window):"), "",
                  ("| model | params | train s | s/step per window | fwd b1 per window | fwd b256 per window | "
                  "peak memory |"), "|---|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join([r["model"], *(_fmt(r.get(f"x_{k}"), 3) for k in RATIOS)]) + " |"
                  for r in neural.to_dict("records")]
        lines.append("")
    lat = latency.copy()
    lat["cell"] = [f"{_fmt(a, 3)} / {_fmt(b, 3)}" if s == "" else "capped" if s.startswith("capped") else "n/a"
                   for a, b, s in zip(lat["p50_ms"], lat["p95_ms"], lat["skipped"].fillna(""), strict=True)]
    pivot = lat.pivot_table(index=["dataset", "model", "path"], columns="batch", values="cell", aggfunc="first",
                            sort=False)
    lines += ["## Latency (ms, median / p95 over repeated calls after warm-up)", "",
              ("`forward` is the model's forward pass on a batch of windows (no scaling); `predict` is "
              "`NeuralForecast.predict` on that many series (a Lightning trainer per call). A forward batch b is b "
              "series windows for every model: iTransformer, whose sample holds a window of every series, runs "
              "max(1, b // n_series) samples. `capped`: not measured within the latency budget."), "",
              pivot.reset_index().rename(columns=lambda c: f"b{c}" if isinstance(c, (int, np.integer)) else c)
              .to_markdown(index=False), ""]
    return "\n".join(lines)


def cap_warnings(results: pd.DataFrame, budget: Any = None) -> list[str]:
    """One ``WARNING:`` line per neural model whose requested steps a time cap cut short, or whose test windows
    the evaluation cap thinned (``budget``: the run's :class:`~models.benchmark.specs.Budget`, for the cap values;
    without it the lines quote the row's cap note)."""
    out = []
    for r in ordered(results).to_dict("records"):
        if r["kind"] != "neural":
            continue
        where = f"{r['model']} on {r['dataset']}"
        if int(r["steps_done"]) < int(r["max_steps"]):
            cap = getattr(budget, "train_cap_s", None)
            why = f"stopped by --train-cap {cap:g} s" if cap is not None else "stopped by the training time cap"
            out.append(f"WARNING: {where} trained {int(r['steps_done'])} of {int(r['max_steps'])} requested steps: "
                       f"{why}; rerun with a larger --train-cap or --no-caps")
        thinned = next((n for n in str(r.get("cap_note") or "").split("; ") if n.startswith("evaluation capped")), "")
        if thinned:
            out.append(f"WARNING: {where}: {thinned.split(' (every')[0]}; rerun with a larger --eval-cap or --no-caps")
    return out


def plot_benchmark(results: pd.DataFrame, latency: pd.DataFrame) -> bytes:
    """PNG: MASE vs training seconds per data set (log x), and forward latency by batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    neural = results[results["kind"] == "neural"]
    markers = dict(zip(neural["dataset"].unique(), "osD^vP*X", strict=False))
    for model, part in neural.groupby("model", sort=False):
        for dataset, row in part.set_index("dataset").iterrows():
            left.scatter(max(row["train_seconds"], 1e-3), row["mase"] / row["naive_mase_same_windows"],
                         marker=markers.get(dataset, "o"), label=model if dataset == part["dataset"].iloc[0] else None,
                         color=f"C{list(neural['model'].unique()).index(model)}")
    left.axhline(1.0, color="grey", ls="--", lw=1)
    left.set(xscale="log", xlabel="training seconds (log)", ylabel="MASE / naive MASE (< 1 beats the last value)",
             title="accuracy vs training cost (marker = data set)")
    left.legend(fontsize=8)
    fwd = latency[(latency["path"] == "forward") & latency["p50_ms"].notna()]
    for (model), part in fwd.groupby("model", sort=False):
        agg = part.groupby("batch")["p50_ms"].median()
        right.plot(agg.index, agg.values, marker="o", label=model)
    right.set(xscale="log", yscale="log", xlabel="batch (windows)", ylabel="forward p50 ms (median over data sets)",
              title="latency by batch size")
    right.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
