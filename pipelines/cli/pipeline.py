"""`tradecast run` and `tradecast ingest`: the whole pipeline on the catalog's data, or one file registered as a
source and loaded; both end with summary tables read from the warehouse."""

from __future__ import annotations

import click
from tabulate import tabulate

from domain.vocabulary import ASSET_CLASSES, BASELINES, BENCHMARK_MODELS, TARGETS
from pipelines.cli.runner import run_job
from pipelines.registration import register_file


def _ingest_config(max_rows: int | None, assets: list[str]) -> dict:
    if not max_rows:
        return {}
    return {"ops": {a: {"config": {"max_rows_per_source": max_rows}} for a in assets}}


def _print_loads(sources: list[str] | None = None) -> None:
    from resources import Settings, Warehouse

    where, params = ("WHERE list_contains(?, source)", [sources]) if sources else ("", [])
    loads = Warehouse(settings=Settings()).query(
        f"""SELECT table_name AS "table", coalesce(asset_class, '-') AS class, source, rows_read AS read,
                   rows_accepted AS accepted, rows_quarantined AS quarantined FROM source_loads {where}
            ORDER BY table_name, class, source""", params)
    click.echo(loads.to_markdown(index=False))
    click.echo(f"\ntotal: read {loads.read.sum()}, accepted {loads.accepted.sum()}, "
               f"quarantined {loads.quarantined.sum()} (read = accepted + quarantined for every source)")


def _print_models() -> None:
    """Per class and target: every model scored on the newest NHITS version's test windows (the gate's loss first),
    then each partition's latest gate decision with its DM p-values."""
    from resources import Settings, Warehouse

    wh = Warehouse(settings=Settings())
    evals = wh.query("""
        WITH latest AS (SELECT model_name, max(evaluated_at) AS at FROM model_evaluations GROUP BY ALL)
        SELECT e.asset_class AS class, e.target, e.version, e.model, e.model_family AS family,
               CASE WHEN e.target = 'volatility' THEN e.qlike ELSE e.mase END AS gate_loss, e.mase, e.qlike, e.mae,
               e.crps, e.n_series, e.n_windows, e.n_points
        FROM model_evaluations e JOIN latest l ON e.model_name = l.model_name AND e.evaluated_at = l.at
        ORDER BY class, target, gate_loss NULLS LAST""")
    decisions = wh.query("""
        SELECT asset_class AS class, target, version, decision, metric, round(challenger_score, 4) AS challenger,
               best_baseline, round(best_baseline_score, 4) AS baseline, round(p_value_baseline, 4) AS p_baseline,
               champion_version AS vs_champion, round(champion_score, 4) AS champion,
               round(p_value_champion, 4) AS p_champion, n_windows AS windows, reason
        FROM model_promotions p WHERE decision IN ('promoted', 'refused')
        QUALIFY row_number() OVER (PARTITION BY model_name ORDER BY decided_at DESC) = 1 ORDER BY class, target""")
    click.echo(evals.round(5).to_markdown(index=False))
    click.echo("\nPromotion decisions (latest per model; one-sided Diebold-Mariano p-values, HLN-corrected)\n")
    click.echo(decisions.to_markdown(index=False))


def _print_backtest() -> None:
    """Per class: each strategy on the champion's forecasts beside buy-and-hold and perfect foresight."""
    from resources import Settings, Warehouse

    table = Warehouse(settings=Settings()).query("""
        SELECT asset_class AS class, strategy, source, round(ann_return, 4) AS ann_return, round(ann_vol, 4) AS ann_vol,
               round(total_return, 4) AS total_return, round(sharpe, 2) AS sharpe, round(max_drawdown, 4) AS max_dd,
               round(turnover, 1) AS turnover, round(hit_rate, 3) AS hit_rate, round(cost_drag, 4) AS cost_drag,
               n_bars AS bars
        FROM backtest_results ORDER BY class, strategy = 'buy_and_hold' DESC, strategy, source""")
    click.echo(table.to_markdown(index=False))


