"""The `tradecast` command (`pipelines.cli:main`, or `python -m pipelines.cli`): the click group and its commands.

Each command family is a module of its own that defines plain click commands and shares `pipelines.cli.runner`
(running a job of the code location); only this group registers them:

- `pipeline`: run, ingest
- `bench`: bench (the benchmark comparison)
- `events`: bench-events (the event ablation)
- `serve`: serve, replay, bench-serve (with `serve_bench`, the serving benchmark)
- `trading`: bench-trading (bar -> intent latency, MCP latency, the backtest table)
- `mcp`: mcp (the MCP server)
- `quality`: quality (every model on the same windows, the gate's DM p-values -> benchmarks/results/quality-*)
"""

from __future__ import annotations

import click

from pipelines.cli import (  # modules, so `pipelines.cli.bench` stays the module
    bench,
    events,
    gpu_check,
    mcp,
    pipeline,
    quality,
    scale,
    serve,
    trading,
)


@click.group()
def main() -> None:
    """tradecast: market data, NHITS forecasts and their evaluation, orchestrated by Dagster."""


for _command in (pipeline.run, pipeline.ingest, bench.bench, events.bench_events, serve.serve, serve.replay,
                 serve.bench_serve, quality.quality, gpu_check.gpu_check, scale.tune, scale.bench_scale,
                 scale.ray_stop, mcp.mcp, trading.bench_trading):
    main.add_command(_command)
