"""The HTTP API (FastAPI): ``POST /bars``, ``POST /events``, ``GET /forecast/{symbol}``, ``POST /predict``,
``GET /health``, ``GET /metrics``, and the trading routes (``serving.trading_routes``: order intents, positions) when
a trader (``serving.decisions.Trader``) runs beside the service. Input is validated by pydantic; every bad request
gets a 4xx naming what is wrong (a stale bar 409, an unknown symbol 404, too little history 409, a late headline the
event state cannot fold in 409, a body over the limit 413, a trading route without a trader 409), never a 500."""

import contextlib
import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serving.buffers import Bar, NotReady, UnknownSymbol
from serving.exog import LateEvent
from serving.metrics import ServiceMetrics
from serving.predictor import NoForecast
from serving.trading_routes import NO_TRADER, SYMBOL_PATTERN, trading_router

MAX_BODY_BYTES = 4 * 2**20
MAX_BARS = 10_000
MAX_WINDOWS = 1024
MAX_ABS_VALUE = 1e15  # beyond float32's comfortable range once scaled; no market value comes near it
MAX_PRICE = 1e12  # no traded price comes near it; 1e308 would overflow every later computation
MAX_VOLUME = 1e18
MAX_FUTURE_S = 86_400  # a bar or headline stamped more than a day ahead of this clock is refused
Price = Annotated[float, Field(gt=0, le=MAX_PRICE, allow_inf_nan=False)]


def _bounded_ts(value: datetime) -> datetime:
    """A timestamp (no zone = UTC) between 1970 and a day from now: pandas and every buffer can hold it."""
    ts = value if value.tzinfo else value.replace(tzinfo=UTC)
    latest = time.time() + MAX_FUTURE_S
    if not 0 < ts.timestamp() <= latest:
        raise ValueError(f"timestamp {ts.isoformat()} is outside 1970-01-01 .. "
                         f"{datetime.fromtimestamp(latest, tz=UTC):%Y-%m-%d %H:%M} UTC (now + 1 day)")
    return ts


class BarIn(BaseModel):
    """One OHLCV bar; a timestamp without a zone is read as UTC."""

    model_config = ConfigDict(extra="forbid")
    symbol: str = Field(min_length=1, max_length=32, pattern=SYMBOL_PATTERN)
    ts: datetime
    open: Price
    high: Price
    low: Price
    close: Price
    volume: float | None = Field(None, ge=0, le=MAX_VOLUME, allow_inf_nan=False)

    _ts_in_range = field_validator("ts")(_bounded_ts)

    @model_validator(mode="after")
    def _consistent(self) -> "BarIn":
        if self.high < max(self.open, self.close) or self.low > min(self.open, self.close):
            raise ValueError(f"{self.symbol}: inconsistent bar: high {self.high} / low {self.low} must bound "
                             f"open {self.open} and close {self.close}")
        return self

    def to_bar(self) -> Bar:
        ts = self.ts if self.ts.tzinfo else self.ts.replace(tzinfo=UTC)
        return Bar(self.symbol, ts.timestamp(), self.open, self.high, self.low, self.close, self.volume)


class EventIn(BaseModel):
    """A headline: its time (no zone = UTC), its symbol (none = market-wide), and its sentiment in [-1, 1]
    (none: scored with VADER, as the news_events asset does)."""

    model_config = ConfigDict(extra="forbid")
    ts: datetime
    headline: str = Field(min_length=1, max_length=2000)
    symbol: str | None = Field(None, min_length=1, max_length=32, pattern=SYMBOL_PATTERN)
    sentiment: float | None = Field(None, ge=-1, le=1, allow_inf_nan=False)

    _ts_in_range = field_validator("ts")(_bounded_ts)


BarsBody = BarIn | Annotated[list[BarIn], Field(min_length=1, max_length=MAX_BARS)]


class PredictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    windows: list[list[float]] = Field(min_length=1, max_length=MAX_WINDOWS)
    arm: Literal["champion", "challenger"] = "champion"


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