def _print_benchmark() -> None:
    """Per data set of the latest quick benchmark: MASE of each model and its training time relative to NHITS."""
    from resources import Settings, Warehouse

    table = Warehouse(settings=Settings()).query("""
        WITH latest AS (SELECT asset_class, max(created_at) AS at FROM benchmark_results GROUP BY ALL),
             r AS (SELECT b.* FROM benchmark_results b JOIN latest l ON b.asset_class = l.asset_class
                   AND b.created_at = l.at),
             n AS (SELECT dataset, train_seconds AS nt FROM r WHERE model = 'nhits')
        SELECT dataset, model, round(mase, 3) AS mase, round(naive_mase_same_windows, 3) AS naive_mase,
               CASE WHEN kind = 'neural' THEN round(train_seconds / nt, 2) END AS train_x_nhits,
               CASE WHEN capped THEN 'capped' ELSE '' END AS note
        FROM r JOIN n USING (dataset) ORDER BY dataset, kind DESC, model""")
    order = [m for m in (*BENCHMARK_MODELS, *BASELINES) if m in set(table.model)]
    wide = table.pivot_table(index="dataset", columns="model", values="mase", sort=False)
    click.echo(wide[order].round(3).to_markdown())
    ratios = table[table.train_x_nhits.notna()].pivot_table(index="dataset", columns="model", values="train_x_nhits")
    click.echo("\nTraining seconds relative to NHITS (same steps; capped models stopped early)\n")
    click.echo(ratios[[m for m in BENCHMARK_MODELS if m in ratios.columns]].round(2).to_markdown())


@click.command()
@click.option("--asset-class", "asset_classes", multiple=True, type=click.Choice(ASSET_CLASSES),
              help="Only these asset classes (default: all).")
@click.option("--max-rows", type=int, default=None, help="Read only the first N rows of each file (quick demo).")
@click.option("--profile", type=click.Choice(["quick", "full"]), default="quick", show_default=True,
              help="Training budget: quick (minutes on a laptop) or full.")
@click.option("--steps", type=int, default=None, help="Override the profile's training steps.")
def run(asset_classes: tuple[str, ...], max_rows: int | None, profile: str, steps: int | None) -> None:
    """Run the whole pipeline on the catalog's data and print a summary (the local Ray head it starts for the
    trainings is stopped at the end; an existing cluster given by $RAY_ADDRESS is left alone)."""
    from compute.cluster import stop_local_head

    try:
        _run(asset_classes, max_rows, profile, steps)
    finally:
        import sys

        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
        stop_local_head()


def _run(asset_classes: tuple[str, ...], max_rows: int | None, profile: str, steps: int | None) -> None:
    checks = []
    for asset_class in asset_classes or ASSET_CLASSES:
        click.echo(f"ingest_job [{asset_class}] ...")
        checks += run_job("ingest_job", asset_class, _ingest_config(max_rows, ["market_bars"]))
    click.echo("events_job ...")
    checks += run_job("events_job", run_config=_ingest_config(max_rows, ["news_events", "macro_events"]))
    for asset_class in asset_classes or ASSET_CLASSES:
        click.echo(f"event_features_job [{asset_class}] ...")
        checks += run_job("event_features_job", asset_class)
    import dagster as dg

    train_config = {"ops": {"nhits_model": {"config": {"profile": profile, **({"max_steps": steps} if steps else {})}}}}
    for asset_class in asset_classes or ASSET_CLASSES:
        for target in TARGETS:
            key = dg.MultiPartitionKey({"asset_class": asset_class, "target": target})
            click.echo(f"train_job + forecast_job + export_job [{asset_class}|{target}] ...")
            checks += run_job("train_job", key, train_config)
            checks += run_job("forecast_job", key)
            checks += run_job("export_job", key)
    for asset_class in asset_classes or ASSET_CLASSES:
        click.echo(f"trading_job [{asset_class}] (signals + backtest_report) ...")
        checks += run_job("trading_job", asset_class)
    click.echo("\nRows per source\n")
    _print_loads()
    click.echo("\nAsset checks\n")
    click.echo(tabulate(checks, headers=["check", "partition", "result"], tablefmt="pipe"))
    for asset_class in asset_classes or ASSET_CLASSES:
        click.echo(f"benchmark_job [{asset_class}] (quick) ...")
        checks += run_job("benchmark_job", asset_class)
    click.echo("\nModels on the same test windows after the training period (gate loss: QLIKE for volatility, MASE "
               "for close; MASE < 1 beats the in-sample naive)\n")
    _print_models()
    click.echo("\nBacktest of the champions' forecasts over their test bars, after costs (backtest_report)\n")
    _print_backtest()
    click.echo("\nBenchmark, quick profile (full tables: the benchmark_report asset, or `make bench`)\n")
    _print_benchmark()
    if "crypto" in (asset_classes or ASSET_CLASSES):
        _print_serving()


