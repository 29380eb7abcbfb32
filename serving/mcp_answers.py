"""The reads behind the MCP tools and model cards (`serving.mcp_server` wires them to the SDK): the queries, their
JSON shaping and the error messages an agent reads.

Every answer is read when asked, so it is what Dagster last materialized: the warehouse through a short read-only
connection (`storage.duck.open_waiting`: a run holding the write lock is waited for briefly, then named, never
waited on forever), the registry through `storage.registry.Registry` (the same tracking URI as every room). A
question the data cannot answer yet is a `QueryError` that says which asset to materialize; a wrong argument names
the argument and its allowed values. Plain code: mlflow is imported where it is used."""

import contextlib
import json
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

from domain.vocabulary import (
    ASSET_CLASSES,
    CHAMPION,
    CHAMPION_SOURCE,
    SERVED_ALIASES,
    STRATEGIES,
    TARGETS,
    check_member,
    model_name,
)

LOCK_WAIT_S = 5.0  # a Dagster run may hold the warehouse's write lock: wait this long, then say so
MODEL_URI = "model://nhits-{asset_class}-{target}"
DECISIONS = 5  # gate decisions shown per model, newest first
# the asset that writes each table (what a missing answer asks to materialize)
WRITER = {"forecasts": "forecasts", "signals": "signals", "backtest_results": "backtest_report",
          "model_promotions": "nhits_model", "model_evaluations": "nhits_model"}
PROMOTION_FIELDS = ("version", "model_kind", "decision", "reason", "metric", "challenger_score", "best_baseline",
                    "best_baseline_score", "p_value_baseline", "decided_at")


class QueryError(ValueError):
    """A question the warehouse or registry cannot answer: the message says why and what to do."""


def jsonable(value: Any) -> Any:
    """A JSON value: timestamps as ISO strings, NaN / NaT / inf as null, numpy scalars as Python ones."""
    import datetime

    import pandas as pd

    if value is None or (not isinstance(value, (str, list, dict)) and pd.isna(value)):
        return None
    if isinstance(value, (datetime.datetime, datetime.date)):  # pd.Timestamp too
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def records(frame, columns=None) -> list[dict[str, Any]]:
    return [{k: jsonable(v) for k, v in row.items()} for row in frame[list(columns or frame.columns)]
            .to_dict("records")]


def _known(values, limit: int = 20) -> str:
    values = sorted(values)
    return ", ".join(values[:limit]) + (f", ... ({len(values)} in all)" if len(values) > limit else "")


