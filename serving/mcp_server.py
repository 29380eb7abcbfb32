"""The MCP server (`tradecast mcp`): the trading platform's agents ask it for forecasts, signals, models and
backtests over the Model Context Protocol (stdio, or streamable HTTP on 127.0.0.1).

This module is the SDK wiring only: the tools, the model-card resource template and the transports. What they answer
(and every error message) is `serving.mcp_answers.Answers`. Plain code: mcp is imported where it is used."""

import contextlib
import threading
from typing import Annotated, Any  # no `from __future__ import annotations`: the SDK reads the tools' hints

from domain.vocabulary import ASSET_CLASSES, TARGETS
from serving.mcp_answers import LOCK_WAIT_S, MODEL_URI, Answers, QueryError

HOST = "127.0.0.1"  # no authentication: never reachable from another machine


def _text(field: str, allowed: tuple[str, ...] | None = None):
    """An argument's schema: described, and listing the allowed values (checked by the tool, not pydantic, so a
    wrong value is answered in the tool's words)."""
    from pydantic import Field

    return Field(description=field, json_schema_extra={"enum": list(allowed)} if allowed else None)


def build_server(answers: Answers):
    """The `MCPServer` with the four read-only tools and the model-card resource template."""
    from importlib.metadata import PackageNotFoundError, version

    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
    from mcp_types import ToolAnnotations

    from storage.duck import StorageError

    release = ""
    with contextlib.suppress(PackageNotFoundError):
        release = version("tradecast")
    server = MCPServer("tradecast", version=release, log_level="WARNING", instructions=(
        "Forecasts, trading signals, registered models and backtests of tradecast (NHITS champions per asset class "
        "and target, orchestrated by Dagster). Read-only. Start with list_models; model cards are resources "
        "model://nhits-<asset_class>-<target>."))
    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

    def answer(fn, *args):
        try:
            return fn(*args)
        except (StorageError, ValueError) as exc:  # QueryError, and `check_member` naming the argument
            raise ToolError(str(exc)) from None

    symbol_arg = _text("ticker or pair as stored, e.g. BTCUSDT")
    class_arg = _text("asset class; needed only when the symbol is in several", ASSET_CLASSES)

    @server.tool(annotations=read_only)
    def get_forecast(symbol: Annotated[str, symbol_arg],
                     target: Annotated[str, _text("what is forecast: the close or the per-bar volatility", TARGETS)],
                     asset_class: Annotated[str | None, class_arg] = None) -> dict[str, Any]:
        """The current champion's latest forecast of one symbol: per step ds, yhat and the 80% interval lo/hi, with
        the model name, version, kind (nhits / ensemble / baseline) and when it was made."""
        return answer(answers.forecast, symbol, target, asset_class)

    @server.tool(annotations=read_only)
    def get_signal(symbol: Annotated[str, symbol_arg],
                   asset_class: Annotated[str | None, class_arg] = None) -> dict[str, Any]:
        """The newest target position of each strategy for one symbol (driven by the champion models' forecasts):
        position, the previous bar's position and the change (the trade), vol_hat, mu, model versions, params."""
        return answer(answers.signal, symbol, asset_class)

    @server.tool(annotations=read_only)
    def list_models() -> dict[str, Any]:
        """Every registered model nhits-<asset_class>-<target>: versions with kind, aliases (champion, challenger,
        previous_champion), the latest promotion-gate decisions, and the URI of its model card."""
        return answer(answers.models)

    @server.tool(annotations=read_only)
    def backtest_summary(asset_class: Annotated[str, _text("asset class", ASSET_CLASSES)]) -> dict[str, Any]:
        """The walk-forward backtest of one asset class after costs: per strategy and signal source the annualised
        return and vol, Sharpe, Sortino, max drawdown, turnover, hit rate, total return, cost drag and period."""
        return answer(answers.backtest, asset_class)

    @server.resource(MODEL_URI, name="model_card", mime_type="text/markdown",
                     description="Model card: versions, aliases, the champion's evaluation, the last gate decision.")
    def model_card(asset_class: str, target: str) -> str:
        uri = MODEL_URI.format(asset_class=asset_class, target=target)
        try:
            return answers.model_card(asset_class, target)
        except (QueryError, StorageError) as exc:  # the data cannot answer (yet)
            raise ResourceError(f"{uri}: {exc}") from None
        except ValueError as exc:  # `check_member`: no such model
            raise ResourceNotFoundError(f"{uri}: {exc}") from None

    return server


def serve(http: bool = False, port: int = 8765, host: str = HOST, home: str | None = None,
          lock_wait_s: float = LOCK_WAIT_S) -> None:
    """Run the server until stdin closes (stdio) or it is stopped (HTTP, on 127.0.0.1 only)."""
    if http and host != HOST:
        raise ValueError(f"the MCP server binds to {HOST} only (it has no authentication), got host {host!r}")
    answers = Answers(home, lock_wait_s)
    if answers.registry() is not None:  # mlflow's import is slow: done while the first requests are answered
        threading.Thread(target=lambda: __import__("mlflow"), daemon=True).start()
    server = build_server(answers)
    if http:
        server.run("streamable-http", host=HOST, port=port)
    else:
        server.run("stdio")
