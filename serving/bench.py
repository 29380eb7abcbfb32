"""The serving benchmark's measurements: every inference path of one fitted NHITS side by side, in one process.

Paths, all on the same real windows: ``NeuralForecast.predict`` (what the training code calls; builds a
Lightning trainer per call), torch eager (the unfused serving graph: neuralforecast's computation with its
scaler), torch eager fused, TorchScript (fused, traced and frozen), ONNX Runtime fp32 and dynamic INT8 (fused),
each at batch 1, 16, 64, 256: p50 / p99 latency and windows per second. The HTTP and replay parts live in
``pipelines/cli/serve.py`` (they start the service) and :mod:`serving.loadtest`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BATCHES = (1, 16, 64, 256)
LATENCY_TARGETS = {  # hft config, 2 cores (issue 7)
    "best_b1_p50_ms": 0.15, "onnx_fp32_b1_p50_ms": 0.3, "speedup_vs_predict_b1": 100.0, "best_b256_p50_ms": 4.0,
    "http_p99_ms": 10.0, "int8_mae_change": 0.01,  # on post-training windows only
}


def timed(call: Callable[[], Any], *, budget_s: float = 1.5, max_calls: int = 3000, warmup: int = 20) -> dict:
    """p50 / p99 (ms) of ``call`` after warm-up, within ``budget_s`` seconds (at least 5 calls)."""
    for _ in range(warmup):
        call()
    samples, deadline = [], time.perf_counter() + budget_s
    while len(samples) < max_calls and (time.perf_counter() < deadline or len(samples) < 5):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1e3)
    arr = np.asarray(samples)
    return {"p50_ms": float(np.median(arr)), "p99_ms": float(np.percentile(arr, 99)), "calls": len(arr)}


def paths(nf: Any, folder: Path, frame: Any, *, threads: tuple[int, ...] = (1, 2)) -> dict[str, Callable]:
    """``{path name: run(windows)}`` for every inference path of the fitted ``nf`` (ONNX files from ``folder``)."""
    import torch

    from serving.export import export_onnx, quantize_int8, torchscript
    from serving.graph import from_nhits
    from serving.runtime import OnnxForecaster

    model = nf.models[0]
    plain, fused = from_nhits(model, fuse=False), from_nhits(model, fuse=True)
    scripted = torchscript(fused)
    fp32 = export_onnx(fused, folder / "model.onnx")
    int8 = quantize_int8(fp32, folder / "model.int8.onnx")

    def eager(module: Any) -> Callable:
        def run(windows: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(windows)).numpy()
        return run

    def predict(windows: np.ndarray) -> Any:
        from models.benchmark.measure import predict_frame
        from models.forecasting import forecast

        # NeuralForecast.predict takes a frame: as many real series windows as the batch holds
        return forecast(nf, predict_frame(frame, len(windows), model.input_size))

    out: dict[str, Callable] = {"neuralforecast_predict": predict, "torch_eager": eager(plain),
                                "torch_eager_fused": eager(fused), "torchscript_fused": eager(scripted)}
    for n in threads:
        out[f"onnx_fp32_{n}t"] = OnnxForecaster.from_path(fp32, threads=n).run
        out[f"onnx_int8_{n}t"] = OnnxForecaster.from_path(int8, threads=n).run
    return out


def latency_table(runs: dict[str, Callable], windows: np.ndarray, *, batches: tuple[int, ...] = BATCHES,
                  budget_s: float = 1.5, echo: Callable[[str], None] = print) -> list[dict]:
    """One row per (path, batch): p50, p99, windows/s; ``NeuralForecast.predict`` stops after batch 64."""
    rows = []
    for batch in batches:
        sample = np.ascontiguousarray(windows[np.arange(batch) % len(windows)], dtype=np.float32)
        for path, run in runs.items():
            if path == "neuralforecast_predict" and batch > 64:
                rows.append({"path": path, "batch": batch, "p50_ms": None, "p99_ms": None, "windows_per_s": None,
                             "note": "not timed at this batch (several seconds per call)"})
                continue
            stats = timed(lambda run=run, sample=sample: run(sample),
                          budget_s=budget_s if path != "neuralforecast_predict" else 4.0,
                          max_calls=3000 if path != "neuralforecast_predict" else 40,
                          warmup=20 if path != "neuralforecast_predict" else 2)
            rows.append({"path": path, "batch": batch, **stats,
                         "windows_per_s": batch / (stats["p50_ms"] / 1e3), "note": ""})
            echo(f"  {path:24s} B={batch:<4d} p50 {stats['p50_ms']:8.3f} ms  p99 {stats['p99_ms']:8.3f} ms")
    return rows


def accuracy(runs: dict[str, Callable], checks: Any) -> dict[str, Any]:
    """MAE of each fast path against the actual values, and the change vs torch eager, on the **post-training**
    windows of ``checks`` (:class:`serving.windows.CheckWindows`) only: every forecast step after the version's
    training end. Also each path's per-series difference from torch eager and the export's INT8 gate measure
    (:data:`serving.export.INT8_RULE`). Raises when there is no post-training window."""
    from serving.export import INT8_RULE, by_series, int8_gate, worst

    post = checks.post_training_only()
    if not len(post):
        raise ValueError(f"no windows after the version's training end ({checks.train_end}): no accuracy figure "
                         "can be honest on training windows")
    windows, actuals = post.windows, post.actuals
    ref_full = runs["torch_eager"](windows)
    ref = ref_full[..., 0]
    base = float(np.mean(np.abs(ref - actuals)))
    out = {"windows": "post_training", **post.describe(), "n_windows": len(windows), "mae_torch_eager": base}
    for path in ("torch_eager_fused", "torchscript_fused", "onnx_fp32_1t", "onnx_int8_1t"):
        full = runs[path](windows)
        got = full[..., 0]
        out[path] = {"mae": float(np.mean(np.abs(got - actuals))),
                     "mae_change": float(np.mean(np.abs(got - actuals)) / base - 1.0),
                     "max_rel_diff_vs_eager": worst(by_series(full, ref_full, post.series))[0]}
    _, largest, name, _ = int8_gate(runs["onnx_int8_1t"](windows), runs["onnx_fp32_1t"](windows), post.series, 1.0)
    out["int8_vs_fp32"] = {"rule": INT8_RULE, "max_series_deviation": largest, "series": name}
    return out


def check_targets(rows: list[dict], acc: dict, http: dict | None) -> list[dict]:
    """Each issue target: measured, target, met, and by how much it was missed (ratio > 1 = slower)."""
    def p50(path: str, batch: int) -> float:
        return next(r["p50_ms"] for r in rows if r["path"] == path and r["batch"] == batch)

    fast = [p for p in {r["path"] for r in rows} if p.startswith(("onnx", "torchscript"))]
    best1 = min(fast, key=lambda p: p50(p, 1))
    best256 = min(fast, key=lambda p: p50(p, 256))
    fp32_1 = min(p50(p, 1) for p in fast if p.startswith("onnx_fp32"))
    measured = {
        "best_b1_p50_ms": (p50(best1, 1), best1),
        "onnx_fp32_b1_p50_ms": (fp32_1, "onnx_fp32"),
        "speedup_vs_predict_b1": (p50("neuralforecast_predict", 1) / p50(best1, 1), best1),
        "best_b256_p50_ms": (p50(best256, 256), best256),
        "int8_mae_change": (abs(acc["onnx_int8_1t"]["mae_change"]), "onnx_int8"),
    }
    if http:
        measured["http_p99_ms"] = (http["p99_ms"], "GET /forecast under load")
    out = []
    for key, (value, where) in measured.items():
        target = LATENCY_TARGETS[key]
        higher_better = key.startswith("speedup")
        met = value >= target if higher_better else value <= target
        miss = None if met else (target / value if higher_better else value / target)
        out.append({"target": key, "limit": target, "measured": value, "path": where, "met": met,
                    "missed_by_x": miss})
    return out


def event_latency(post: Callable[[float, str, str | None, float | None], Any], start_ts: float, *,
                  n: int = 300, symbol: str = "BTCUSDT") -> dict[str, Any]:
    """Headline -> updated forecast latency: ``n`` headlines through ``post(ts, headline, symbol, sentiment)``,
    alternating one symbol's and market-wide ones, a second apart; the sentiment scored by VADER on every 3rd."""
    rows: dict[str, list[float]] = {"symbol": [], "market": []}
    for i in range(n):
        kind = "symbol" if i % 2 == 0 else "market"
        sentiment = None if i % 3 == 0 else float(np.sin(i))
        started = time.perf_counter()
        post(start_ts + i, f"headline {i}: shares rally" if i % 2 else f"headline {i}: selloff", symbol
             if kind == "symbol" else None, sentiment)
        rows[kind].append((time.perf_counter() - started) * 1e3)
    return {kind: {"n": len(v), "p50_ms": float(np.median(v)), "p99_ms": float(np.percentile(v, 99))}
            for kind, v in rows.items()}