class Answers:
    """The reads behind the tools and the model cards, for one home (plain code: `build_server` wraps them)."""

    def __init__(self, home: str | None = None, lock_wait_s: float = LOCK_WAIT_S) -> None:
        from storage.home import tradecast_home, warehouse_path

        self.root = tradecast_home(home)
        self.path, self.lock_wait_s = warehouse_path(str(self.root)), lock_wait_s
        self._registry, self._lock = None, threading.Lock()

    # ---- stores ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def warehouse(self) -> Iterator[Callable[..., Any]]:
        """``q(table, sql, params)`` on one read-only connection, closed after the block (writers are not held up
        between calls)."""
        import duckdb

        from storage.duck import StorageError, open_waiting, read_df, reading

        try:
            con = open_waiting(self.path, read_only=True, lock_wait_s=self.lock_wait_s)
        except duckdb.IOException as exc:
            cause = str(exc).splitlines()[0]
            if "lock" not in cause.lower():
                raise QueryError(f"the warehouse {self.path} cannot be opened: {cause}") from None
            raise QueryError(f"the warehouse {self.path} stayed locked by another process (a Dagster run writing) "
                             f"for {self.lock_wait_s:g} s: try again shortly ({cause})") from None
        except StorageError as exc:
            raise QueryError(str(exc)) from None

        def q(table: str, sql: str, params: list | None = None):
            try:
                with reading(self.path):
                    return read_df(con, sql, params)
            except (duckdb.CatalogException, duckdb.BinderException) as exc:
                raise QueryError(f"the warehouse has no table {table} as this server reads it (an older file?): "
                                 f"materialize {WRITER.get(table, table)} ({str(exc).splitlines()[0]})") from None
            except StorageError as exc:
                raise QueryError(str(exc)) from None

        try:
            yield q
        finally:
            con.close()

    def registry(self):
        """`storage.registry.Registry` of the home, or None while nothing was registered (no tracking server and no
        local store yet: a read does not create one)."""
        from storage.home import tracking_server

        if self._registry is None and (tracking_server() or (self.root / "mlflow.db").exists()):
            from storage.registry import Registry

            self._registry = Registry(self.root)
        return self._registry

    def _model(self, name: str) -> dict[str, Any]:
        """Versions (typed, `storage.versions.ModelVersion`) and aliases of a registered model."""
        with self._lock:  # tools run on worker threads; one MLflow client per process
            registry = self.registry()
            try:
                versions = registry.versions(name) if registry is not None else []
                found = {a: registry.alias(name, a) for a in SERVED_ALIASES} if versions else {}
            except Exception as exc:
                from mlflow.exceptions import MlflowException

                if not isinstance(exc, MlflowException):
                    raise
                raise QueryError(f"the MLflow registry cannot be read: {str(exc).splitlines()[0]}") from None
        aliases = {a: v.version for a, v in found.items() if v is not None}
        return {"versions": [{"version": v.version, "kind": v.kind, "baseline": v.baseline, "features": v.features,
                              "onnx": v.onnx is not None, "run_id": v.run_id,
                              "aliases": [a for a, n in aliases.items() if n == v.version]} for v in versions],
                "aliases": aliases}

    # ---- tools ----------------------------------------------------------------------------------------------
    def _asset_class(self, q, table: str, symbol: str, asset_class: str | None, scope: str, params: list,
                     what: str, partition: str) -> str:
        """The class of ``symbol`` among ``what`` (rows of ``table`` matching ``scope``): the one given, else the
        only class holding the symbol; a symbol none holds is named with the known ones, and no rows at all say
        what to materialize (``partition``: of the class given)."""
        if asset_class is not None:
            check_member("asset_class", asset_class, ASSET_CLASSES)
            scope, params = f"{scope} AND asset_class = ?", [*params, asset_class]
        found = sorted(q(table, f"SELECT DISTINCT asset_class FROM {table} WHERE symbol = ? {scope}",
                         [symbol, *params]).asset_class)
        if len(found) > 1:
            raise QueryError(f"symbol {symbol!r} is in several asset classes ({', '.join(found)}): pass asset_class, "
                             f"one of {found}")
        if found:
            return found[0]
        known = q(table, f"SELECT DISTINCT symbol FROM {table} WHERE TRUE {scope}", params).symbol
        where = f" of {asset_class}" if asset_class else ""
        if known.empty:
            partition = f" (partition {partition})" if asset_class else ""
            raise QueryError(f"no {what}{where} yet: materialize {WRITER[table]}{partition}")
        raise QueryError(f"unknown symbol {symbol!r}: no {what}{where} for it; known symbols: {_known(known)}")

    def forecast(self, symbol: str, target: str, asset_class: str | None = None) -> dict[str, Any]:
        check_member("target", target, TARGETS)
        with self.warehouse() as q:
            cls = self._asset_class(q, "forecasts", symbol, asset_class, "AND target = ?", [target],
                                    f"{target} forecasts", f"{asset_class}|{target}")
            rows = q("forecasts", "SELECT * FROM forecasts WHERE asset_class = ? AND target = ? AND symbol = ? "
                     "QUALIFY created_at = max(created_at) OVER () ORDER BY step", [cls, target, symbol])
        head = records(rows.head(1))[0]
        return {"symbol": symbol, "asset_class": cls, "target": target,
                **{k: head[k] for k in ("model_name", "model_version", "model_kind", "created_at")},
                "steps": records(rows, ["step", "ds", "yhat", "lo", "hi"])}

    def signal(self, symbol: str, asset_class: str | None = None) -> dict[str, Any]:
        with self.warehouse() as q:
            cls = self._asset_class(q, "signals", symbol, asset_class, "AND source = ?", [CHAMPION_SOURCE],
                                    "champion signals", str(asset_class))
            rows = q("signals", "SELECT * FROM signals WHERE asset_class = ? AND source = ? AND symbol = ? "
                     "QUALIFY row_number() OVER (PARTITION BY strategy ORDER BY ds DESC) <= 2 "
                     "ORDER BY strategy, ds DESC", [cls, CHAMPION_SOURCE, symbol])
        out = []
        order = {s: i for i, s in enumerate(STRATEGIES)}  # vocabulary order, then any other strategy
        for strategy, part in sorted(rows.groupby("strategy"), key=lambda s: (order.get(s[0], len(order)), s[0])):
            last, *before = records(part)
            previous = before[0] if before else {"ds": None, "position": None}
            params = last["params"]
            with contextlib.suppress(TypeError, ValueError):
                params = json.loads(params)
            change = None if previous["position"] is None else last["position"] - previous["position"]
            out.append({"strategy": strategy, "ds": last["ds"], "position": last["position"],
                        "previous_ds": previous["ds"], "previous_position": previous["position"], "change": change,
                        **{k: last.get(k) for k in ("period", "vol_hat", "mu", "cutoff", "vol_model", "vol_version",
                                                    "close_model", "close_version", "created_at")}, "params": params})
        return {"symbol": symbol, "asset_class": cls, "source": CHAMPION_SOURCE, "strategies": out}

    def models(self) -> dict[str, Any]:
        with self.warehouse() as q:
            decisions = q("model_promotions", "SELECT * FROM model_promotions QUALIFY row_number() OVER "
                          "(PARTITION BY model_name ORDER BY decided_at DESC) <= ? ORDER BY decided_at DESC",
                          [DECISIONS])
        out = []
        for cls in ASSET_CLASSES:
            for target in TARGETS:
                name = model_name(cls, target)
                entry = {"name": name, "asset_class": cls, "target": target,
                         "card": MODEL_URI.format(asset_class=cls, target=target), **self._model(name),
                         "decisions": records(decisions[decisions.model_name == name], PROMOTION_FIELDS)}
                if not entry["versions"]:
                    entry["note"] = f"not registered: materialize nhits_model (partition {cls}|{target})"
                out.append(entry)
        return {"models": out}

    def backtest(self, asset_class: str) -> dict[str, Any]:
        check_member("asset_class", asset_class, ASSET_CLASSES)
        with self.warehouse() as q:
            rows = q("backtest_results", "SELECT * FROM backtest_results WHERE asset_class = ? "
                     "ORDER BY strategy, source", [asset_class])
        if rows.empty:
            raise QueryError(f"no backtest results for {asset_class}: materialize backtest_report (partition "
                             f"{asset_class})")
        keep = [c for c in ("strategy", "source", "ann_return", "ann_vol", "sharpe", "sortino", "max_drawdown",
                            "turnover", "hit_rate", "total_return", "cost_drag", "n_bars", "start_ds", "end_ds",
                            "computed_at") if c in rows.columns]
        return {"asset_class": asset_class, "results": records(rows, keep)}

    # ---- resources ------------------------------------------------------------------------------------------
    def model_card(self, asset_class: str, target: str) -> str:
        """Markdown: versions, aliases, the champion's latest evaluation per model, the latest gate decision."""
        check_member("asset_class", asset_class, ASSET_CLASSES)
        check_member("target", target, TARGETS)
        name = model_name(asset_class, target)
        model = self._model(name)
        champion = model["aliases"].get(CHAMPION)
        with self.warehouse() as q:
            evals = q("model_evaluations", "SELECT model, mase, qlike, mae, n_windows, evaluated_at FROM "
                      "model_evaluations WHERE model_name = ? AND version = ? QUALIFY row_number() OVER "
                      "(PARTITION BY model ORDER BY evaluated_at DESC) = 1 ORDER BY model", [name, champion or ""])
            decision = q("model_promotions", "SELECT * FROM model_promotions WHERE model_name = ? "
                         "ORDER BY decided_at DESC LIMIT 1", [name])
        lines = [f"# {name}", "", f"Asset class `{asset_class}`, target `{target}`.", "", "## Aliases", ""]
        lines += [f"- `{a}`: v{v}" for a, v in model["aliases"].items()] or ["- none"]
        lines += ["", "## Versions", ""]
        if model["versions"]:
            lines += ["| version | kind | baseline | features | onnx | aliases |", "|---|---|---|---|---|---|"]
            lines += [f"| {v['version']} | {v['kind']} | {v['baseline'] or ''} | {v['features']} | "
                      f"{'yes' if v['onnx'] else 'no'} | {', '.join(v['aliases'])} |" for v in model["versions"]]
        else:
            lines.append(f"Not registered: materialize nhits_model (partition {asset_class}|{target}).")
        lines += ["", f"## Latest evaluation of the champion{f' (v{champion})' if champion else ''}", ""]
        if evals.empty:
            lines.append("No champion yet." if champion is None else "No evaluation rows: materialize nhits_model.")
        else:
            lines += ["| model | mase | qlike | mae | n_windows | evaluated_at |", "|---|---|---|---|---|---|"]
            lines += ["| " + " | ".join("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
                                        for v in row.values()) + " |" for row in records(evals)]
        lines += ["", "## Latest gate decision", ""]
        if decision.empty:
            lines.append("None recorded.")
        else:
            d = records(decision, PROMOTION_FIELDS)[0]
            lines += [f"- v{d['version']} ({d['model_kind']}): **{d['decision']}** at {d['decided_at']}",
                      f"- reason: {d['reason']}"]
            lines += [f"- {k}: {d[k]}" for k in PROMOTION_FIELDS[4:9] if d[k] is not None]
        return "\n".join(lines) + "\n"
