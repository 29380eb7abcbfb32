"""Cost measurements: seconds per training step, peak memory, and latency of the forward pass and of
``NeuralForecast.predict`` at several batch sizes (median and p95 after warm-up, under a time cap).

Peak memory on CPU is the *increase* of the process RSS over its value when the model started, sampled
every 5 ms by a thread (psutil) while the model trains, predicts and is timed; before each model the memory
freed by the previous one is handed back to the OS (``gc.collect`` and glibc ``malloc_trim``), so models run
one after another in one process are measured alike. A spike shorter than 5 ms can be missed. The absolute
RSS peak is kept beside it. On a GPU it is ``torch.cuda.max_memory_allocated``. Latency on a GPU synchronises
the device before reading the clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


def step_timer() -> Any:
    """Lightning callback recording the wall time of every optimizer step (``.seconds``)."""
    import pytorch_lightning as pl

    class _StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._start = 0.0

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            self._start = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self.seconds.append(time.perf_counter() - self._start)

        def __deepcopy__(self, memo: dict) -> _StepTimer:  # neuralforecast deep-copies hparams
            memo[id(self)] = self
            return self

    return _StepTimer()


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.mb`` (and ``peak.kind``)."""

    def __init__(self, device: str = "cpu", interval_s: float = 0.005) -> None:
        self.device, self.interval_s = device, interval_s
        self.kind = "cuda_max_allocated" if device == "cuda" else "rss_increase"
        self.mb = float("nan")  # the figure compared between models
        self.absolute_mb = float("nan")  # process RSS peak (CPU) / the same as mb (GPU)
        self.baseline_mb = float("nan")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline_mb = torch.cuda.memory_allocated() / 2**20
            return self
        import gc

        import psutil

        gc.collect()
        _release_freed_memory()
        proc = psutil.Process()
        self._peak = proc.memory_info().rss
        self.baseline_mb = self._peak / 2**20

        def sample() -> None:
            while not self._stop.wait(self.interval_s):
                self._peak = max(self._peak, proc.memory_info().rss)

        self._thread = threading.Thread(target=sample, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            self.mb = self.absolute_mb = torch.cuda.max_memory_allocated() / 2**20
            return
        import psutil

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.absolute_mb = max(self._peak, psutil.Process().memory_info().rss) / 2**20
        self.mb = self.absolute_mb - self.baseline_mb


def _release_freed_memory() -> None:
    """Give freed heap pages back to the OS (glibc only; elsewhere a no-op)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:
        return


@dataclass
class Timing:
    """Latency of one (path, batch): milliseconds per call, or why it was not measured."""

    path: str  # 'forward' or 'predict'
    batch: int  # series windows asked per call (a multivariate model: max(1, batch // n_series) samples of all series)
    p50_ms: float | None = None
    p95_ms: float | None = None
    repeats: int = 0
    windows_per_s: float | None = None
    skipped: str = ""  # why no figure (the time cap), empty when measured


def time_calls(call: Callable[[], Any], *, path: str, batch: int, repeats: int, warmup: int, deadline: float,
               windows: int, sync: Callable[[], None] = lambda: None, estimate_s: float = 0.0) -> Timing:
    """Warm up, then time ``repeats`` calls of ``call``; stop early at ``deadline`` (``time.perf_counter``).

    ``estimate_s`` is the predicted cost of one call: when warm-up plus one timed call would pass the deadline
    the batch size is skipped and reported as capped, never silently left out.
    """
    if time.perf_counter() + estimate_s * (warmup + 1) > deadline:
        return Timing(path, batch, skipped=f"capped: ~{estimate_s:.2f} s per call exceeds the latency budget")
    for _ in range(warmup):
        call()
        sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        sync()
        samples.append((time.perf_counter() - start) * 1e3)
        if time.perf_counter() > deadline:
            break
    arr = np.asarray(samples)
    p50 = float(np.median(arr))
    return Timing(path, batch, p50_ms=p50, p95_ms=float(np.percentile(arr, 95)), repeats=len(samples),
                  windows_per_s=windows / (p50 / 1e3) if p50 > 0 else None)


def forward_batch(model: Any, windows: np.ndarray, *, multivariate: bool, device: str) -> dict:
    """The ``windows_batch`` dict a neuralforecast model's ``forward`` takes, from ``windows`` (B, L[, N])."""
    import torch

    x = torch.as_tensor(windows, dtype=torch.float32, device=device)
    x = x if multivariate else x.reshape(x.shape[0], x.shape[1], 1)
    return {"insample_y": x, "insample_mask": torch.ones_like(x), "futr_exog": None, "hist_exog": None,
            "stat_exog": None}


def predict_frame(history: pd.DataFrame, batch: int, input_size: int) -> pd.DataFrame:
    """``batch`` series of ``input_size`` real observations each (re-labelled windows of ``history``), the
    input of one ``NeuralForecast.predict`` call forecasting ``batch`` windows."""
    series = [part[["ds", "y"]] for _, part in history.groupby("unique_id", sort=False)]
    parts = []
    for i in range(batch):
        one = series[i % len(series)]
        end = len(one) - (i // len(series))  # the k-th pass over the series ends k steps earlier
        parts.append(one.iloc[max(0, end - input_size):end].assign(unique_id=f"w{i:04d}"))
    return pd.concat(parts, ignore_index=True)[["unique_id", "ds", "y"]]


def sample_windows(frame: pd.DataFrame, batch: int, input_size: int, *, multivariate: bool,
                   rng: np.random.Generator) -> np.ndarray:
    """``batch`` random real input windows of ``frame`` (B, L) or, multivariate, (B, L, n_series)."""
    wide = frame.pivot(index="ds", columns="unique_id", values="y").dropna()
    values = wide.to_numpy(dtype=np.float32)
    starts = rng.integers(0, max(1, len(values) - input_size), size=batch)
    stacked = np.stack([values[s:s + input_size] for s in starts])  # (B, L, N)
    if multivariate:
        return stacked
    if stacked.shape[2] == 1:
        return stacked[:, :, 0]
    column = rng.integers(0, stacked.shape[2], size=batch)  # one series per window
    return stacked[np.arange(batch), :, column]
