"""Live error of every served forecast, per model version, written to DuckDB ``live_metrics``.

A forecast is remembered with the symbol's bar count at its origin. When the k-th bar after the origin
arrives, step k is scored: absolute error, and the scale for MASE (the mean absolute one-step change of the
input window the forecast saw: the in-sample naive error). Rows are kept in memory and appended to the
warehouse every ``flush_s`` seconds in one short transaction (waiting out a Dagster run's lock); a failed
write keeps the rows for the next try, so nothing is lost while the warehouse is busy.

A tick of hundreds of symbols scores thousands of steps, so the pending forecasts live in numpy arrays (one row of
slots per symbol, :class:`PendingTable`) and a tick is scored in one vectorised pass
(:meth:`LiveMetrics.actual_many`); the scored rows are kept as column blocks, not one tuple each, which spares the
garbage collector. Per symbol the forecasts are scored in the order they were recorded and a tick's rows come bar by
bar, so the rows (and the running sums, added one error at a time) are exactly those of scoring bar after bar.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np

log = logging.getLogger("tradecast.serving")

_STR_COLS = ("model_version", "model_kind", "arm", "symbol")


def window_scale(windows: np.ndarray) -> np.ndarray:
    """Per window (B, input_size): the mean absolute one-step change (float64; NaN for a window of one value)."""
    windows = np.asarray(windows)
    if windows.shape[1] < 2:
        return np.full(len(windows), np.nan)
    return np.abs(np.diff(windows.astype(np.float64), axis=1)).mean(axis=1)


class PendingTable:
    """The pending forecasts: per symbol a row of ``width`` slots (grown up to ``max_pending``), each slot a forecast
    (origin count and stamp, (arm, version, kind), yhat, scale) or empty (``seq`` -1); ``seq`` orders them as
    recorded, the way a per-symbol queue would."""

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self.ids: dict[str, int] = {}
        self.names: list[str] = []
        self.metas: list[tuple[str, str, str]] = []
        self._meta_ids: dict[tuple[str, str, str], int] = {}
        self._versions: dict[str, int] = {}
        self._meta_version = np.zeros(0, np.int64)  # meta id -> version id (duplicates compare versions)
        self._seq = 0
        self._alloc(0, min(16, max_pending), 1)

    def _alloc(self, cap: int, width: int, h: int) -> None:
        old = getattr(self, "seq", None)
        new = {"count": np.zeros((cap, width), np.int64), "ts": np.zeros((cap, width)),
               "meta": np.zeros((cap, width), np.int64), "length": np.zeros((cap, width), np.int64),
               "scale": np.zeros((cap, width)), "seq": np.full((cap, width), -1, np.int64),
               "yhat": np.full((cap, width, h), np.nan)}
        if old is not None:
            n, w = old.shape
            for name, arr in new.items():
                if name == "yhat":
                    arr[:n, :w, :self.h] = self.yhat
                else:
                    arr[:n, :w] = getattr(self, name)
        for name, arr in new.items():
            setattr(self, name, arr)
        self.cap, self.width, self.h = cap, width, h

    def _id(self, symbol: str) -> int:
        i = self.ids.get(symbol)
        if i is None:
            i = self.ids[symbol] = len(self.names)
            self.names.append(symbol)
        return i

    def _meta(self, meta: tuple[str, str, str]) -> int:
        m = self._meta_ids.get(meta)
        if m is None:
            m = self._meta_ids[meta] = len(self.metas)
            self.metas.append(meta)
            self._meta_version = np.append(self._meta_version, self._versions.setdefault(meta[1], len(self._versions)))
        return m

    def add(self, symbols: list[str], counts: np.ndarray, origin_ts: np.ndarray, meta: tuple[str, str, str],
            yhat: np.ndarray, scale: np.ndarray) -> None:
        if len(set(symbols)) < len(symbols):  # the same symbol again in one call: the first is kept, as a repeat
            seen: dict[str, int] = {}
            first = [seen.setdefault(s, i) for i, s in enumerate(symbols) if s not in seen]
            symbols, counts, origin_ts, yhat, scale = ([symbols[i] for i in first], counts[first], origin_ts[first],
                                                       yhat[first], scale[first])
        ids = np.array([self._id(s) for s in symbols], np.int64)
        m = self._meta(meta)
        if len(self.names) > self.cap or yhat.shape[1] > self.h:
            self._alloc(max(len(self.names), 2 * self.cap), self.width, max(self.h, yhat.shape[1]))
        rows = np.arange(len(ids))
        seq = self.seq[ids]
        newest = seq.argmax(axis=1)
        repeat = ((seq[rows, newest] >= 0) & (self.count[ids, newest] == counts)
                  & (self._meta_version[self.meta[ids, newest]] == self._meta_version[m]))
        if repeat.any():
            keep = ~repeat
            ids, counts, origin_ts, yhat, scale = ids[keep], counts[keep], origin_ts[keep], yhat[keep], scale[keep]
            rows, seq = rows[:len(ids)], seq[keep]
        if self.width < self.max_pending and len(ids) and (seq >= 0).all(axis=1).any():
            self._alloc(self.cap, min(2 * self.width, self.max_pending), self.h)
            seq = self.seq[ids]
        slot = seq.argmin(axis=1)  # an empty slot, else the oldest forecast (the newest max_pending are kept)
        self.count[ids, slot], self.ts[ids, slot], self.meta[ids, slot] = counts, origin_ts, m
        self.length[ids, slot], self.scale[ids, slot] = yhat.shape[1], scale
        self.yhat[ids, slot, :yhat.shape[1]] = yhat
        self.seq[ids, slot] = self._seq + rows
        self._seq += len(ids)

    def score(self, symbols: list[str], counts: np.ndarray) -> tuple[np.ndarray, ...] | None:
        """The steps that the bars (distinct symbols, bar counts after them) complete, forecasts whose last step it
        was dropped: ``(bar index, symbol id, step, origin_ts, yhat, scale, meta)`` per scored step, bar by bar and
        per bar in recorded order; None when nothing was pending."""
        bars = [(b, i) for b, s in enumerate(symbols) if (i := self.ids.get(s)) is not None]
        if not bars:
            return None
        bar, ids = (np.array(x, np.int64) for x in zip(*bars, strict=True))
        seq = self.seq[ids]
        valid = seq >= 0
        step = counts[bar][:, None] - self.count[ids]
        length = self.length[ids]
        self.seq[ids] = np.where(valid & (step >= length), -1, seq)
        r, c = np.nonzero(valid & (step >= 1) & (step <= length))
        if not len(r):
            return None
        order = np.lexsort((seq[r, c], r))
        r, c = r[order], c[order]
        i, st = ids[r], step[r, c]
        return bar[r], i, st, self.ts[i, c], self.yhat[i, c, st - 1], self.scale[i, c], self.meta[i, c]


class LiveMetrics:
    """Pending forecasts per symbol, scored as actuals arrive; running MAE / MASE per (arm, version)."""

    def __init__(self, *, asset_class: str, target: str, model_name: str, warehouse_path: Any = None,
                 max_pending_per_symbol: int = 64) -> None:
        self.asset_class, self.target, self.model_name = asset_class, target, model_name
        self.warehouse_path, self.max_pending = warehouse_path, max_pending_per_symbol
        self.pending = PendingTable(max_pending_per_symbol)
        self.blocks: list[dict[str, Any]] = []  # scored rows, a block of columns per scoring call
        self.totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # n, sum|e|, sum|e|/s
        self.written = 0
        self._lock = threading.Lock()

    # ---- recording and scoring ----------------------------------------------------------------------
    def record(self, symbol: str, origin_count: int, origin_ts: float, arm: str, version: str, kind: str,
               yhat: np.ndarray, window: np.ndarray) -> None:
        self.record_many([symbol], [origin_count], [origin_ts], arm, version, kind,
                         np.asarray(yhat)[None], np.asarray(window)[None])

    def record_many(self, symbols: list[str], origin_counts: Any, origin_ts: Any, arm: str, version: str, kind: str,
                    yhat: np.ndarray, windows: np.ndarray) -> None:
        """Remember the forecasts of ``symbols`` from one model call: ``yhat`` (B, h), ``windows`` (B, input_size).
        The same forecast served again (same origin and version as the symbol's newest pending one) is kept once."""
        scale = window_scale(windows)
        with self._lock:
            self.pending.add(symbols, np.asarray(origin_counts, np.int64), np.asarray(origin_ts, np.float64),
                             (arm, version, kind), np.asarray(yhat, np.float64), scale)

    def actual(self, symbol: str, count: int, ts: float, value: float) -> int:
        """Score every pending forecast of ``symbol`` whose step ``count - origin`` just arrived."""
        return self.actual_many([symbol], [count], [ts], [value])

    def actual_many(self, symbols: list[str], counts: Any, ts: Any, values: Any) -> int:
        """:meth:`actual` for a tick of bars (in bar order); returns the steps scored."""
        if len(symbols) == 1:
            return self._actual_one(symbols[0], int(counts[0]), float(ts[0]), float(values[0]))
        if len(set(symbols)) < len(symbols):  # a symbol twice: its bars one after the other
            return sum(self.actual_many([s], [c], [t], [v]) for s, c, t, v in zip(symbols, counts, ts, values,
                                                                                   strict=True))
        now = time.time()
        with self._lock:
            hit = self.pending.score(symbols, np.asarray(counts, np.int64))
            if hit is None:
                return 0
            bar, ids, steps, origin_ts, yhat, scale, meta = hit
            value = np.asarray(values, np.float64)[bar]
            err = np.abs(yhat - value)
            with np.errstate(divide="ignore", invalid="ignore"):
                scaled = np.where(scale > 0, err / scale, 0.0)
            metas = self.pending.metas
            for m in np.unique(meta):
                arm, version, _ = metas[m]
                rows = meta == m
                total = self.totals[(arm, version)]
                total[0] += int(rows.sum())
                total[1] = float(np.cumsum(np.concatenate([[total[1]], err[rows]]))[-1])  # one add at a time
                total[2] = float(np.cumsum(np.concatenate([[total[2]], scaled[rows]]))[-1])
            self.blocks.append({"recorded_at": now, "meta": meta, "symbol": ids,
                                "origin_ts": origin_ts, "step": steps,
                                "ts": np.asarray(ts, np.float64)[bar], "yhat": yhat, "y": value, "abs_error": err,
                                "scale": scale})
        return len(err)

    def _actual_one(self, symbol: str, count: int, ts: float, value: float) -> int:
        """:meth:`actual_many` of one bar in plain Python (numpy's per-call cost is more than a symbol's work)."""
        now = time.time()
        table = self.pending
        with self._lock:
            i = table.ids.get(symbol)
            if i is None:
                return 0
            origin, length = table.count[i].tolist(), table.length[i].tolist()
            cols: dict[str, list] = {k: [] for k in ("meta", "origin_ts", "step", "yhat", "abs_error", "scale")}
            for _, c in sorted((q, c) for c, q in enumerate(table.seq[i].tolist()) if q >= 0):
                step = count - origin[c]
                if 1 <= step <= length[c]:
                    yhat, scale = float(table.yhat[i, c, step - 1]), float(table.scale[i, c])
                    meta = int(table.meta[i, c])
                    err = abs(yhat - value)
                    arm, version, _ = table.metas[meta]
                    total = self.totals[(arm, version)]
                    total[0] += 1
                    total[1] += err
                    total[2] += err / scale if scale > 0 else 0.0
                    for k, v in zip(cols, (meta, float(table.ts[i, c]), step, yhat, err, scale), strict=True):
                        cols[k].append(v)
                if step >= length[c]:
                    table.seq[i, c] = -1
            n = len(cols["step"])
            if n:
                self.blocks.append({"recorded_at": now, "symbol": [i] * n, "ts": [ts] * n, "y": [value] * n, **cols})
        return n

    # ---- rows ---------------------------------------------------------------------------------------
    def _columns(self, blocks: list[dict[str, Any]]) -> dict[str, Any]:
        """The scored rows of ``blocks`` as the columns of ``live_metrics`` (strings as object arrays)."""
        metas, names = self.pending.metas, self.pending.names
        cols: dict[str, Any] = {}
        n = [len(b["step"]) for b in blocks]
        cols["recorded_at"] = np.repeat([b["recorded_at"] for b in blocks], n).astype(np.float64)
        for name, value in (("asset_class", self.asset_class), ("target", self.target),
                            ("model_name", self.model_name)):
            cols[name] = np.full(sum(n), value, dtype=object)
        meta = np.concatenate([b["meta"] for b in blocks]) if blocks else np.zeros(0, np.int64)
        for i, name in ((1, "model_version"), (2, "model_kind"), (0, "arm")):
            cols[name] = np.array([metas[m][i] for m in range(len(metas))] + [None], dtype=object)[meta]
        ids = np.concatenate([b["symbol"] for b in blocks]) if blocks else np.zeros(0, np.int64)
        cols["symbol"] = np.array([*names, None], dtype=object)[ids]
        for name in ("origin_ts", "step", "ts", "yhat", "y", "abs_error", "scale"):
            cols[name] = (np.concatenate([b[name] for b in blocks]) if blocks else
                          np.zeros(0, np.int64 if name == "step" else np.float64))
        return cols

    def rows(self) -> list[tuple]:
        """The scored rows not yet flushed, one tuple each in ``live_metrics`` column order (for inspection)."""
        from storage.schema import COLUMNS

        with self._lock:
            cols = self._columns(self.blocks)
        return list(zip(*[cols[c].tolist() for c in COLUMNS["live_metrics"]], strict=True))

    def drop(self) -> int:
        """Forget the scored rows not yet flushed (e.g. synthetic symbols' rows); returns how many."""
        with self._lock:
            blocks, self.blocks = self.blocks, []
        return sum(len(b["step"]) for b in blocks)

    def summary(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"arm": arm, "model_version": version, "n": int(n), "mae": s / n if n else None,
                     "mase": m / n if n else None} for (arm, version), (n, s, m) in sorted(self.totals.items())]

    def flush(self, lock_wait_s: float = 5.0) -> int:
        """Append the scored rows to DuckDB ``live_metrics``; returns how many were written."""
        if self.warehouse_path is None:
            return 0
        with self._lock:
            blocks, self.blocks = self.blocks, []
            cols = self._columns(blocks)
        if not len(cols["step"]):
            return 0
        import pandas as pd

        from storage.duck import insert_frame, open_waiting
        from storage.schema import COLUMNS

        frame = pd.DataFrame({c: cols[c] for c in COLUMNS["live_metrics"]})
        for col in ("recorded_at", "origin_ts", "ts"):
            frame[col] = pd.to_datetime(frame[col], unit="s", utc=True)
        try:
            con = open_waiting(self.warehouse_path, lock_wait_s=lock_wait_s)
            try:
                insert_frame(con, "live_metrics", frame)
            finally:
                con.close()
        except Exception as exc:  # noqa: BLE001 - keep the rows and try again at the next flush
            log.warning("live_metrics: %d rows kept for the next flush (%s)", len(frame), exc)
            with self._lock:
                self.blocks = blocks + self.blocks
            return 0
        self.written += len(frame)
        return len(frame)


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
