"""`tradecast serve`, `tradecast replay` and `tradecast bench-serve`: the real-time forecast service."""

from __future__ import annotations

import json

import click

from domain.vocabulary import ASSET_CLASSES, STRATEGIES, TARGETS

# the decision rule's parameters (trading.signals.SignalParams): option name, field, help; each option's default is
# the dataclass's, read when the command runs (importing trading.signals would load pandas for every command)
SIGNAL_OPTIONS = (
    ("--target-vol", "target_vol", "Annualised volatility target."),
    ("--leverage-cap", "leverage_cap", "Largest |position| (1 = fully invested)."),
    ("--cost-bps", "cost_bps", "Commission per unit of turnover, basis points."),
    ("--slippage-bps", "slippage_bps", "Half-spread and impact per unit of turnover, basis points."),
    ("--band-multiple", "band_multiple", "No-trade band on |expected return|, in round trips' costs."),
)


def _signal_default(name: str):
    def default() -> float:
        from trading.signals import SignalParams

        return getattr(SignalParams, name)
    return default


def _service(asset_class: str, target: str, challenger_share: float, split: str, variant: str, threads: int,
             fail_max: int, reset_timeout: float, poll: float, warm: bool):
    from serving.service import ForecastService, ServiceConfig, ServiceError
    from storage.duck import StorageError, reading
    from storage.home import warehouse_path

    config = ServiceConfig(asset_class=asset_class, target=target, challenger_share=challenger_share,
                           split_mode=split, variant=variant, threads=threads, fail_max=fail_max,
                           reset_timeout_s=reset_timeout, poll_s=poll, warm=warm)
    try:
        with reading(warehouse_path(config.home)):  # start-up reads the warehouse: a damaged one is named
            return ForecastService(config)
    except (ServiceError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None


def service_options(func):
    for option in reversed([
        click.option("--asset-class", type=click.Choice(ASSET_CLASSES), default="crypto", show_default=True),
        click.option("--target", type=click.Choice(TARGETS), default="close", show_default=True),
        click.option("--challenger-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
                     help="A/B: share of traffic for the challenger (alias `challenger`)."),
        click.option("--split", type=click.Choice(["symbol", "request"]), default="symbol", show_default=True,
                     help="A/B by a stable hash of the symbol, or per request."),
        click.option("--variant", type=click.Choice(["auto", "fp32", "int8"]), default="auto", show_default=True,
                     help="auto: INT8 where the export offers it (MAE within 1% of fp32), else fp32."),
        click.option("--threads", type=int, default=1, show_default=True, help="ONNX Runtime intra-op threads."),
        click.option("--fail-max", type=int, default=5, show_default=True,
                     help="Consecutive primary failures that open the circuit breaker."),
        click.option("--reset-timeout", type=float, default=30.0, show_default=True,
                     help="Seconds the breaker stays open before a half-open probe."),
        click.option("--poll", type=float, default=10.0, show_default=True,
                     help="Seconds between registry alias checks (hot swap)."),
    ]):
        func = option(func)
    return func


def signal_options(func):
    for flag, name, text in reversed(SIGNAL_OPTIONS):
        func = click.option(flag, name, type=float, default=_signal_default(name),
                            show_default=f"SignalParams.{name}", help=f"--decide: {text}")(func)
    return func


def _trader(services: dict, strategy: str | None, params: dict):
    from serving.decisions import Trader
    from trading.signals import SignalParams

    try:
        return Trader(services["volatility"], services["close"], strategy=strategy, params=SignalParams(**params))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@service_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback unless told).")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--cold", is_flag=True, help="Start with empty buffers (e.g. to replay history over HTTP).")
@click.option("--decide", is_flag=True,
              help="Order intents: serve the volatility and the close model of the class and the decision rule "
                   "(POST /bars?decide=true, GET /signal/{symbol}, POST /positions); --target picks the service "
                   "behind /forecast and /predict.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default=None,
              help="--decide: the decision rule [default: vol_target_directional].")
