"""`tradecast bench-events`: does news help NHITS? The event ablation from the command line.

Reads the equities bars, `news_events` and `macro_events` from the warehouse (loading the bundled data through
Dagster first when a table is empty), trains plain and event-aware NHITS (ablation none / news / fomc / all) on
the same windows, budget and seeds (:mod:`models.events.ablation`) and writes `<out>/<name>.json` (schema
tradecast.events-benchmark/1) and `<out>/<name>.md`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from domain.vocabulary import TARGETS
from pipelines.cli.runner import ensure_bars, run_job

DATASETS = ("stocknet-tweets", "djia-reddit", "sp500-analyst")
CONTROLS = ("planted-signal",)  # synthetic positive control (not run by default)
VARIANTS = ("none", "news", "fomc", "all")


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"expected integers separated by commas (got {text!r})", param_hint=what) from None


def _choices(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    chosen = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [x for x in chosen if x not in allowed]
    if unknown or not chosen:
        raise click.BadParameter(f"{unknown or text!r}: choose from {', '.join(allowed)}", param_hint=what)
    return chosen


def _load_tables():
    from resources import Settings, Warehouse

    wh = Warehouse(settings=Settings())
    ensure_bars(wh, "equities")
    if (wh.query("SELECT count(*) AS n FROM news_events").n.iloc[0] == 0
            or wh.query("SELECT count(*) AS n FROM macro_events").n.iloc[0] == 0):
        click.echo("events_job (no news or macro events yet) ...")
        run_job("events_job")
    bars = wh.query("SELECT * FROM bars WHERE asset_class = 'equities' AND freq = '1d' ORDER BY symbol, ts")
    news = wh.query("SELECT ts, source, symbol, sentiment FROM news_events")
    macro = wh.query("SELECT ts, event_type, scheduled, policy_surprise FROM macro_events")
    return bars, news, macro


@click.command("bench-events")
@click.option("--seeds", default="1,2,3", show_default=True, help="Seeds, comma-separated (same for every variant).")
@click.option("--steps", type=int, default=150, show_default=True, help="Optimizer steps for every variant.")
@click.option("--targets", default="volatility,close", show_default=True, help="close and/or volatility.")
@click.option("--datasets", default=",".join(DATASETS), show_default=True,
              help=f"Any of {', '.join(DATASETS + CONTROLS)} (planted-signal: synthetic positive control).")
@click.option("--variants", default=",".join(VARIANTS), show_default=True,
              help="none (plain NHITS), news, fomc, all.")
@click.option("--max-series", type=int, default=6, show_default=True, help="Tickers per data set (most news first).")
@click.option("--accelerator", type=click.Choice(["auto", "cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--name", default=None, help="Result file name (default: events-<cpu|cuda>).")
@click.option("--out", type=click.Path(file_okay=False), default="benchmarks/results", show_default=True)
def bench_events(seeds: str, steps: int, targets: str, datasets: str, variants: str, max_series: int,
                 accelerator: str, name: str | None, out: str) -> None:
    """Plain vs event-aware NHITS (news only / FOMC only / all), same windows and budget, several seeds."""
    from models.events.ablation import EventBenchConfig, run_event_ablation, to_markdown

    config = EventBenchConfig(
        seeds=_ints(seeds, "--seeds"), max_steps=steps, max_series=max_series,
        targets=_choices(targets, TARGETS, "--targets"),
        datasets=_choices(datasets, DATASETS + CONTROLS, "--datasets"),
        variants=_choices(variants, VARIANTS, "--variants"))
    if not config.seeds:
        raise click.BadParameter("give at least one seed", param_hint="--seeds")
    bars, news, macro = _load_tables()
    try:
        doc = run_event_ablation(bars, news, macro, config, accelerator=accelerator, log=click.echo)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    folder, stem = Path(out), name or f"events-{doc['device']}"
    folder.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(doc)
    (folder / f"{stem}.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    (folder / f"{stem}.md").write_text(markdown + "\n")
    click.echo(markdown)
    click.echo(f"\nwrote {folder / f'{stem}.json'} and {folder / f'{stem}.md'}")
