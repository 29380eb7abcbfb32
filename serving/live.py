"""Live error of every served forecast, per model version, written to DuckDB ``live_metrics``.

A forecast is remembered with the symbol's bar count at its origin. When the k-th bar after the origin
arrives, step k is scored: absolute error, and the scale for MASE (the mean absolute one-step change of the
input window the forecast saw: the in-sample naive error). Rows are kept in memory and appended to the
warehouse every ``flush_s`` seconds in one short transaction (waiting out a Dagster run's lock); a failed
write keeps the rows for the next try, so nothing is lost while the warehouse is busy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("tradecast.serving")


@dataclass
class Pending:
    origin_count: int
    origin_ts: float
    arm: str
    model_version: str
    model_kind: str
    yhat: np.ndarray  # (h,)
    scale: float


class LiveMetrics:
    """Pending forecasts per symbol, scored as actuals arrive; running MAE / MASE per (arm, version)."""

    def __init__(self, *, asset_class: str, target: str, model_name: str, warehouse_path: Any = None,
                 max_pending_per_symbol: int = 64) -> None:
        self.asset_class, self.target, self.model_name = asset_class, target, model_name
        self.warehouse_path, self.max_pending = warehouse_path, max_pending_per_symbol
        self.pending: dict[str, list[Pending]] = defaultdict(list)
        self.rows: list[tuple] = []
        self.totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # n, sum|e|, sum|e|/s
        self.written = 0
        self._lock = threading.Lock()

    def record(self, symbol: str, origin_count: int, origin_ts: float, arm: str, version: str, kind: str,
               yhat: np.ndarray, window: np.ndarray) -> None:
        diffs = np.abs(np.diff(window.astype(np.float64)))
        scale = float(diffs.mean()) if len(diffs) else float("nan")
        with self._lock:
            queue = self.pending[symbol]
            if queue and queue[-1].origin_count == origin_count and queue[-1].model_version == version:
                return  # the same forecast served again (cache hit): score it once
            queue.append(Pending(origin_count, origin_ts, arm, version, kind, np.asarray(yhat, float), scale))
            del queue[:-self.max_pending]

    def actual(self, symbol: str, count: int, ts: float, value: float) -> int:
        """Score every pending forecast of ``symbol`` whose step ``count - origin`` just arrived."""
        scored = 0
        now = time.time()
        with self._lock:
            queue = self.pending.get(symbol)
            if not queue:
                return 0
            keep = []
            for p in queue:
                step = count - p.origin_count
                if 1 <= step <= len(p.yhat):
                    err = abs(float(p.yhat[step - 1]) - value)
                    self.rows.append((now, self.asset_class, self.target, self.model_name, p.model_version,
                                      p.model_kind, p.arm, symbol, p.origin_ts, step, ts, float(p.yhat[step - 1]),
                                      value, err, p.scale))
                    total = self.totals[(p.arm, p.model_version)]
                    total[0] += 1
                    total[1] += err
                    total[2] += err / p.scale if p.scale > 0 else 0.0
                    scored += 1
                if step < len(p.yhat):
                    keep.append(p)
            self.pending[symbol] = keep
        return scored

    def summary(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"arm": arm, "model_version": version, "n": int(n), "mae": s / n if n else None,
                     "mase": m / n if n else None} for (arm, version), (n, s, m) in sorted(self.totals.items())]

    def flush(self, lock_wait_s: float = 5.0) -> int:
        """Append the scored rows to DuckDB ``live_metrics``; returns how many were written."""
        if self.warehouse_path is None:
            return 0
        with self._lock:
            rows, self.rows = self.rows, []
        if not rows:
            return 0
        import pandas as pd

        from storage.duck import insert_frame, open_waiting
        from storage.schema import COLUMNS

        frame = pd.DataFrame(rows, columns=COLUMNS["live_metrics"])
        for col in ("recorded_at", "origin_ts", "ts"):
            frame[col] = pd.to_datetime(frame[col], unit="s", utc=True)
        try:
            con = open_waiting(self.warehouse_path, lock_wait_s=lock_wait_s)
            try:
                insert_frame(con, "live_metrics", frame)
            finally:
                con.close()
        except Exception as exc:  # noqa: BLE001 - keep the rows and try again at the next flush
            log.warning("live_metrics: %d rows kept for the next flush (%s)", len(rows), exc)
            with self._lock:
                self.rows = rows + self.rows
            return 0
        self.written += len(rows)
        return len(rows)


def ab_summary(rows: Any) -> Any:
    """Per (model, arm, version): scored steps, forecasts, symbols, MAE, MASE (mean of |error| / scale), and
    each arm's MASE relative to its model's champion (< 1: better than the champion on live data)."""
    import pandas as pd

    if rows.empty:
        return pd.DataFrame(columns=["model_name", "arm", "model_version", "model_kind", "steps", "forecasts",
                                     "symbols", "mae", "mase", "mase_vs_champion", "first", "last"])
    rows = rows.assign(scaled=rows.abs_error / rows.scale.where(rows.scale > 0))
    out = rows.groupby(["model_name", "arm", "model_version", "model_kind"], as_index=False).agg(
        steps=("abs_error", "size"), forecasts=("origin_ts", "nunique"), symbols=("symbol", "nunique"),
        mae=("abs_error", "mean"), mase=("scaled", "mean"), first=("ts", "min"), last=("ts", "max"))
    champion = out[out.arm == "champion"].groupby("model_name").mase.mean()
    out["mase_vs_champion"] = out.mase / out.model_name.map(champion)
    return out.sort_values(["model_name", "arm", "model_version"], ignore_index=True)
