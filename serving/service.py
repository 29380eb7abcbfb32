"""The forecast service: models from the registry, hot swap on promotion, warm buffers, live metrics.

The champion (alias ``champion``) and, when set and different, the challenger (alias ``challenger``) are
loaded as ONNX Runtime forecasters, each behind its own circuit breaker whose backup is the previous champion
(alias ``previous_champion``, when it has an ONNX export of the same shape) or else the naive last value.
A background thread polls the aliases every ``poll_s`` seconds; a moved alias builds a complete new set of
arms off the request path and swaps it in with one reference assignment, so no request sees half a swap.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from domain.vocabulary import CLASS_FREQ, model_name
from serving.ab import ABRouter
from serving.breaker import GuardedModel
from serving.buffers import Bar, SymbolBuffers
from serving.live import LiveMetrics
from serving.predictor import Predictor
from serving.runtime import NaiveForecaster
from serving.source import MissingOnnx, ModelSource
from storage.duck import open_waiting
from storage.home import tradecast_home, warehouse_path

log = logging.getLogger("tradecast.serving")
_settled = False


def settle_heap(once: bool = False) -> None:
    """Collect, then move every object alive to the collector's permanent generation (``gc.freeze``): what start-up
    loaded (modules, models, warm buffers) lives as long as the process, and a full collection walking all of it
    stalled a 500-symbol tick by ~150 ms. ``once``: only the first such call of the process does it."""
    import gc

    global _settled
    if once and _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()


class ServiceError(RuntimeError):
    """The service cannot start (no champion, or no ONNX export of it)."""


@dataclass
class ServiceConfig:
    asset_class: str = "crypto"
    target: str = "close"
    challenger_share: float = 0.0  # A/B: share of symbols (or requests) sent to the challenger
    split_mode: str = "symbol"  # symbol | request
    split_seed: int = 0
    variant: str = "auto"  # auto (INT8 where the export offers it) | fp32 | int8
    threads: int = 1  # ONNX Runtime intra-op threads
    fail_max: int = 5  # consecutive primary failures that open the breaker
    reset_timeout_s: float = 30.0  # open -> half-open probe after this long
    poll_s: float = 10.0  # registry alias polling
    flush_s: float = 5.0  # live_metrics writes
    cache_size: int = 10_000
    max_symbols: int = 10_000
    warm: bool = True  # fill the buffers from the warehouse's training frame at start
    events: bool = True  # keep event features (news, FOMC) per bar: POST /events; models that read them
    home: str | None = None


class ForecastService:
    def __init__(self, config: ServiceConfig, source: ModelSource | None = None) -> None:
        self.config = config
        self.name = model_name(config.asset_class, config.target)
        self.freq = CLASS_FREQ[config.asset_class]
        self.source = source or ModelSource(config.home)
        self.notes: list[str] = []
        self._seen = self._registry_state()
        self._arms = self._load_arms()
        self.versions = self._versions(self._arms)
        champion = self._arms["champion"].primary
        self.h, self.input_size = champion.h, champion.input_size
        self.buffers = SymbolBuffers(self.input_size, config.target, max_symbols=config.max_symbols)
        self.live = LiveMetrics(asset_class=config.asset_class, target=config.target, model_name=self.name,
                                warehouse_path=warehouse_path(config.home))
        self.router = ABRouter(config.challenger_share, config.split_mode, config.split_seed)
        self.exog = self._event_buffers() if config.events else None
        self.predictor = Predictor(self.buffers, self.arms, self.router, self.live, config.cache_size, self.exog,
                                   self.freq)
        self.swaps = 0
        self.started_at = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if config.warm:
            self.warm()
        settle_heap(once=True)

    # ---- models -------------------------------------------------------------------------------------
    def arms(self) -> dict[str, GuardedModel]:
        return self._arms

    def _guard(self, primary: Any, backup: Any, arm: str) -> GuardedModel:
        return GuardedModel(primary, backup, fail_max=self.config.fail_max,
                            reset_timeout=self.config.reset_timeout_s, name=f"{self.name}:{arm}")

    def _forecaster(self, alias: str) -> Any:
        version = self.source.version(self.name, alias)
        if version is None:
            return None
        try:
            return self.source.forecaster(self.name, version, variant=self.config.variant,
                                          threads=self.config.threads)
        except MissingOnnx as exc:
            self.notes.append(f"{alias}: {exc}")
            return None
        except Exception as exc:  # noqa: BLE001 - a corrupt or missing file: this version is skipped, and said so
            note = f"{alias}: cannot load v{version.version} ({type(exc).__name__}: {exc})"[:400]
            self.notes.append(note)
            log.warning("%s %s", self.name, note)
            return None

    def _stand_in(self) -> Any:
        """A champion that cannot be loaded: the previous champion, else the naive last value at the champion's
        shape (from its registered parameters), with a warning; None when there is no champion at all."""
        version = self.source.version(self.name, "champion")
        if version is None or version.onnx is None:
            return None
        previous = self._forecaster("previous_champion")
        if previous is not None:
            stand_in, what = previous, f"previous champion v{previous.info.version}"
        else:
            params = self.source.registry.run_params(version.run_id)
            stand_in = NaiveForecaster(int(params["h"]), int(params["input_size"]))
            what = "the naive last value"
        note = f"champion v{version.version} cannot be loaded: serving {what} in its place until it is repaired"
        self.notes.append(note)
        self.degraded = note
        log.warning("%s %s", self.name, note)
        return stand_in

    def _load_arms(self) -> dict[str, GuardedModel]:
        self.notes, self.degraded = [], None
        champion = self._forecaster("champion") or self._stand_in()
        if champion is None:
            raise ServiceError(f"{self.name} has no champion with an ONNX export: run the pipeline (make run) "
                               f"and materialize onnx_model[{self.config.asset_class}|{self.config.target}]"
                               + (f" ({'; '.join(self.notes)})" if self.notes else ""))
        previous = self._forecaster("previous_champion")
        same = lambda f: f is not None and (f.h, f.input_size) == (champion.h, champion.input_size)  # noqa: E731
        backup = previous if same(previous) else NaiveForecaster(champion.h, champion.input_size)
        arms = {"champion": self._guard(champion, backup, "champion")}
        challenger = self._forecaster("challenger")
        if challenger is not None and challenger.info.version != champion.info.version:
            if same(challenger):
                arms["challenger"] = self._guard(challenger, backup, "challenger")
            else:
                self.notes.append("challenger: different h / input_size than the champion; not served")
        return arms

    @staticmethod
    def _versions(arms: dict[str, GuardedModel]) -> dict[str, str]:
        return {arm: g.primary.info.version for arm, g in arms.items()}

    def _registry_state(self) -> dict[str, tuple[str, bool] | None]:
        """Per alias: the version holding it and whether it has an ONNX export yet."""
        state = {}
        for alias in ("champion", "challenger"):
            version = self.source.version(self.name, alias)
            state[alias] = None if version is None else (version.version, version.onnx is not None)
        return state

    def refresh(self) -> bool:
        """Swap in newly aliased versions (returns True when something changed). The arms are rebuilt only when
        the registry changed since the last look (an alias moved, or an ONNX export arrived), so a challenger
        without an export, or a refused swap, is not reloaded at every poll."""
        state = self._registry_state()
        if state == self._seen:
            return False
        self._seen = state
        wanted = {alias: entry and entry[0] for alias, entry in state.items()}
        current = {alias: self.versions.get(alias) for alias in wanted}
        if wanted["challenger"] == wanted["champion"]:
            wanted["challenger"] = None
        if wanted == current:
            return False
        try:
            arms = self._load_arms()
        except ServiceError as exc:  # e.g. the new champion's ONNX is not exported yet: keep serving
            log.warning("model swap postponed: %s", exc)
            return False
        except Exception:  # a registry hiccup: look again at the next poll
            self._seen = None
            raise
        if arms["champion"].primary.input_size != self.input_size:
            log.warning("model swap refused: new champion input_size %s != %s", arms["champion"].primary.input_size,
                        self.input_size)
            return False
        with self.predictor.lock:  # one reference assignment: requests see the old or the new set, never a mix
            self._arms = arms
            self.versions = self._versions(arms)
            self.predictor.cache.clear()
        self.swaps += 1
        log.warning("serving %s", {a: g.primary.label for a, g in arms.items()})
        return True

    # ---- data ---------------------------------------------------------------------------------------
    def _event_buffers(self) -> Any:
        """Event state from the warehouse: FOMC calendar and surprises, and the headlines from as far back as the
        input window needs (:meth:`serving.exog.ExogBuffers.from_warehouse`); every arm, and every champion a
        swap admits, has the champion's ``input_size``."""
        from serving.exog import ExogBuffers

        con = open_waiting(warehouse_path(self.config.home), read_only=True)
        try:
            return ExogBuffers.from_warehouse(con, self.config.asset_class, self.config.target, self.freq,
                                              self.input_size)
        finally:
            con.close()

    def post_event(self, ts: float, headline: str, symbol: str | None = None,
                   sentiment: float | None = None) -> tuple[float, list]:
        """A headline: update the event features of its symbol (market-wide: every symbol) as of ``ts`` and
        return ``(sentiment, updated forecasts)`` of the affected symbols that have enough history."""
        import pandas as pd

        if self.exog is None:
            raise RuntimeError("this service runs without event features (events=False)")
        if sentiment is None:
            from ingest.sentiment import score

            sentiment = float(score(pd.Series([headline])).iloc[0])
        when = pd.Timestamp(ts, unit="s")
        affected = self.exog.on_event(when, sentiment, symbol, list(self.buffers.buffers))
        for s in affected:
            self.predictor.invalidate(s)
        ready = [s for s in affected if self.buffers.get(s).ready]
        return sentiment, self.predictor.forecast_batch(ready) if ready else []

    def warm(self) -> int:
        """Fill the buffers with the end of each series of the training frame; returns the symbols loaded."""
        con = open_waiting(warehouse_path(self.config.home), read_only=True)
        try:
            frame = con.execute(
                "SELECT unique_id, epoch(ds) AS ts, y FROM training_frames WHERE asset_class = ? AND target = ? "
                "QUALIFY row_number() OVER (PARTITION BY unique_id ORDER BY ds DESC) <= ? ORDER BY unique_id, ds",
                [self.config.asset_class, self.config.target, self.input_size]).df()
            closes = con.execute(
                "SELECT unique_id, arg_max(y, ds) AS close FROM training_frames WHERE asset_class = ? "
                "AND target = 'close' GROUP BY unique_id", [self.config.asset_class]).df()
        finally:
            con.close()
        last_close = dict(zip(closes.unique_id, closes.close, strict=True))
        for symbol, part in frame.groupby("unique_id", sort=True):
            self.buffers.load(symbol, part.y.to_numpy(), float(part.ts.iloc[-1]), last_close.get(symbol))
        if self.exog is not None and len(frame):
            import pandas as pd

            self.exog.load(frame.assign(ds=pd.to_datetime(frame.ts, unit="s"))[["unique_id", "ds"]])
        return frame.unique_id.nunique()

    def ingest(self, bar: Bar) -> float | None:
        return self.predictor.update(bar)

    def ingest_many(self, bars: list[Bar]) -> list[tuple[int, Exception]]:
        """:meth:`ingest` of each bar in turn, a tick at once; returns ``(index, error)`` of each refused one."""
        return self.predictor.update_many(bars)

    def predict_windows(self, windows: np.ndarray, arm: str = "champion") -> tuple[np.ndarray, Any]:
        from serving.predictor import NoForecast

        arms = self.arms()
        values, used = arms.get(arm, arms["champion"]).run(windows)
        if not np.isfinite(values).all():
            raise NoForecast(f"no finite forecast for {int((~np.isfinite(values)).any(axis=(1, 2)).sum())} of "
                             f"{len(values)} windows ({used.label} answered inf/NaN)")
        return values, used

    # ---- background ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tradecast-poll", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        next_poll = next_flush = time.monotonic()
        while not self._stop.wait(0.25):
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + self.config.poll_s
                try:
                    self.refresh()
                except Exception as exc:  # noqa: BLE001 - a registry hiccup must not stop serving
                    log.warning("alias poll failed: %s", exc)
            if now >= next_flush:
                next_flush = now + self.config.flush_s
                self.live.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.live.flush()

    def health(self) -> dict[str, Any]:
        arms = self.arms()
        ready = sum(1 for b in self.buffers.buffers.values() if b.ready)
        degraded = self.degraded or any(g.state != "closed" for g in arms.values())
        return {"status": "degraded" if degraded else "ok", "model_name": self.name, "h": self.h,
                "input_size": self.input_size, "freq": self.freq, "arms": {a: g.status() for a, g in arms.items()},
                "split": {"challenger_share": self.config.challenger_share, "mode": self.config.split_mode},
                "symbols": len(self.buffers), "symbols_ready": ready, "swaps": self.swaps, "notes": self.notes,
                "cache": {"size": len(self.predictor.cache), "hits": self.predictor.hits,
                          "misses": self.predictor.misses},
                "live": self.live.summary(), "live_rows_written": self.live.written,
                "uptime_s": round(time.time() - self.started_at, 1), "config": asdict(self.config),
                "home": str(tradecast_home(self.config.home))}
