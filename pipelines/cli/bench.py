"""`tradecast bench`: the benchmark comparison from the command line.

Without --csv it materializes `benchmark_report` for each asset class through Dagster (so the runs, the DuckDB
rows and the MLflow runs are the same as from the UI), loading the bundled data first when the warehouse has
none; with --csv it benchmarks any wide LTSF or long (unique_id, ds, y) file directly. Either way it writes
`<out>/<name>.json` (schema tradecast.benchmark/1) and `<out>/<name>.md`.

The time caps are options (`--train-cap`, `--eval-cap`, `--no-caps`; defaults: the profile's). A model whose
requested steps a cap cut short (or whose test windows the evaluation cap thinned) is named in a WARNING line at
the very end of the output, not only in the table's note.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from domain.vocabulary import ASSET_CLASSES, BENCHMARK_MODELS
from models.benchmark.specs import BUDGETS
from pipelines.cli.runner import ensure_bars, run_job

CAPS = ", ".join(f"{p} {b.train_cap_s:g} s / {b.eval_cap_s:g} s" for p, b in BUDGETS.items())


def _write(out: Path, name: str, results, latency, budget, title: str, search: dict | None = None) -> None:
    import pandas as pd

    from models.benchmark import search as bench_search
    from models.benchmark.report import to_document, to_markdown

    out.mkdir(parents=True, exist_ok=True)
    ran = pd.Timestamp(results["created_at"].max()) if "created_at" in results else pd.Timestamp.now(tz="UTC")
    doc = to_document(results, latency, name=name, created_at=ran.isoformat(), budget=budget)
    markdown = to_markdown(results, latency, title=title)
    if search is not None:
        doc["search"] = search
        markdown += "\n" + bench_search.to_markdown(search)
    (out / f"{name}.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    (out / f"{name}.md").write_text(markdown + "\n")
    click.echo(markdown)
    click.echo(f"\nwrote {out / f'{name}.json'} and {out / f'{name}.md'}")


def _warn(results, budget) -> None:
    """The cap warnings, last (stderr), so a cut-short run cannot pass for the requested one."""
    from models.benchmark.report import cap_warnings

    for line in cap_warnings(results, budget):
        click.echo(line, err=True)


def _market(profile: str, asset_classes: tuple[str, ...], steps: int | None, models: str | None, seed: int,
            caps: dict, run: bool = True):
    from resources import Settings, Warehouse

    wh = Warehouse(settings=Settings())
    config = {"profile": profile, "seed": seed, **({"max_steps": steps} if steps else {}),
              **({"models": models.split(",")} if models else {}), **{k: v for k, v in caps.items() if v}}
    ids = []
    for asset_class in asset_classes:
        if not run:
            found = wh.query("SELECT bench_id FROM benchmark_results WHERE asset_class = ? AND profile = ? "
                             "ORDER BY created_at DESC LIMIT 1", [asset_class, profile])
            if found.empty:
                raise click.ClickException(f"no {profile} benchmark of {asset_class} in the warehouse yet")
            ids.append(found.bench_id.iloc[0])
            continue
        ensure_bars(wh, asset_class)
        click.echo(f"benchmark_job [{asset_class}] ({profile}) ...")
        run_job("benchmark_job", asset_class, {"ops": {"benchmark_report": {"config": config}}})
        ids.append(wh.query("SELECT bench_id FROM benchmark_results WHERE asset_class = ? ORDER BY created_at DESC "
                            "LIMIT 1", [asset_class]).bench_id.iloc[0])
    results = wh.query("SELECT * FROM benchmark_results WHERE list_contains(?, bench_id) ORDER BY dataset", [ids])
    latency = wh.query("SELECT * FROM benchmark_latency WHERE list_contains(?, bench_id)", [ids])
    return results, latency


@click.command()
@click.option("--profile", type=click.Choice(["quick", "full"]), default="full", show_default=True,
              help="full: make bench (up to about an hour on 2 CPU cores); quick: minutes.")
@click.option("--asset-class", "asset_classes", multiple=True, type=click.Choice(ASSET_CLASSES),
              help="Market data sets of these classes only (default: all).")
@click.option("--name", default=None, help="Result file name (default: <profile>-<cpu|cuda> or <csv stem>-h<h>).")
@click.option("--out", type=click.Path(file_okay=False), default="benchmarks/results", show_default=True)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
              help="Benchmark this file instead: wide LTSF (date column + one column per series) or long "
                   "(unique_id, ds, y).")
@click.option("--date-col", default="date", show_default=True, help="Date column of a wide file.")
@click.option("--freq", default=None, help="pandas frequency of the file (default: inferred), e.g. 15min, h, D.")
@click.option("--h", type=int, default=None, help="Horizon (required with --csv).")
@click.option("--input-size", type=int, default=None, help="Lookback (default 5*h, as in the N-HiTS paper).")
@click.option("--models", default=None, help=f"Comma list of {','.join(BENCHMARK_MODELS)} (default all).")
@click.option("--steps", type=int, default=None, help="Optimizer steps for every model (default: the profile's).")
@click.option("--split", default="0.7,0.1,0.2", show_default=True, help="train,validation,test fractions (--csv).")
@click.option("--max-series", type=int, default=None, help="Use at most this many series of the file.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--train-cap", "train_cap", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help=f"Training time cap per model (default: the profile's; training / evaluation caps: {CAPS}). A "
                   "model it stops short of --steps is reported with a WARNING at the end.")
@click.option("--eval-cap", "eval_cap", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Evaluation time cap per model: beyond it fewer, evenly spaced test windows are scored "
                   "(default: the profile's).")
@click.option("--no-caps", is_flag=True,
              help="No training or evaluation time cap: every model trains all --steps and scores every test "
                   "window (the latency sweep keeps its budget and names the batch sizes it skipped).")
@click.option("--search", "search", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="With --csv: tune NHITS with N Ray Tune trials on the file's validation part first (the N-HiTS "
                   "paper's protocol); Ray: RAY_ADDRESS or this home's local head.")
@click.option("--report-only", is_flag=True,
              help="Write the files from the latest results of this profile in the warehouse; run nothing.")
def bench(profile: str, asset_classes: tuple[str, ...], name: str | None, out: str, csv_path: str | None,
          date_col: str, freq: str | None, h: int | None, input_size: int | None, models: str | None,
          steps: int | None, split: str, max_series: int | None, seed: int, train_cap: float | None,
          eval_cap: float | None, no_caps: bool, search: int, report_only: bool) -> None:
    """Compare NHITS with PatchTST, iTransformer, TimesNet and TiDE beside the naive baselines."""
    from models.benchmark.runner import device_of
    from models.benchmark.specs import budget_for
    from models.benchmark.zoo import parse_models

    try:
        chosen = parse_models(models)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--models") from None
    if no_caps and (train_cap or eval_cap):
        raise click.BadParameter("--no-caps cannot be combined with --train-cap / --eval-cap", param_hint="--no-caps")
    caps = {"train_cap_s": train_cap, "eval_cap_s": eval_cap, "no_caps": no_caps}
    if search and (csv_path is None or "nhits" not in chosen):
        raise click.BadParameter("--search tunes NHITS on a --csv file's validation part: give --csv and keep nhits "
                                 "in --models (the market data's search is the nhits_search asset: make tune)",
                                 param_hint="--search")
    device = device_of("auto")
    if csv_path is None:
        results, latency = _market(profile, asset_classes or ASSET_CLASSES, steps, ",".join(chosen), seed, caps,
                                   run=not report_only)
        budget = budget_for(profile, max_steps=steps, seed=seed, **caps)
        _write(Path(out), name or f"{profile}-{device}", results, latency, dataclasses.asdict(budget),
               f"Benchmark on the bundled market data ({profile} profile, {device})")
        _warn(results, None if report_only else budget)
        return
    results, latency, budget, label, found = _csv(csv_path, profile, date_col, freq, h, input_size, chosen, steps,
                                                  split, max_series, seed, caps, search)
    _write(Path(out), name or label, results, latency, dataclasses.asdict(budget), f"Benchmark on {csv_path}", found)
    _warn(results, budget)


def _csv(path, profile, date_col, freq, h, input_size, models, steps, split, max_series, seed, caps, search):
    from models.benchmark.datasets import split_protocol
    from models.benchmark.ltsf import LTSFError, read_benchmark_csv
    from models.benchmark.runner import run_benchmark
    from models.benchmark.specs import BenchSpec, budget_for

    if h is None:
        raise click.BadParameter("--h is required with --csv", param_hint="--h")
    try:
        fractions = tuple(float(x) for x in split.split(","))
    except ValueError:
        raise click.BadParameter(f"expected three fractions like 0.7,0.1,0.2 (got {split!r})",
                                 param_hint="--split") from None
    budget = budget_for(profile, max_steps=steps, seed=seed, max_series=max_series, **caps)
    if max_series is None:
        budget = budget.replace(max_series=None)
    label = f"{Path(path).name.split('.')[0]}-h{h}"
    try:
        frame = read_benchmark_csv(path, date_col=date_col, freq=freq)
        spec = BenchSpec(name=label, h=h, input_size=input_size or 5 * h, freq=frame.attrs["freq"],
                         season_length=1, n_windows=1, step_size=1, val_size=0, scaler_type="identity",
                         n_pool_kernel_size=(2, 2, 1), n_freq_downsample=(max(1, h // 4), max(1, h // 8), 1),
                         protocol=f"ltsf split {split}", notes="z-scored with training statistics, rolling step-1 "
                         "windows over the test part, MAE loss")
        data = split_protocol(frame, spec, budget, fractions)
    except (LTSFError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    found = _search(data, budget, search) if search else None
    results, latency = run_benchmark(data, budget, models, log=click.echo,
                                     nhits_config=found["best_config"] if found else None)
    return results, latency, budget, label, found


def _search(data, budget, trials: int) -> dict:
    """The NHITS search on the Ray cluster (RAY_ADDRESS, or this home's local head, started when missing)."""
    from compute.cluster import connect
    from models.benchmark.search import search_nhits
    from storage.home import tradecast_home

    address = connect()
    click.echo(f"{data.spec.name}: searching NHITS, {trials} trials on Ray ({address}) ...")
    try:
        found = search_nhits(data, budget, num_samples=trials, storage=tradecast_home() / "ray" / "tune")
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{data.spec.name}: best of {found['trials_run']} trials: validation MAE {found['best_val_mae']:.4f} "
               f"with {found['best_config']}")
    return {**found, "ray_address": address}
