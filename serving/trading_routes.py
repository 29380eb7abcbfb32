"""The trading routes of the HTTP API (an APIRouter that ``serving.app.create_app`` includes):
``GET /signal/{symbol}`` (one symbol's order intent), ``POST /positions`` (set current holdings) and
``GET /positions``. ``POST /bars?decide=true`` and ``POST /events`` answer intents too, in ``serving.app``. A service
started without a trader (one target's forecasts, no decision rule) answers every trading request with 409 and says
how to start one."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from serving.decisions import MAX_POSITION, NoPosition

SYMBOL_PATTERN = r"^[A-Za-z0-9._:/^-]+$"
MAX_POSITIONS = 10_000  # symbols in one POST /positions (the service's default max_symbols)
NO_TRADER = ("this service runs without a trader (forecasts of one target only, no decision rule): start it with "
             "`tradecast serve --decide` (the volatility and close models of the class) for order intents")

Symbol = Annotated[str, Field(min_length=1, max_length=32, pattern=SYMBOL_PATTERN)]
Position = Annotated[float, Field(ge=-MAX_POSITION, le=MAX_POSITION, allow_inf_nan=False)]


class PositionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    symbol: Symbol
    position: Position


PositionsBody = (Annotated[dict[Symbol, Position], Field(min_length=1, max_length=MAX_POSITIONS)]
                 | Annotated[list[PositionIn], Field(min_length=1, max_length=MAX_POSITIONS)])


def error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def trading_router(trader: Any, done: Callable[[str, float, JSONResponse], JSONResponse]) -> APIRouter:
    """The routes over ``trader`` (``serving.decisions.Trader``, or None: 409 everywhere); ``done(route, started,
    response)`` records the request's latency and status in the app's metrics."""
    router = APIRouter(tags=["trading"])

    @router.get("/signal/{symbol}", summary="The order intent of one symbol for the bar ahead")
    async def get_signal(symbol: str) -> Response:
        started = time.perf_counter()
        if trader is None:
            return done("/signal", started, error(409, NO_TRADER))
        if symbol not in trader:
            return done("/signal", started, error(404, f"unknown symbol {symbol!r}: no bar of it has been seen"))
        [intent] = trader.decide([symbol])
        if not intent.ready:
            return done("/signal", started, error(409, intent.reason))
        return done("/signal", started, JSONResponse(intent.to_dict()))

    @router.post("/positions", summary="Set current holdings ({symbol: position} or [{symbol, position}])")
    async def post_positions(body: PositionsBody) -> Response:
        started = time.perf_counter()
        if trader is None:
            return done("/positions", started, error(409, NO_TRADER))
        if isinstance(body, list):
            seen: dict[str, int] = {}
            for i, item in enumerate(body):
                if item.symbol in seen:
                    return done("/positions", started, error(
                        422, f"[{i}]: {item.symbol} is given twice (first at [{seen[item.symbol]}])"))
                seen[item.symbol] = i
            body = {item.symbol: item.position for item in body}
        try:
            stored = trader.set_positions(body)
        except NoPosition as exc:  # within the body's bound, beyond this trader's max_position
            return done("/positions", started, error(422, str(exc)))
        return done("/positions", started, JSONResponse({"updated": len(body), "positions": stored}))

    @router.get("/positions", summary="The current holdings (symbols never set hold 0)")
    async def get_positions() -> Response:
        started = time.perf_counter()
        if trader is None:
            return done("/positions", started, error(409, NO_TRADER))
        return done("/positions", started, JSONResponse({"positions": trader.set_positions({})}))

    return router
