"""The windows an export is checked on, from a long ``unique_id, ds, y`` frame: each window's inputs, what
followed it, its series, its first forecast timestamp, and whether it lies after the version's training period.

- **Post-training** windows forecast only timestamps after ``train_end`` (the last timestamp the version was
  fitted on, ``model_evaluations.train_end``): their forecast origin (the last input) is ``train_end`` or later,
  the rule of the test windows the version was scored on. Accuracy checks (the INT8 gate, the serving
  benchmark's accuracy table) use these only.
- **In-sample** windows are spread over the whole frame, the training period included. They serve the ONNX =
  torch equality check, a numerical test, and are never used for an accuracy figure.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

INPUT, OUTPUT = "windows", "forecast"  # the ONNX graph's input and output names
HIST, FUTR = "hist_exog", "futr_exog"  # its exogenous inputs (event-aware models)


@dataclass(frozen=True)
class CheckWindows:
    """Windows with their actuals, series, first forecast timestamps, post-training flags and exogenous inputs."""

    windows: np.ndarray  # (N, input_size) float32
    actuals: np.ndarray  # (N, h): what followed each window
    series: np.ndarray  # (N,) unique_id of each window
    first_target: np.ndarray  # (N,) datetime64: the first timestamp each window forecasts
    post_training: np.ndarray  # (N,) bool: every forecast step is after train_end
    exog: dict[str, np.ndarray | None]  # hist_exog (N, input_size, n), futr_exog (N, input_size + h, n) or None
    train_end: Any = None  # pd.Timestamp, None when the version has no recorded training end

    def __len__(self) -> int:
        return len(self.windows)

    def select(self, mask: np.ndarray) -> CheckWindows:
        return dataclasses.replace(
            self, windows=self.windows[mask], actuals=self.actuals[mask], series=self.series[mask],
            first_target=self.first_target[mask], post_training=self.post_training[mask],
            exog={k: None if v is None else v[mask] for k, v in self.exog.items()})

    def post_training_only(self) -> CheckWindows:
        return self.select(self.post_training)

    def describe(self) -> dict[str, Any]:
        """Counts and bounds, named for what they are (for ``export.json``, asset metadata and result files)."""
        import pandas as pd

        post = self.first_target[self.post_training]
        return {"train_end": None if self.train_end is None else str(self.train_end),
                "post_training_windows": int(self.post_training.sum()),
                "in_sample_windows": int((~self.post_training).sum()),
                "post_training_first_target": str(pd.Timestamp(post.min())) if len(post) else None,
                "post_training_series": len(np.unique(self.series[self.post_training]))}


def _window_ends(frame: Any, input_size: int, h: int, max_windows: int, after: Any) -> list[tuple[Any, int]]:
    """``(series rows, end)`` of windows (inputs ``[end - input_size, end)``, actuals ``[end, end + h)``) from the
    end of each series (only those forecasting timestamps after ``after`` where given), spaced ``h`` apart, at
    most ``max_windows`` evenly chosen; empty when there are none."""
    ends = []
    for _, part in frame.sort_values(["unique_id", "ds"]).groupby("unique_id", sort=True):
        first = input_size if after is None else max(input_size, int((part["ds"] <= after).sum()))
        ends += [(part, end) for end in range(len(part) - h, first - 1, -h)]
    if not ends:
        return []
    keep = np.linspace(0, len(ends) - 1, min(max_windows, len(ends))).round().astype(int)
    return [ends[i] for i in keep]


def _stack(chosen: list[tuple[Any, int]], input_size: int, h: int, hist: tuple[str, ...],
           futr: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray | None]]:
    ys = [part["y"].to_numpy(dtype=np.float32) for part, _ in chosen]
    windows = np.stack([y[end - input_size:end] for y, (_, end) in zip(ys, chosen, strict=True)])
    actuals = np.stack([y[end:end + h] for y, (_, end) in zip(ys, chosen, strict=True)])

    def exog(cols: tuple[str, ...], ahead: int) -> np.ndarray | None:
        if not cols:
            return None
        return np.stack([part[list(cols)].to_numpy(dtype=np.float32)[end - input_size:end + ahead]
                         for part, end in chosen])

    return windows, actuals, {HIST: exog(hist, 0), FUTR: exog(futr, h)}


def _need(frame: Any, input_size: int, h: int) -> ValueError:
    return ValueError(f"no series has {input_size + h} points for a window of input {input_size} + horizon {h} "
                      f"({frame['unique_id'].nunique()} series, at most {frame.groupby('unique_id').size().max()} "
                      f"points)")


def check_windows(frame: Any, input_size: int, h: int, hist: tuple[str, ...] = (), futr: tuple[str, ...] = (), *,
                  max_windows: int = 256, train_end: Any = None) -> CheckWindows:
    """The export's check windows: up to ``max_windows`` post-training windows (after ``train_end``) and up to
    ``max_windows`` in-sample windows spread over the whole frame, without repeats, each flagged. Without a
    ``train_end`` every window is in-sample (and no accuracy check can run on them)."""
    import pandas as pd

    train_end = None if train_end is None or pd.isna(train_end) else pd.Timestamp(train_end)
    post = _window_ends(frame, input_size, h, max_windows, train_end) if train_end is not None else []
    seen = {(str(part["unique_id"].iloc[0]), end) for part, end in post}
    spread = [(part, end) for part, end in _window_ends(frame, input_size, h, max_windows, None)
              if (str(part["unique_id"].iloc[0]), end) not in seen]
    chosen = post + spread
    if not chosen:
        raise _need(frame, input_size, h)
    windows, actuals, exog = _stack(chosen, input_size, h, hist, futr)
    first = np.array([part["ds"].iloc[end] for part, end in chosen], dtype="datetime64[ns]")
    flags = np.zeros(len(chosen), bool) if train_end is None else first > np.datetime64(train_end, "ns")
    return CheckWindows(windows=windows, actuals=actuals, first_target=first, post_training=flags, exog=exog,
                        series=np.array([str(part["unique_id"].iloc[0]) for part, _ in chosen]), train_end=train_end)
