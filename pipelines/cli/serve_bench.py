"""`tradecast bench-serve` / `make bench-serve`: the serving benchmark, end to end on the crypto hft model.

1. The pipeline state it needs, through Dagster (so it is the real thing): crypto bars, a trained NHITS version
   of `nhits-crypto-close` (quick profile) and its ONNX export.
2. Every inference path side by side at B = 1/16/64/256 (:mod:`serving.bench`), and the accuracy of the fast
   paths (the INT8 change) on the version's post-training windows only (`--only accuracy`: just this part).
3. Over HTTP: `tradecast serve --cold` in a subprocess; replay bars into it (tick -> forecast), then 50 clients
   on GET /forecast (paced 20 req/s each, and back-to-back) and on POST /predict; in process: the replay again.
4. The issue's targets, each with measured value and the factor by which it was missed.
Writes `benchmarks/results/<name>.json` and `.md`.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domain.vocabulary import CHALLENGER, CHAMPION, NHITS_KIND, model_name
from pipelines.cli.runner import ensure_bars, run_job

ASSET_CLASS, TARGET = "crypto", "close"


def _ensure_model(echo: Callable[[str], None]) -> None:
    import dagster as dg

    from resources import ModelRegistry, Settings, Warehouse

    settings = Settings()
    wh, registry = Warehouse(settings=settings), ModelRegistry(settings=settings)
    key = dg.MultiPartitionKey({"asset_class": ASSET_CLASS, "target": TARGET})
    ensure_bars(wh, ASSET_CLASS, echo)
    name = model_name(ASSET_CLASS, TARGET)
    if not any(v.kind == NHITS_KIND for v in registry.versions(name)):
        echo("train_job [crypto|close] (no NHITS version yet) ...")
        run_job("train_job", key)
    echo("export_job [crypto|close] ...")
    run_job("export_job", key)


def _nhits_version(registry: Any, name: str) -> Any:
    """The newest NHITS version of ``name`` (the benchmark measures NHITS whichever model is champion)."""
    return [v for v in registry.versions(name) if v.kind == NHITS_KIND][-1]


def _http(duration: float, clients: int, share: float, input_size: int, echo: Callable[[str], None]) -> dict:
    from serving.bench import event_latency
    from serving.loadtest import free_port, load, start_service, stop_service
    from serving.replay import HttpSink, replay, warehouse_ticks

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_service(["--asset-class", ASSET_CLASS, "--target", TARGET, "--cold", "--challenger-share",
                          str(share)], port=port)
    try:
        echo("replay over HTTP (POST /bars?forecast=true per tick) ...")
        ticks = warehouse_ticks(ASSET_CLASS, last=input_size + 300)
        replayed = replay(HttpSink(url), ticks, warmup_ticks=input_size).to_dict()
        import httpx

        symbols = sorted({b.symbol for b in next(iter(warehouse_ticks(ASSET_CLASS, last=1)))})
        window = [float(v) for v in range(1, input_size + 1)]

        def get_forecast(rng):
            return "GET", f"/forecast/{symbols[int(rng.integers(len(symbols)))]}", None

        def post_predict(rng):
            return "POST", "/predict", {"windows": [window], "arm": CHALLENGER if share else CHAMPION}

        client = httpx.Client(base_url=url, timeout=10)
        last = max(b.ts for b in next(iter(warehouse_ticks(ASSET_CLASS, last=1))))

        def post_event(ts, headline, symbol, sentiment):
            body = {"ts": datetime.fromtimestamp(ts, tz=UTC).isoformat(), "headline": headline,
                    **({"symbol": symbol} if symbol else {}), **({"sentiment": sentiment} if sentiment is not None
                                                              else {})}
            response = client.post("/events", json=body)
            response.raise_for_status()

        echo("POST /events: headline -> updated forecasts over HTTP ...")
        events = event_latency(post_event, last + 60, n=200)
        echo(f"GET /forecast: {clients} clients x 20 req/s for {duration:.0f} s ...")
        paced = load(port, get_forecast, clients=clients, duration=duration, interval=0.05)
        echo(f"GET /forecast: {clients} clients back-to-back for {duration:.0f} s ...")
        saturated = load(port, get_forecast, clients=clients, duration=duration)
        echo(f"POST /predict (B=1, the model on every call): {clients} clients x 20 req/s ...")
        predict = load(port, post_predict, clients=clients, duration=duration / 2, interval=0.05)
        served_by = httpx.get(url + "/forecast/BTCUSDT").json()["model"]
    finally:
        stop_service(proc)
    return {"served_by": served_by, "replay_http": replayed, "events_http": events, "get_forecast_paced": paced,
            "get_forecast_saturated": saturated, "post_predict_paced": predict}


def run_serving_benchmark(*, duration: float, clients: int, name: str | None, out: str, only: str = "all",
                          echo: Callable[[str], None] = print) -> dict:
    """The whole benchmark, or with ``only='accuracy'`` just the accuracy of the fast paths on the version's
    post-training windows (a minute: no latency sweep, HTTP or replay), written as ``serve-accuracy-<device>``."""
    import torch

    from resources import ModelRegistry, Settings, Warehouse
    from serving.bench import accuracy, check_targets, event_latency, latency_table, paths
    from serving.replay import ServiceSink, replay, warehouse_ticks
    from serving.service import ForecastService, ServiceConfig
    from serving.windows import check_windows
    from storage.queries import read_frame, version_train_end

    _ensure_model(echo)
    settings = Settings()
    registry, wh = ModelRegistry(settings=settings), Warehouse(settings=settings)
    mname = model_name(ASSET_CLASS, TARGET)
    version = _nhits_version(registry, mname)
    nf = registry.load(mname, version.version).unwrap_python_model().nf
    model = nf.models[0]
    frame = read_frame(wh.query, ASSET_CLASS, TARGET)
    # latency: any real windows (in-sample included); accuracy: post-training windows only (serving.bench.accuracy)
    checks = check_windows(frame, model.input_size, model.h,
                           train_end=version_train_end(wh.query, mname, version.version))
    echo(f"{mname} v{version.version}: h={model.h}, input {model.input_size}; torch threads "
         f"{torch.get_num_threads()}; {checks.describe()}")
    champion = registry.alias(mname, CHAMPION)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    doc = {"schema": "tradecast.serving-benchmark/1", "created_at": datetime.now(UTC).isoformat(),
           "model": {"name": mname, "version": version.version, "h": model.h, "input_size": model.input_size,
                     "config": "hft", "champion_version": champion.version},
           "machine": {"device": device, "cpu_count": os.cpu_count(), "python": platform.python_version(),
                       "torch_threads": torch.get_num_threads()}}
    with tempfile.TemporaryDirectory() as tmp:
        runs = paths(nf, Path(tmp), frame)
        doc["accuracy"] = accuracy(runs, checks)
        if only == "accuracy":
            return _write(doc, Path(out), name or f"serve-accuracy-{device}", echo)
        doc["latency"] = latency_table(runs, checks.windows, echo=echo)
    share = 0.0 if champion.version == version.version else 1.0  # the NHITS version answers over HTTP either way
    if share:
        registry.set_alias(mname, CHALLENGER, version.version)
    http = _http(duration, clients, share, model.input_size, echo)
    service = ForecastService(ServiceConfig(asset_class=ASSET_CLASS, target=TARGET, challenger_share=share,
                                            warm=False))
    in_process = replay(ServiceSink(service), warehouse_ticks(ASSET_CLASS, last=model.input_size + 300),
                        warmup_ticks=model.input_size).to_dict()
    last = max(b.last_ts for b in service.buffers.buffers.values())
    events = event_latency(service.post_event, last + 60)
    service.stop()
    doc.update(http=http, replay_in_process=in_process, events_in_process=events,
               targets=check_targets(doc["latency"], doc["accuracy"], {"p99_ms": http["get_forecast_paced"]["p99_ms"]}))
    return _write(doc, Path(out), name or f"serve-{device}", echo)


def _write(doc: dict, folder: Path, name: str, echo: Callable[[str], None]) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    markdown = to_markdown(doc)
    (folder / f"{name}.md").write_text(markdown)
    echo(markdown)
    echo(f"wrote {folder / name}.json and .md")
    return doc


def _accuracy_markdown(acc: dict) -> list[str]:
    import pandas as pd

    if acc.get("windows") != "post_training":  # a file written before the windows were named
        return [("## Accuracy of the fast paths (windows spread over the frame, training period included: "
                "superseded, see `serve-accuracy-*.md`)"), "",
                pd.DataFrame({k: v for k, v in acc.items() if isinstance(v, dict)}).T.to_markdown(), ""]
    gate = acc["int8_vs_fp32"]
    return [(f"## Accuracy of the fast paths ({acc['n_windows']} post-training windows of "
            f"{acc['post_training_series']} series: every forecast step after train_end {acc['train_end']})"), "",
            pd.DataFrame({k: v for k, v in acc.items() if isinstance(v, dict) and "mae" in v}).T.to_markdown(), "",
            (f"INT8 vs fp32 forecasts ({gate['rule']}): largest {100 * gate['max_series_deviation']:.3g}% "
            f"({gate['series']})."), ""]


def to_markdown(doc: dict) -> str:
    import pandas as pd

    m = doc["model"]
    head = [f"# Serving benchmark ({doc['machine']['device']}, {doc['machine']['cpu_count']} cores)", "",
            (f"{m['name']} v{m['version']} ({m['config']}: h={m['h']}, input {m['input_size']}); "
             f"{doc['created_at']}"), ""]
    if "latency" not in doc:  # --only accuracy
        return "\n".join(head + _accuracy_markdown(doc["accuracy"]))
    lat = pd.DataFrame(doc["latency"])
    p50 = lat.pivot(index="path", columns="batch", values="p50_ms")
    p99 = lat.pivot(index="path", columns="batch", values="p99_ms")
    ref = p50.loc["neuralforecast_predict"]
    table = pd.DataFrame({f"B={b}": [f"{p50.loc[p, b]:.3f} / {p99.loc[p, b]:.3f}" if p50.loc[p, b] == p50.loc[p, b]
                                     else "n/a" for p in p50.index] for b in p50.columns}, index=p50.index)
    speed = (ref.loc[1] / p50[1]).round(1).rename("x faster than predict at B=1")
    http = pd.DataFrame({k: doc["http"][k] for k in ("get_forecast_paced", "get_forecast_saturated",
                                                     "post_predict_paced")}).T
    http = http[["clients", "interval_s", "requests", "errors", "throughput_rps", "p50_ms", "p99_ms", "max_ms"]]
    replays = pd.DataFrame({"in process": doc["replay_in_process"], "HTTP": doc["http"]["replay_http"]}).T
    events = {**{f"in process, {k}": v for k, v in doc["events_in_process"].items()},
              **{f"HTTP, {k}": v for k, v in doc["http"]["events_http"].items()}}
    return "\n".join(head + [
        "## Latency per path, p50 / p99 ms", "", table.join(speed).to_markdown(), "",
        *_accuracy_markdown(doc["accuracy"]),
        f"## HTTP (served by {doc['http']['served_by']})", "", http.to_markdown(), "",
        "## Replay: tick -> forecast", "", replays[["ticks", "bars", "forecasts", "p50_ms", "p99_ms",
                                                    "max_ms"]].to_markdown(), "",
        "## Headline -> updated forecast (POST /events)", "", pd.DataFrame(events).T.to_markdown(), "",
        "## Targets", "", pd.DataFrame(doc["targets"]).to_markdown(index=False), ""])
