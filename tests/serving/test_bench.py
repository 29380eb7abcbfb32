"""The serving benchmark's accuracy table: post-training windows only, named for what they are."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def _ramps(n: int = 100) -> pd.DataFrame:
    ds = pd.date_range("2024-01-01", periods=n, freq="5min")
    return pd.concat([pd.DataFrame({"unique_id": f"S{s}", "ds": ds, "y": 1000.0 * (s + 1) + np.arange(n) ** 1.5})
                      for s in range(3)], ignore_index=True)


def test_accuracy_table_uses_only_windows_after_train_end(tmp_path):
    """Every path of the table runs a real graph (a window-mean baseline, torch and ONNX fp32 / INT8); the MAE is
    that of the post-training windows alone, which the result names, and without any such window there is no
    table (the old one pooled windows spread over the training period)."""
    from serving.bench import accuracy
    from serving.export import export_onnx, quantize_int8, torch_forecast
    from serving.graph import BaselineGraph
    from serving.runtime import OnnxForecaster
    from serving.windows import check_windows

    graph = BaselineGraph("window_mean", 4, 10, 2).eval()
    fp32 = export_onnx(graph, tmp_path / "model.onnx")
    int8 = quantize_int8(fp32, tmp_path / "model.int8.onnx")

    def eager(windows):
        return torch_forecast(graph, windows)

    runs = {"torch_eager": eager, "torch_eager_fused": eager, "torchscript_fused": eager,
            "onnx_fp32_1t": OnnxForecaster.from_path(fp32).run, "onnx_int8_1t": OnnxForecaster.from_path(int8).run}
    frame, train_end = _ramps(), pd.Timestamp("2024-01-01 05:00")
    checks = check_windows(frame, 10, 4, train_end=train_end)
    post = checks.post_training_only()
    acc = accuracy(runs, checks)
    assert acc["windows"] == "post_training" and acc["train_end"] == str(train_end)
    assert acc["n_windows"] == acc["post_training_windows"] == len(post) < len(checks)
    want = np.mean(np.abs(post.windows.mean(axis=1, keepdims=True) - post.actuals))  # the window mean's error
    assert acc["mae_torch_eager"] == pytest.approx(want, rel=1e-6)
    pooled = np.mean(np.abs(checks.windows.mean(axis=1, keepdims=True) - checks.actuals))
    assert abs(pooled - want) > 0.1 * want  # the in-sample windows would have given another figure
    assert acc["onnx_fp32_1t"]["max_rel_diff_vs_eager"] <= 1e-5
    assert acc["int8_vs_fp32"]["max_series_deviation"] <= 1e-5  # nothing to quantize in a window mean
    with pytest.raises(ValueError, match="no windows after the version's training end"):
        accuracy(runs, check_windows(frame, 10, 4, train_end=None))