def _print_serving() -> None:
    """Replay the last crypto bars through the forecast service (in process, champion vs challenger 50/50),
    then summarize the live error with `live_ab_report`."""
    from serving.replay import ServiceSink, replay, warehouse_ticks
    from serving.service import ForecastService, ServiceConfig

    click.echo("\nForecast service: replay of the last 200 crypto 5-min bars per symbol (ONNX Runtime, in process, "
               "A/B 50/50)\n")
    for target in TARGETS:
        service = ForecastService(ServiceConfig(asset_class="crypto", target=target, challenger_share=0.5,
                                                warm=False))
        stats = replay(ServiceSink(service), warehouse_ticks("crypto", last=service.input_size + 200),
                       warmup_ticks=service.input_size)
        service.stop()
        arms = ", ".join(f"{a}={g.primary.label}" for a, g in service.arms().items())
        click.echo(f"crypto|{target}: {stats.ticks} ticks, tick -> forecast p50 {stats.p50_ms:.2f} ms, p99 "
                   f"{stats.p99_ms:.2f} ms; {arms}")
    run_job("live_report_job")
    from resources import Settings, Warehouse
    from serving.live import ab_summary

    table = ab_summary(Warehouse(settings=Settings()).query("SELECT * FROM live_metrics"))
    click.echo("\nLive error per arm (live_ab_report)\n")
    click.echo(table[["model_name", "arm", "model_version", "model_kind", "steps", "mae", "mase",
                      "mase_vs_champion"]].round(4).to_markdown(index=False))


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--asset-class", type=click.Choice(ASSET_CLASSES), help="Asset class of a bar file.")
@click.option("--freq", default=None,
              help="Bar frequency, whole minutes up to a day: 1min, 15min, 30min, 4h, 1d, ... (default: inferred "
                   "from the timestamps; a --freq they contradict is refused).")
@click.option("--table", type=click.Choice(["bars", "news_events"]), default="bars", show_default=True)
@click.option("--map", "mapping", default="", help="Column mapping canonical=file, e.g. ts=Date,close=Close.")
@click.option("--symbol", default=None, help="Symbol for every row (a file with one instrument).")
@click.option("--ts-format", default=None, help="strptime format of the timestamps, or 'epoch'.")
@click.option("--timezone", default="UTC", show_default=True, help="Time zone of naive timestamps.")
@click.option("--name", default=None,
              help="Source name: 1-64 lowercase letters, digits, '_' or '-' (default: user_<file stem>).")
@click.option("--trades", is_flag=True, default=False,
              help="FILE holds trades (ts,symbol,price,amount): aggregate them into OHLCV bars of --bar.")
@click.option("--bar", default=None, help="Bar frequency built from --trades, e.g. 1min, 5min, 1h.")
def ingest(file: str, asset_class: str | None, freq: str | None, table: str, mapping: str, symbol: str | None,
           ts_format: str | None, timezone: str, name: str | None, trades: bool, bar: str | None) -> None:
    """Register FILE as a source and load it (its whole partition is reloaded atomically).

    The file is copied under $TRADECAST_HOME/sources/ with its catalog entry, so later runs and the
    UI see it too. Canonical columns: ts,symbol,open,high,low,close,volume (bars), ts,symbol,price,amount
    (--trades) or ts,symbol,headline (news). Your rows win over bundled rows with the same
    (asset_class, symbol, freq, ts).
    """
    from ingest.catalog import CatalogError
    from ingest.readers import SourceFileError

    try:
        spec = register_file(file, table=table, asset_class=asset_class, freq=freq, mapping=mapping,
                             symbol=symbol, ts_format=ts_format, timezone=timezone, name=name, trades=trades, bar=bar)
    except (CatalogError, SourceFileError) as exc:
        raise click.ClickException(str(exc)) from None
    kind = ", from trades" if spec.kind == "trades" else ""
    click.echo(f"registered source '{spec.name}' ({spec.table}, {spec.asset_class or '-'}, {spec.freq or '-'}{kind})")
    if table == "bars":
        run_job("ingest_job", spec.asset_class)
    else:
        run_job("events_job")
    _print_loads([spec.name])
    if spec.kind == "trades":
        from resources import Settings, Warehouse

        load = Warehouse(settings=Settings()).query("SELECT rows_stored FROM source_loads WHERE source = ?",
                                                    [spec.name])
        click.echo(f"{spec.name}: counts are trades; they built {int(load.rows_stored.iloc[0])} {spec.freq} bars")
