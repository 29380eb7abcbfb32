"""PNG plots of forecasts and evaluation results (matplotlib, Agg rendering).

matplotlib is imported inside the functions. Figures are built with
``matplotlib.figure.Figure`` (no pyplot): no global backend switch, no figure
registry to leak, safe in threads / worker processes; PNGs render with Agg.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def _figure(**kwargs: Any) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def plot_forecasts(
    history_frame: pd.DataFrame,
    forecast_frame: pd.DataFrame,
    symbols: Sequence[str],
    *,
    title: str = "",
    tail: int = 200,
) -> bytes:
    """PNG with one panel per symbol: last ``tail`` history points, forecast, 80% band.

    ``history_frame``: ``unique_id, ds, y``; ``forecast_frame``: ``unique_id, ds,
    yhat`` and optional ``lo, hi`` (NaN = no band). Unknown symbols are skipped;
    if none is left an empty panel says so.
    """
    known = [s for s in symbols if s in set(history_frame["unique_id"]) | set(forecast_frame["unique_id"])]
    n = max(len(known), 1)
    fig = _figure(figsize=(10, 2.8 * n))
    axes = fig.subplots(n, 1, squeeze=False)
    for ax, symbol in zip(axes[:, 0], known, strict=False):
        hist = history_frame[history_frame["unique_id"] == symbol].sort_values("ds").tail(tail)
        fc = forecast_frame[forecast_frame["unique_id"] == symbol].sort_values("ds")
        ax.plot(hist["ds"], hist["y"], color="black", lw=1, label="history")
        ax.plot(fc["ds"], fc["yhat"], color="tab:blue", lw=1.5, label="forecast")
        if {"lo", "hi"} <= set(fc.columns) and np.isfinite(fc[["lo", "hi"]].to_numpy(float)).any():
            ax.fill_between(fc["ds"], fc["lo"], fc["hi"], color="tab:blue", alpha=0.2, label="80% interval")
        ax.set_title(str(symbol), fontsize=9)
        ax.legend(loc="upper left", fontsize=7)
        ax.tick_params(labelsize=7)
    if not known:
        axes[0, 0].text(0.5, 0.5, "no data for the requested symbols", ha="center", va="center")
    fig.suptitle(title)
    return _png(fig)


def plot_evaluation(evaluation: pd.DataFrame, *, metric: str = "mase", title: str = "") -> bytes:
    """PNG bar chart of one metric per model (from the evaluation table)."""
    if metric not in evaluation.columns:
        raise ValueError(f"metric {metric!r} not in evaluation columns {list(evaluation.columns)}")
    fig = _figure(figsize=(6, 3))
    ax = fig.subplots()
    values = evaluation[metric].to_numpy(dtype=float)
    colors = ["tab:blue" if m == "nhits" else "tab:gray" for m in evaluation["model"]]
    ax.bar(evaluation["model"].astype(str), values, color=colors)
    ax.set_ylabel(metric)
    ax.set_title(title or metric)
    for i, v in enumerate(values):
        if np.isfinite(v):
            ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=8)
    return _png(fig)


def plot_live_error(rows: pd.DataFrame) -> bytes:
    """PNG: running mean of the live scaled error (|error| / scale) per arm and model version, over time."""
    fig = _figure(figsize=(8, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    rows = rows.sort_values("ts")
    scaled = rows.abs_error / rows.scale.where(rows.scale > 0)
    for (arm, version), part in rows.assign(scaled=scaled).groupby(["arm", "model_version"], sort=True):
        running = part.scaled.expanding().mean()
        ax.plot(pd.to_datetime(part.ts), running.to_numpy(), label=f"{arm} v{version}")
    ax.set_ylabel("running live MASE")
    ax.set_title("Live error by arm (lower is better)")
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    return _png(fig)


def plot_trials(history: pd.DataFrame, *, best: str | None = None, title: str = "") -> bytes:
    """PNG: each search trial's validation loss over its training steps (``history``: trial_id, step, val_loss;
    the best trial drawn bold, trials stopped early end where ASHA stopped them)."""
    fig = _figure(figsize=(7, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    for trial, part in history.sort_values("step").groupby("trial_id", sort=True):
        is_best = trial == best
        ax.plot(part.step.to_numpy(), part.val_loss.to_numpy(), marker="o", markersize=3,
                linewidth=2.5 if is_best else 1, alpha=1 if is_best else 0.6,
                label=f"{trial} (best)" if is_best else str(trial))
    if history.empty:
        ax.text(0.5, 0.5, "no trial reported a validation loss", ha="center", va="center")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation loss")
    ax.set_yscale("log")
    ax.set_title(title or "search trials")
    if not history.empty:
        ax.legend(loc="best", fontsize=6, ncol=2)
    return _png(fig)