class BodyTooLarge(BaseException):
    """Raised from ``receive``: a BaseException so that FastAPI's body parsing (``except Exception`` -> 400)
    lets it through to :class:`BodyLimit`, which answers 413."""


class BodyLimit:
    """Refuse bodies over ``limit`` bytes with 413 (pure ASGI): at once from Content-Length, else (chunked
    uploads) as soon as the bytes received pass the limit."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and int(length) > self.limit:
            await _error(413, f"body of {int(length)} bytes is over the {self.limit} byte limit")(scope, receive, send)
            return
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except BodyTooLarge:
            await _error(413, f"body over the {self.limit} byte limit")(scope, receive, send)


def create_app(service: Any, *, trader: Any = None, start_background: bool = True) -> FastAPI:
    """The API over ``service`` (``/forecast``, ``/predict``, ``/health`` and the forecasts of ``/bars`` and
    ``/events`` are its target's); with ``trader``, one of whose services ``service`` is, bars and headlines go to
    every service of the trader and the trading routes answer intents."""
    metrics = ServiceMetrics()
    if trader is not None and not any(s is service for s in trader.services.values()):
        raise ValueError(f"{service.name} is not one of the trader's services {list(trader.services)}")
    runs = trader if trader is not None else service  # what starts and stops the background threads: every service

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_background:
            runs.start()
        yield
        runs.stop()

    app = FastAPI(title="tradecast forecast service", version="1", lifespan=lifespan,
                  description=f"Forecasts of {service.name} (h={service.h}, input {service.input_size}).")
    app.add_middleware(BodyLimit)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Any, exc: RequestValidationError) -> JSONResponse:
        """pydantic's 422 without the echoed input (a NaN in it would not even encode as JSON)."""
        detail = [{k: v for k, v in error.items() if k not in ("input", "ctx")} for error in exc.errors()]
        metrics.requests.labels("/" + request.url.path.strip("/").split("/")[0], "422").inc()
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(NoForecast)
    async def no_forecast(request: Any, exc: NoForecast) -> JSONResponse:
        """Neither the model nor its backup gave a finite number: 503 with the reason, never inf in JSON."""
        metrics.requests.labels("/" + request.url.path.strip("/").split("/")[0], "503").inc()
        return JSONResponse({"detail": str(exc)}, status_code=503)

    app.state.service, app.state.trader, app.state.metrics = service, trader, metrics

    def done(route: str, started: float, response: JSONResponse) -> JSONResponse:
        metrics.latency.labels(route).observe(time.perf_counter() - started)
        metrics.requests.labels(route, str(response.status_code)).inc()
        return response

    def served(forecasts: list) -> list[dict]:
        for fc in forecasts:
            metrics.forecasts.labels(fc.arm, fc.model_version, str(fc.fallback).lower()).inc()
        return [fc.to_dict(service.freq) for fc in forecasts]

    @app.post("/bars", summary="Append bars (one or a list, in time order per symbol)")
    async def post_bars(bars: BarsBody,
                        forecast: bool = Query(False, description="return the updated forecasts"),
                        decide: bool = Query(False, description="return the order intents of the symbols")) -> Response:
        started = time.perf_counter()
        if decide and trader is None:  # refused before any bar is taken
            return done("/bars", started, _error(409, NO_TRADER))
        items = bars if isinstance(bars, list) else [bars]
        batch = [item.to_bar() for item in items]
        intents = None
        if trader is not None and decide and not forecast:  # the whole tick in one call: ingest, forecast, decide
            refused, intents = trader.tick(batch)
        else:  # a run of distinct symbols at once per service, each bar as ingest() one after the other would take it
            refused = (trader if trader is not None else service).ingest_many(batch)
        why = dict(refused)
        rejected = [{"index": i, "symbol": items[i].symbol, "reason": str(exc)} for i, exc in refused]
        touched = list(dict.fromkeys(b.symbol for i, b in enumerate(batch) if i not in why))
        accepted = len(batch) - len(why)
        metrics.bars.inc(accepted)
        body: dict[str, Any] = {"accepted": accepted, "rejected": rejected}
        if forecast:
            ready = [s for s in touched if service.buffers.get(s).ready]
            body["forecasts"] = served(service.predictor.forecast_batch(ready)) if ready else []
        if decide:  # one forecast batch per service (the one above is reused from the cache), one decision
            if intents is None:
                intents = trader.decide(touched) if touched else []
            body["intents"] = [intent.to_dict() for intent in intents]
        return done("/bars", started, JSONResponse(body, status_code=200 if accepted or not rejected else 409))

    @app.post("/events", summary="A headline: update the event features, return the updated forecasts")
    async def post_event(event: EventIn) -> Response:
        started = time.perf_counter()
        if any(s.exog is None for s in (trader.services.values() if trader is not None else [service])):
            return done("/events", started, _error(409, "this service runs without event features"))
        if event.symbol is not None and event.symbol not in (trader if trader is not None else service.buffers):
            return done("/events", started, _error(404, f"unknown symbol {event.symbol!r}: no bar of it has been "
                                                        "seen (omit symbol for a market-wide headline)"))
        ts = event.ts if event.ts.tzinfo else event.ts.replace(tzinfo=UTC)
        intents = None
        try:
            if trader is None:
                sentiment, forecasts = service.post_event(ts.timestamp(), event.headline, event.symbol,
                                                          event.sentiment)
            else:  # every service's event state, then the intents of the affected symbols
                sentiment, by_target, intents = trader.post_event(ts.timestamp(), event.headline, event.symbol,
                                                                  event.sentiment)
                forecasts = by_target[service.config.target]
        except LateEvent as exc:  # a late headline whose rows cannot be recomputed exactly: nothing was changed
            return done("/events", started, _error(409, str(exc)))
        readers = [a for a, g in service.arms().items() if getattr(g.primary, "needs_exog", False)]
        body = {"sentiment": sentiment, "arms_reading_events": readers, "forecasts": served(forecasts)}
        if intents is not None:
            body["intents"] = [intent.to_dict() for intent in intents]
        return done("/events", started, JSONResponse(body))

    @app.get("/forecast/{symbol}", summary="The current forecast of one symbol")
    async def get_forecast(symbol: str) -> Response:
        started = time.perf_counter()
        try:
            body = served([service.predictor.forecast(symbol)])[0]
        except UnknownSymbol:
            return done("/forecast", started, _error(404, f"unknown symbol {symbol!r}: no bar of it has been seen"))
        except NotReady as exc:
            return done("/forecast", started, _error(409, str(exc)))
        return done("/forecast", started, JSONResponse(body))

    @app.post("/predict", summary="Forecast a batch of raw windows (each exactly input_size finite values)")
    async def predict(payload: PredictIn) -> Response:
        started = time.perf_counter()
        for i, window in enumerate(payload.windows):
            if len(window) != service.input_size:
                return done("/predict", started, _error(
                    422, f"windows[{i}]: {len(window)} values, the model needs exactly {service.input_size}"))
            bad = next((j for j, v in enumerate(window) if not math.isfinite(v) or abs(v) > MAX_ABS_VALUE), None)
            if bad is not None:
                return done("/predict", started, _error(
                    422, f"windows[{i}][{bad}]: {window[bad]!r} is not a finite number of magnitude "
                         f"<= {MAX_ABS_VALUE:g}"))
        arms = service.arms()
        if getattr(arms.get(payload.arm, arms["champion"]).primary, "needs_exog", False):
            return done("/predict", started, _error(409, f"the {payload.arm} reads event features, which raw windows "
                                                         "do not carry: use GET /forecast/{symbol}"))
        values, used = service.predict_windows(np.asarray(payload.windows, dtype=np.float32), payload.arm)
        names = list(used.output_names)
        body = {"model": used.label, "model_version": used.info.version, "output_names": names,
                "forecast": values.astype(np.float64).round(8).tolist()}
        return done("/predict", started, JSONResponse(body))

    @app.get("/health", summary="Models, breakers, buffers, live error")
    async def health() -> Response:
        return JSONResponse({**service.health(), **({"trading": trader.status()} if trader is not None else {})})

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(service), media_type=CONTENT_TYPE_LATEST)

    app.include_router(trading_router(trader, done))
    return app