@signal_options
def serve(asset_class, target, challenger_share, split, variant, threads, fail_max, reset_timeout, poll, host, port,
          cold, decide, strategy, **params) -> None:
    """Serve forecasts of the registered champion over HTTP (ONNX Runtime); with --decide, order intents too."""
    import uvicorn

    from serving.app import create_app

    services = {t: _service(asset_class, t, challenger_share, split, variant, threads, fail_max, reset_timeout, poll,
                            not cold) for t in (TARGETS if decide else (target,))}
    trader = _trader(services, strategy, params) if decide else None
    for service in services.values():
        click.echo(f"serving {service.name}: " + ", ".join(f"{a}={g.primary.label}"
                                                          for a, g in service.arms().items())
                   + f"; {len(service.buffers)} symbols warm")
    if trader is not None:
        click.echo(f"deciding {trader.strategy} ({trader.params})")
    click.echo(f"http://{host}:{port}/docs")
    uvicorn.run(create_app(services[target], trader=trader), host=host, port=port, log_level="warning",
                access_log=False)


@click.command()
@click.option("--asset-class", type=click.Choice(ASSET_CLASSES), default="crypto", show_default=True)
@click.option("--target", type=click.Choice(TARGETS), default="close", show_default=True)
@click.option("--speed", type=float, default=100.0, show_default=True,
              help="Market time / wall time (100: a 5-minute bar every 3 s); 0: as fast as possible.")
@click.option("--bars", "n_bars", type=int, default=200, show_default=True, help="Bars per symbol to stream.")
@click.option("--url", default=None, help="A running `tradecast serve --cold` (default: in process).")
@click.option("--challenger-share", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--csv", "csv_path", default=None, help="Replay this canonical bar file instead of the warehouse.")
def replay(asset_class, target, speed, n_bars, url, challenger_share, csv_path) -> None:
    """Stream bars in time order into the service; report tick -> forecast latency (p50 / p99)."""
    from serving.replay import HttpSink, ServiceSink, csv_ticks, warehouse_ticks
    from serving.replay import replay as run_replay

    if url:
        import httpx

        try:
            health = httpx.get(url.rstrip("/") + "/health", timeout=5).json()
        except httpx.HTTPError as exc:
            raise click.ClickException(f"{url}: no service answers ({exc})") from None
        sink, input_size, service = HttpSink(url), health["input_size"], None
    else:
        service = _service(asset_class, target, challenger_share, "symbol", "auto", 1, 5, 30.0, 3600.0, False)
        sink, input_size = ServiceSink(service), service.input_size
    ticks = csv_ticks(csv_path) if csv_path else warehouse_ticks(asset_class, last=input_size + n_bars)
    try:
        stats = run_replay(sink, ticks, speed=speed, warmup_ticks=0 if csv_path else input_size)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    if service is not None:
        service.stop()  # writes the live metrics
        click.echo(json.dumps({"live": service.live.summary()}, indent=1))
    click.echo(json.dumps(stats.to_dict(), indent=1))


@click.command("bench-serve")
@click.option("--duration", type=float, default=20.0, show_default=True, help="Seconds of HTTP load.")
@click.option("--clients", type=int, default=50, show_default=True, help="Concurrent HTTP clients.")
@click.option("--name", default=None, help="Result file name (default serve-<cpu|cuda>).")
@click.option("--out", default="benchmarks/results", show_default=True, type=click.Path(file_okay=False))
@click.option("--only", type=click.Choice(["all", "accuracy"]), default="all", show_default=True,
              help="accuracy: only the fast paths' accuracy on post-training windows (-> serve-accuracy-<device>).")
def bench_serve(duration: float, clients: int, name: str | None, out: str, only: str) -> None:
    """Latency of every inference path side by side, HTTP under load, and replay (crypto hft model)."""
    from pipelines.cli.serve_bench import run_serving_benchmark

    run_serving_benchmark(duration=duration, clients=clients, name=name, out=out, only=only, echo=click.echo)
