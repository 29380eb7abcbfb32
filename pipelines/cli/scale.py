"""`tradecast tune` (search, train with the best config, judge: every partition), `tradecast bench-scale` (what Ray
buys, side by side: benchmarks/results/scale-<cpu|cuda>.{json,md}) and `tradecast ray-stop` (the home's head)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from domain.vocabulary import ASSET_CLASSES, TARGETS
from pipelines.cli.runner import run_job

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


@click.command()
@click.option("--asset-class", "asset_classes", multiple=True, type=click.Choice(ASSET_CLASSES))
@click.option("--target", "targets", multiple=True, type=click.Choice(TARGETS))
@click.option("--trials", type=int, default=16, show_default=True, help="search trials per partition")
@click.option("--max-steps", type=int, default=500, show_default=True, help="steps of a trial never stopped early")
@click.option("--profile", type=click.Choice(["quick", "full"]), default="full", show_default=True,
              help="the training profile of nhits_model after the search")
def tune(asset_classes, targets, trials: int, max_steps: int, profile: str) -> None:
    """Run tune_job per partition: nhits_search on Ray Tune, nhits_model with the best config, the gate."""
    import dagster as dg

    config = {"ops": {"nhits_search": {"config": {"num_samples": trials, "max_steps": max_steps,
                                                  "grace_steps": max(1, max_steps // 8),
                                                  "val_check_steps": max(1, max_steps // 16)}},
                      "nhits_model": {"config": {"profile": profile}}}}
    for asset_class in asset_classes or ASSET_CLASSES:
        for target in targets or TARGETS:
            key = dg.MultiPartitionKey({"asset_class": asset_class, "target": target})
            click.echo(f"tune_job [{asset_class}|{target}]: {trials} trials ...")
            for check in run_job("tune_job", key, config):
                click.echo(f"  {check[0]}: {check[2]}")


@click.command("ray-stop")
def ray_stop() -> None:
    """Stop this home's local Ray head (started by the first training or search)."""
    from compute.cluster import stop_local_head

    click.echo("stopped the local Ray head" if stop_local_head() else "no local Ray head was running")


def _frames():
    from resources import Settings, Warehouse
    from storage.queries import read_frame

    warehouse = Warehouse(settings=Settings())
    frames = {(c, t): read_frame(warehouse.query, c, t) for c in ASSET_CLASSES for t in TARGETS}
    empty = [f"{c}|{t}" for (c, t), f in frames.items() if f.empty]
    if empty:
        raise click.ClickException(f"no training frames for {empty}: run `make run` first")
    closes = {c: frames[(c, "close")][["unique_id", "ds", "y"]] for c in ASSET_CLASSES}
    return frames, closes


def _bars(asset_class: str):
    from resources import Settings, Warehouse
    from storage.bars import read_bars

    return read_bars(Warehouse(settings=Settings()).query, asset_class)


@click.command("bench-scale")
@click.option("--trials", type=int, default=4, show_default=True, help="search trials per partition")
@click.option("--trial-steps", type=int, default=60, show_default=True, help="steps of an unstopped trial")
@click.option("--ddp-steps", type=int, default=60, show_default=True)
@click.option("--skip-series", is_flag=True, help="Skip the equities 60-series vs every-series comparison.")
def bench_scale(trials: int, trial_steps: int, ddp_steps: int, skip_series: bool) -> None:
    """Search rate 1 vs 2 slots, six trainings serial vs on Ray, DDP 1 vs 2 processes, default vs searched NHITS."""
    import ray
    import torch

    from compute.benchmark import gate_row, more_series, search_rate, six_trainings
    from compute.cluster import connect
    from compute.training import train_many
    from models.configs import spec_for
    from models.evaluation import time_split
    from models.search import apply, run_search
    from storage.home import tradecast_home

    device = "cuda" if torch.cuda.is_available() else "cpu"
    address = connect()
    frames, closes = _frames()
    specs = {k: spec_for(k[0], "quick") for k in frames}
    storage = tradecast_home() / "ray" / "tune"
    doc = {"command": "make bench-scale", "device": device, "ray_address": address,
           "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"cpus": os.cpu_count(), "ray": ray.__version__,
                       "cluster_cpus": ray.cluster_resources().get("CPU")}}
    fx = frames[("fx", "close")]
    fx_split = time_split(fx, h=specs[("fx", "close")].h, n_windows=specs[("fx", "close")].n_windows,
                          step_size=specs[("fx", "close")].step)
    click.echo("search trials per hour, 1 vs 2 slots (fx close) ...")
    doc["search_rate"], _ = search_rate(fx_split.train, specs[("fx", "close")], fx.attrs.get("freq") or "B",
                                        num_samples=trials, max_steps=trial_steps, storage=storage)
    _save(doc, device)
    click.echo("six trainings, serial vs on Ray ...")
    timing, serial, _ = six_trainings(frames, specs, closes)
    doc["six_trainings"] = timing
    _save(doc, device)
    try:
        from models.ddp import ddp_benchmark
    except ImportError:
        ddp_benchmark = None
    if ddp_benchmark is not None:
        click.echo("DDP, 1 vs 2 processes ...")
        ddp_spec = specs[("fx", "close")].replace(max_steps=ddp_steps)
        doc["ddp"] = ddp_benchmark(fx_split.train, ddp_spec, fx.attrs.get("freq") or "B", devices_list=(1, 2),
                                   workdir=tradecast_home() / "ray" / "ddp")
        _save(doc, device)
    if not skip_series:
        click.echo("equities NHITS on 60 series vs every series ...")
        doc["more_series"] = more_series(_bars("equities"), specs[("equities", "close")])
        _save(doc, device)
    click.echo(f"searching every partition ({trials} trials x <= {trial_steps} steps), then training the best ...")
    best = {}
    for key, frame in frames.items():
        spec = specs[key]
        split = time_split(frame, h=spec.h, n_windows=spec.n_windows, step_size=spec.step)
        found = run_search(split.train, spec, frame.attrs.get("freq") or spec.freq, num_samples=trials,
                           max_steps=trial_steps, val_size=2 * spec.h, grace_steps=max(1, trial_steps // 4),
                           val_check_steps=max(1, trial_steps // 4), max_concurrent=None, time_budget_s=None,
                           storage_path=storage, seed=1, name=f"bench-scale-{key[0]}-{key[1]}-{int(time.time())}")
        best[key] = found.best_config
    keys = list(frames)
    shipped = train_many([(frames[k], apply(specs[k], best[k]),
                           {"accelerator": "cpu", "target": k[1], "close": closes[k[0]] if k[1] == "volatility"
                            else None}) for k in keys])
    doc["gate"] = [gate_row(k, serial[k], s.result, best[k]) for k, s in zip(keys, shipped, strict=True)]
    click.echo(_save(doc, device))


def _save(doc: dict, device: str) -> str:
    """Write what is measured so far (a later section that fails keeps the earlier ones); returns the markdown."""
    from compute.benchmark import to_markdown

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"scale-{device}.json").write_text(json.dumps(doc, indent=2, default=str))
    markdown = to_markdown(doc)
    (RESULTS / f"scale-{device}.md").write_text(markdown)
    return markdown
