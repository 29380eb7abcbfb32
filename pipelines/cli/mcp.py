"""`tradecast mcp`: the MCP server the trading platform's agents query (`serving.mcp_server`)."""

from __future__ import annotations

import click


@click.command("mcp")
@click.option("--http", is_flag=True, help="Streamable HTTP (http://127.0.0.1:PORT/mcp) instead of stdio.")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="HTTP port (with --http; default 8765).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Bind address: 127.0.0.1 only (the server has no authentication); any other is refused.")
@click.option("--lock-wait", type=click.FloatRange(0, 120), default=5.0, show_default=True,
              help="Seconds a read waits while a Dagster run holds the warehouse's write lock, then fails.")
def mcp(http: bool, port: int | None, host: str, lock_wait: float) -> None:
    """Serve forecasts, signals, models and backtests over the Model Context Protocol (stdio by default)."""
    from serving.mcp_server import HOST, serve

    if host != HOST:
        raise click.BadParameter(f"the MCP server binds to {HOST} only (it has no authentication), got {host!r}",
                                 param_hint="--host")
    if port is not None and not http:
        raise click.UsageError("--port needs --http (stdio has no port)")
    serve(http=http, port=port or 8765, lock_wait_s=lock_wait)
