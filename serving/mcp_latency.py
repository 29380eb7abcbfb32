"""Latency of the MCP tools as an agent sees it: the real `tradecast mcp` over stdio, through the SDK's client.

`make bench-trading` reports it beside the trading benchmark. Arguments are taken from what the warehouse holds
(the newest forecast's symbol, a champion signal's symbol, a backtested class), so each call does the work an agent's
would; a tool with no data to answer is still timed (its error path) and its errors are counted. The first call of
each tool (imports, the MLflow client) is left out."""

import os
import sys
import time
from typing import Any

from domain.vocabulary import ASSET_CLASSES, CHAMPION_SOURCE, TARGETS
from serving.latency import latency_summary
from serving.mcp_answers import Answers, QueryError

TOOLS = ("get_forecast", "get_signal", "list_models", "backtest_summary")


def tool_arguments(answers: Answers) -> dict[str, dict[str, Any]]:
    """One realistic set of arguments per tool from the warehouse (placeholders where a table is empty)."""
    found: dict[str, Any] = {}
    queries = {
        "forecast": ("forecasts", "SELECT asset_class, target, symbol FROM forecasts ORDER BY created_at DESC, "
                     "symbol LIMIT 1", []),
        "signal": ("signals", "SELECT asset_class, symbol FROM signals WHERE source = ? ORDER BY ds DESC, symbol "
                   "LIMIT 1", [CHAMPION_SOURCE]),
        "backtest": ("backtest_results", "SELECT asset_class FROM backtest_results ORDER BY asset_class LIMIT 1", []),
    }
    with answers.warehouse() as q:
        for key, (table, sql, params) in queries.items():
            try:
                rows = q(table, sql, params)
            except QueryError:  # an older warehouse without the table: time the error path
                continue
            if not rows.empty:
                found[key] = rows.iloc[0].to_dict()
    forecast = found.get("forecast", {"asset_class": ASSET_CLASSES[0], "target": TARGETS[0], "symbol": "?"})
    signal = found.get("signal", {"asset_class": ASSET_CLASSES[0], "symbol": "?"})
    return {"get_forecast": dict(forecast), "get_signal": dict(signal), "list_models": {},
            "backtest_summary": {"asset_class": found.get("backtest", {}).get("asset_class", ASSET_CLASSES[0])}}


async def _measure(repeats: int, answers: Answers, timeout_s: float) -> dict[str, dict[str, Any]]:
    import anyio
    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters

    from storage.home import PROJECT_ROOT, TRACKING_URI_ENV

    arguments = tool_arguments(answers)
    env = {"TRADECAST_HOME": str(answers.root),
           **{k: os.environ[k] for k in (TRACKING_URI_ENV, "PYTHONPATH") if os.environ.get(k)}}
    server = StdioServerParameters(command=sys.executable, args=["-m", "pipelines.cli", "mcp"], env=env,
                                   cwd=str(PROJECT_ROOT))
    out: dict[str, dict[str, Any]] = {}
    with anyio.fail_after(timeout_s):
        async with Client(server, cache=None, read_timeout_seconds=timeout_s) as client:
            for tool in TOOLS:
                await client.call_tool(tool, arguments[tool])  # warm-up, not timed
                times, errors = [], 0
                for _ in range(repeats):
                    start = time.perf_counter()
                    result = await client.call_tool(tool, arguments[tool])
                    times.append((time.perf_counter() - start) * 1000)
                    errors += bool(result.is_error)
                out[tool] = latency_summary(times, calls=repeats, errors=errors, arguments=arguments[tool])
    return out


def measure_tool_latency(repeats: int = 30, home: str | None = None, timeout_s: float = 300.0) -> dict[str, dict]:
    """{tool: {"p50_ms", "p99_ms", "calls", "errors", "arguments"}} over ``repeats`` calls of each tool against a
    `tradecast mcp` subprocess on the home (``$TRADECAST_HOME`` by default), all within ``timeout_s``."""
    import anyio

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1 (got {repeats})")
    return anyio.run(_measure, repeats, Answers(home), timeout_s)
