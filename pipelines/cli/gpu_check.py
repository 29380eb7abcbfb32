"""`tradecast gpu-check` / `make gpu-check`: is this CUDA machine ready, and the GPU result files from it.

Three steps, each in a subprocess of the same interpreter, each one's exit status and wall time printed:

1. ``train``: a bf16-mixed NHITS training smoke (a slice of the bundled fx rates, ~200 steps, accelerator gpu,
   one device): precision, steady steps/s, GPU name, peak ``torch.cuda.max_memory_allocated``
   -> ``<out>/gpu-train-cuda.{json,md}``.
2. ``bench``: ``tradecast bench --profile full`` -> ``<out>/full-cuda.{json,md}``.
3. ``serve``: ``tradecast bench-serve`` with ONNX Runtime on TensorRT / CUDA (those onnxruntime offers, then CPU;
   ``$TRADECAST_ORT_PROVIDERS``, see :mod:`serving.runtime`) -> ``<out>/serve-cuda.{json,md}``. When this
   onnxruntime has no CUDAExecutionProvider (the CPU build; the GPU one is ``onnxruntime-gpu``) it says so and what
   to install, and runs the bench on CPUExecutionProvider, marked as such: ``<out>/serve-cuda-ort-cpu.{json,md}``.

The command exits non-zero when a step fails (a non-zero exit, a timeout, or an exit 0 without its files). Where
``torch.cuda.is_available()`` is False, or with ``--dry-run``, it prints the plan (each step, its command, its
environment and its files) and exits 0 having run nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click

STEPS = ("train", "bench", "serve")
FX_FILE = Path(__file__).resolve().parents[2] / "data" / "fx" / "exchange_rate.txt.gz"  # 8 daily rates, 7588 rows
SMOKE_ROWS, SMOKE_H = 2000, 24  # the last 2000 business days of 8 fx rates; horizon 24, input 5*h
SKIP_STEPS = 10  # steps left out of steps/s (CUDA context, cuDNN autotuning, the first allocations)


@dataclass(frozen=True)
class Step:
    """One step of the check: what it runs, with which extra environment, and the files it must leave."""

    key: str
    title: str
    argv: tuple[str, ...]
    outputs: tuple[Path, ...]
    env: dict[str, str] = field(default_factory=dict)

    def command(self) -> str:
        return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in self.env.items()), shlex.join(self.argv)])


def serve_providers(requested: str | None = None) -> tuple[list[str], str | None]:
    """The ONNX Runtime providers for the serving step and a note: ``requested`` (validated), else TensorRT and
    CUDA where onnxruntime offers them, then CPU. The note says when CUDAExecutionProvider is missing."""
    import onnxruntime as ort

    from serving.runtime import GPU_PREFERENCE, available_providers, resolve_providers

    if requested:
        return resolve_providers(requested), None
    chosen = available_providers(GPU_PREFERENCE)
    if "CUDAExecutionProvider" in chosen:
        return chosen, None
    py, version = shlex.quote(sys.executable), ort.__version__
    return ["CPUExecutionProvider"], (
        f"onnxruntime {version} here is the {ort.get_device()} build (providers {ort.get_available_providers()}): "
        "no CUDAExecutionProvider. The GPU build is the package onnxruntime-gpu, in place of onnxruntime (uv: "
        ".tools/bin/uv after make setup): "
        f"`uv pip uninstall --python {py} onnxruntime && uv pip install --python {py} onnxruntime-gpu=={version}` "
        "(`make setup` puts the CPU build back). Until then the serve step runs the serving benchmark on "
        "CPUExecutionProvider, marked as such: its files are serve-cuda-ort-cpu.*, not serve-cuda.*.")


def plan(out: Path, *, train_steps: int = 200, only: tuple[str, ...] = STEPS,
         providers: str | None = None) -> tuple[list[Step], list[str]]:
    """The steps to run (those in ``only``, in the order of :data:`STEPS`) and the notes to print with them."""
    py, notes = sys.executable, []
    chosen, note = serve_providers(providers)
    if note and "serve" in only:
        notes.append(note)
    serve_name = "serve-cuda" if set(chosen) & {"CUDAExecutionProvider", "TensorrtExecutionProvider"} \
        else "serve-cuda-ort-cpu"
    steps = [
        Step("train", f"bf16-mixed NHITS training smoke ({train_steps} steps, accelerator gpu, 1 device)",
             (py, "-m", "pipelines.cli.gpu_check", "--train-smoke", "--train-steps", str(train_steps), "--out",
              str(out)), (out / "gpu-train-cuda.json", out / "gpu-train-cuda.md")),
        Step("bench", "the full benchmark (tradecast bench --profile full)",
             (py, "-m", "pipelines.cli", "bench", "--profile", "full", "--out", str(out)),
             (out / "full-cuda.json", out / "full-cuda.md")),
        Step("serve", f"the serving benchmark, ONNX Runtime on {','.join(chosen)}"
             + ("" if serve_name == "serve-cuda" else " (no CUDA execution provider: CPU figures)"),
             (py, "-m", "pipelines.cli", "bench-serve", "--out", str(out), "--name", serve_name),
             (out / f"{serve_name}.json", out / f"{serve_name}.md"), {"TRADECAST_ORT_PROVIDERS": ",".join(chosen)}),
    ]
    return [s for s in steps if s.key in only], notes


def print_plan(steps: list[Step], notes: list[str], why: str) -> None:
    click.echo(f"gpu-check plan ({why}):")
    for i, step in enumerate(steps, 1):
        click.echo(f"  {i}. {step.key}: {step.title}\n     run:    {step.command()}\n     writes: "
                   + ", ".join(str(p) for p in step.outputs))
    for note in notes:
        click.echo(f"NOTE: {note}")


def run_step(step: Step, timeout: float | None) -> tuple[int, float, str]:
    """Run ``step``; (exit status, wall seconds, problem or ''). A timeout is status 124 (the step's process group,
    e.g. a service bench-serve started, is terminated); an exit 0 that left a file missing counts as a failure."""
    started = time.perf_counter()
    proc = subprocess.Popen(step.argv, env={**os.environ, **step.env}, start_new_session=True)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        return 124, time.perf_counter() - started, f"timed out after {timeout:g} s"
    except BaseException:  # Ctrl-C reaches this process only (the step has a session of its own): end the step too
        _stop(proc)
        raise
    wall = time.perf_counter() - started
    missing = [str(p) for p in step.outputs if not p.is_file()] if rc == 0 else []
    return rc, wall, (f"exit {rc}" if rc else f"exit 0 but {', '.join(missing)} missing" if missing else "")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the step's process group, SIGKILL after 10 s if it is still there."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
            return


def _probe(providers: list[str]) -> str:
    """Which providers a session asked for ``providers`` really gets (a one-node graph), or why none starts."""
    from onnx import TensorProto, helper

    from serving.runtime import OnnxForecaster

    x = helper.make_tensor_value_info("windows", TensorProto.FLOAT, ["B", 4])
    y = helper.make_tensor_value_info("forecast", TensorProto.FLOAT, ["B", 4, 1])
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [-1, 4, 1])
    graph = helper.make_graph([helper.make_node("Reshape", ["windows", "shape"], ["forecast"])], "probe", [x], [y],
                              [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    try:
        used = OnnxForecaster(model.SerializeToString(), providers=providers).providers
    except Exception as exc:  # noqa: BLE001 - reported, the bench itself then shows the failure in full
        return f"ONNX Runtime session with {providers} failed: {type(exc).__name__}: {exc}"
    fell_back = [p for p in providers if p not in used]
    return f"ONNX Runtime session asked {providers} -> runs on {used}" + (
        f" (onnxruntime fell back from {fell_back})" if fell_back else "")


def _now(cuda: bool) -> float:
    """perf_counter after the GPU has finished what was queued (CUDA kernels run asynchronously)."""
    if cuda:
        import torch

        torch.cuda.synchronize()
    return time.perf_counter()


def train_smoke(out: Path, *, steps: int = 200, accelerator: str = "gpu", seed: int = 1) -> dict:
    """Fit a small NHITS on the last :data:`SMOKE_ROWS` days of the bundled fx rates for ``steps`` optimizer steps
    on one device (``accelerator`` gpu: bf16-mixed where supported; cpu: for a check without a GPU), and write
    ``<out>/gpu-train-<cuda|cpu>.{json,md}`` (schema tradecast.gpu-train/1): the precision Lightning trained in,
    steps/s after the first :data:`SKIP_STEPS` steps, the GPU's name and peak allocated memory. Returns the doc."""
    import pandas as pd
    import pytorch_lightning as pl
    import torch
    from neuralforecast import NeuralForecast

    from models.configs import NHITSSpec
    from models.nhits import build_nhits, lightning_quiet

    raw = pd.read_csv(FX_FILE, header=None).tail(SMOKE_ROWS)
    raw.index = pd.bdate_range("2010-01-01", periods=len(raw))
    frame = raw.rename_axis("ds").reset_index().melt(id_vars="ds", var_name="unique_id", value_name="y")
    frame["unique_id"] = "fx" + frame["unique_id"].astype(str)
    spec = NHITSSpec(name="gpu-smoke", h=SMOKE_H, input_size=5 * SMOKE_H, freq="B", season_length=5,
                     max_steps=steps, batch_size=256, seed=seed)
    cuda = accelerator == "gpu"
    marks: dict[str, float | str] = {}

    class Clock(pl.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            marks["precision"] = str(trainer.precision)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_step == SKIP_STEPS:
                marks["t0"] = _now(cuda)

        def on_train_end(self, trainer, pl_module) -> None:
            marks["t1"], marks["steps"] = _now(cuda), int(trainer.global_step)

    losses: list[float] = []
    model = build_nhits(spec, accelerator=accelerator, log_fn=lambda _step, loss: losses.append(loss),
                        log_every_n_steps=max(1, steps // 10))
    model.trainer_kwargs.update(devices=1, callbacks=[*model.trainer_kwargs.get("callbacks", []), Clock()])
    model.trainer_kwargs.pop("strategy", None)  # one device: no DDP re-launch of this command
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with lightning_quiet():
        NeuralForecast(models=[model], freq="B").fit(frame, val_size=0)
    wall = time.perf_counter() - started
    device, timed = ("cuda" if cuda else "cpu"), int(marks["steps"]) - SKIP_STEPS
    doc = {"schema": "tradecast.gpu-train/1", "created_at": datetime.now(UTC).isoformat(), "machine": _machine(cuda),
           "data": {"file": "data/fx/exchange_rate.txt.gz", "series": int(frame.unique_id.nunique()),
                    "rows_per_series": len(raw), "freq": "B"},
           "model": {"h": spec.h, "input_size": spec.input_size, "mlp_units": [list(u) for u in spec.mlp_units],
                     "windows_batch_size": spec.batch_size, "series_batch_size": spec.series_batch_size},
           "trainer": {"accelerator": accelerator, "devices": 1, "precision": marks["precision"]},
           "result": {"steps": int(marks["steps"]), "fit_wall_s": wall,
                      "steps_per_s": timed / (marks["t1"] - marks["t0"]) if timed > 0 and "t0" in marks else None,
                      "steps_per_s_over": f"steps {SKIP_STEPS + 1}..{marks['steps']}",
                      "peak_memory_allocated_bytes": int(torch.cuda.max_memory_allocated()) if cuda else None,
                      "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}}
    name = f"gpu-train-{device}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    (out / f"{name}.md").write_text(to_markdown(doc))
    click.echo(to_markdown(doc) + f"\nwrote {out / name}.json and .md")
    return doc


def _machine(cuda: bool) -> dict:
    import torch

    gpu = {"gpu": torch.cuda.get_device_name(0), "cudnn": torch.backends.cudnn.version(),
           "bf16_supported": torch.cuda.is_bf16_supported()} if cuda else {"gpu": None, "cudnn": None,
                                                                          "bf16_supported": None}
    return {"device": "cuda" if cuda else "cpu", **gpu, "torch": torch.__version__, "cuda": torch.version.cuda,
            "cpu_count": os.cpu_count(), "python": platform.python_version()}


def to_markdown(doc: dict) -> str:
    """The training smoke's document as a short Markdown table."""
    m, r, d = doc["machine"], doc["result"], doc["data"]
    rate = f"{r['steps_per_s']:.1f}" if r["steps_per_s"] else "n/a"
    peak = f"{r['peak_memory_allocated_bytes'] / 2**20:.1f} MiB" if r["peak_memory_allocated_bytes"] else "n/a"
    rows = {"device": f"{m['device']} ({m['gpu'] or 'no GPU'})", "torch / CUDA / cuDNN":
            f"{m['torch']} / {m['cuda']} / {m['cudnn']}", "precision": doc["trainer"]["precision"],
            "steps": r["steps"], "steps/s": f"{rate} ({r['steps_per_s_over']})", "fit wall": f"{r['fit_wall_s']:.1f} s",
            "peak memory allocated": peak, "loss first / last": f"{r['first_loss']} / {r['last_loss']}"}
    return "\n".join([f"# NHITS training smoke ({m['device']})", "",
                      f"{d['file']}: {d['series']} series x {d['rows_per_series']} rows; h={doc['model']['h']}, "
                      f"input {doc['model']['input_size']}; {doc['created_at']}", "", "| | |", "| --- | --- |",
                      *(f"| {k} | {v} |" for k, v in rows.items()), ""])


@click.command("gpu-check")
@click.option("--dry-run", is_flag=True, help="Print the plan (steps, commands, files) on any machine; run nothing.")
@click.option("--only", multiple=True, type=click.Choice(STEPS), help="Only these steps (default: all three).")
@click.option("--out", type=click.Path(file_okay=False), default="benchmarks/results", show_default=True)
@click.option("--train-steps", type=click.IntRange(min=SKIP_STEPS + 1), default=200, show_default=True)
@click.option("--ort-providers", default=None, help="Comma list for the serving step (default: TensorRT and CUDA "
              "where onnxruntime offers them, then CPU).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Per-step wall-clock limit (a step past it fails with status 124).")
@click.option("--train-smoke", "smoke", is_flag=True, hidden=True,
              help="Run the training smoke in this process (step 1's subprocess).")
def gpu_check(dry_run: bool, only: tuple[str, ...], out: str, train_steps: int, ort_providers: str | None,
              timeout: float | None, smoke: bool) -> None:
    """GPU readiness: a bf16 training smoke, the full benchmark and the serving benchmark on CUDA."""
    import torch

    if smoke:
        train_smoke(Path(out), steps=train_steps)
        return
    try:
        steps, notes = plan(Path(out), train_steps=train_steps, only=only or STEPS, providers=ort_providers)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ort-providers") from None
    if dry_run or not torch.cuda.is_available():
        print_plan(steps, notes, "--dry-run: nothing is run" if dry_run else
                   "torch.cuda.is_available() is False on this machine: nothing is run")
        return
    print_plan(steps, notes, f"running on {torch.cuda.get_device_name(0)}")
    failed = execute(steps, timeout)
    if failed:
        raise click.ClickException(f"gpu-check: step(s) failed: {', '.join(failed)}")


def execute(steps: list[Step], timeout: float | None = None) -> list[str]:
    """Run ``steps`` in order (every one, whatever the previous did), printing each one's command, exit status and
    wall time, then a summary; returns the keys of those that failed. Before the serve step: which providers a
    session asked for its ``TRADECAST_ORT_PROVIDERS`` actually gets."""
    failed, summary = [], []
    for i, step in enumerate(steps, 1):
        if "TRADECAST_ORT_PROVIDERS" in step.env:
            click.echo(_probe(step.env["TRADECAST_ORT_PROVIDERS"].split(",")))
        click.echo(f"[{i}/{len(steps)}] {step.key}: {step.command()}")
        rc, wall, problem = run_step(step, timeout)
        click.echo(f"[{i}/{len(steps)}] {step.key}: exit {rc} in {wall:.1f} s" + (f": FAILED ({problem})" if problem
                                                                                 else ""))
        failed += [step.key] if problem else []
        summary.append(f"  {step.key:6s} exit {rc:<4d} {wall:9.1f} s  {problem or ', '.join(map(str, step.outputs))}")
    click.echo("gpu-check summary:\n" + "\n".join(summary))
    return failed


if __name__ == "__main__":  # step 1's subprocess: python -m pipelines.cli.gpu_check --train-smoke ...
    gpu_check()
