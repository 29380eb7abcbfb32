"""Data-parallel training of one NHITS with Lightning DDP, in a dedicated subprocess.

Why a subprocess: Lightning's DDP launcher starts the extra processes by
re-executing ``sys.argv``; a Dagster worker, a Ray task or pytest must not be
re-executed. :func:`fit_data_parallel` writes the training frame (``unique_id,
ds, y``) to parquet and a JSON request into a fresh directory under ``workdir``
and runs ``python -m models.ddp --request REQ.json --out DIR`` (cwd = repo root,
``MASTER_ADDR=127.0.0.1``, a free ``MASTER_PORT``); Lightning then re-runs that
same command for ranks 1..n-1. Rank 0 alone writes ``DIR/result.json`` and the
fitted model (:func:`models.forecasting.save_model`: JSON + safetensors) to
``DIR/model``. Nothing is pickled: the spec travels as JSON and is rebuilt.

Same effective batch: NHITS is univariate, so neuralforecast leaves Lightning's
``use_distributed_sampler`` on and every rank's ``TimeSeriesLoader`` gets a
``DistributedSampler`` over *series* (shuffled with the same seed per epoch,
split by rank; padded by repetition when the series count is not a multiple of
the process count; validation too, where ``ptl/val_loss`` is then all-gathered,
window-weighted, so it is the loss over all series). Each rank draws
``series_batch_size`` series of its shard, then ``windows_batch_size`` windows
of them, and DDP averages the gradients. So with ``n`` processes both
``spec.batch_size`` (windows) and ``spec.series_batch_size`` are divided by
``n`` (``ValueError`` naming the field when not divisible): one optimizer step
sees ``spec.batch_size`` windows of ``spec.series_batch_size`` series, as with
one process, and an epoch has as many steps. ``train_trajectories`` are rank 0's
local losses (half the windows with 2 processes), so the reported
``final_train_loss`` is the mean of the last tenth of the steps.

Devices: ``accelerator='cpu'`` uses ``DDPStrategy(process_group_backend='gloo')``,
fp32 and ``threads`` torch threads per process; ``'gpu'`` the same code with
NCCL and :func:`models.nhits.trainer_settings`' bf16-mixed. One process runs
the same subprocess path without a DDP strategy, for a fair side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from models.configs import NHITSSpec

ROOT = Path(__file__).resolve().parents[1]
ACCELERATORS = ("cpu", "gpu")
STRATEGIES = ("ddp",)
_ROW_KEYS = ("devices", "world_size", "strategy", "accelerator", "precision", "threads_per_process",
             "per_process_batch", "effective_batch", "per_process_series_batch", "steps", "wall_s", "train_s",
             "steps_per_s", "initial_train_loss", "final_train_loss", "val_loss", "best_val_loss")


def per_process_spec(spec: NHITSSpec, devices: int) -> NHITSSpec:
    """``spec`` with ``batch_size`` and ``series_batch_size`` divided by ``devices`` (the same per-step total)."""
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        raise ValueError(f"devices must be a positive integer (got {devices!r})")
    for name in ("batch_size", "series_batch_size"):
        value = getattr(spec, name)
        if value % devices:
            raise ValueError(f"NHITSSpec.{name}={value} is not divisible by devices={devices}: each of the "
                             f"{devices} processes takes an equal share of the per-step {name}")
    return spec.replace(batch_size=spec.batch_size // devices, series_batch_size=spec.series_batch_size // devices)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def spec_from_json(fields: dict[str, Any]) -> NHITSSpec:
    """Rebuild (and validate) a spec from ``dataclasses.asdict`` output that went through JSON."""
    return NHITSSpec(**{k: _tuples(v) for k, v in fields.items()})


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(text: str, n: int = 3000) -> str:
    return text[-n:] if text else "(empty)"


def fit_data_parallel(train: pd.DataFrame, spec: NHITSSpec, freq: str, *, devices: int, accelerator: str = "cpu",
                      workdir: str | os.PathLike[str], timeout_s: float = 600, strategy: str = "ddp",
                      threads: int | None = None) -> dict[str, Any]:
    """Fit one NHITS on ``train`` with ``devices`` processes; returns rank 0's ``result.json`` plus ``model_dir``.

    ``spec.batch_size`` / ``spec.series_batch_size`` are the per-step totals (see the module docstring).
    ``threads``: torch threads per CPU process (default ``cpu_count // devices``). ``RuntimeError`` with
    the tail of stderr when the subprocess fails or runs past ``timeout_s`` (its whole process group is killed).
    """
    per_process_spec(spec, devices)
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator must be one of {list(ACCELERATORS)} (got {accelerator!r})")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)} (got {strategy!r})")
    threads = threads or max(1, (os.cpu_count() or 1) // devices)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"ddp-{devices}x{accelerator}-", dir=workdir))
    data, out = run_dir / "train.parquet", run_dir / "out"
    train[["unique_id", "ds", "y"]].to_parquet(data, index=False)
    request = {"spec": dataclasses.asdict(spec), "freq": freq, "devices": devices, "accelerator": accelerator,
               "strategy": strategy, "threads": threads, "data": str(data)}
    (run_dir / "request.json").write_text(json.dumps(request, indent=2))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    if accelerator == "cpu":
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "models.ddp", "--request", str(run_dir / "request.json"), "--out", str(out)]
    what = f"NHITS fit on {devices} x {accelerator} ({' '.join(cmd)})"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: the ranks Lightning starts
    try:
        _, stderr = proc.communicate(timeout=timeout_s)  # returns once every rank closed the pipes
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        raise RuntimeError(f"{what} ran past {timeout_s}s; stderr tail:\n{_tail(stderr)}") from None
    finally:
        data.unlink(missing_ok=True)
    if proc.returncode != 0 or not (out / "result.json").is_file():
        raise RuntimeError(f"{what} failed (exit {proc.returncode}); stderr tail:\n{_tail(stderr)}")
    result = json.loads((out / "result.json").read_text())
    result["model_dir"] = str(out / "model")
    return result


def ddp_benchmark(train: pd.DataFrame, spec: NHITSSpec, freq: str, *, devices_list: tuple[int, ...] = (1, 2),
                  workdir: str | os.PathLike[str], accelerator: str = "cpu", timeout_s: float = 600) -> list[dict]:
    """One fit per entry of ``devices_list`` (same spec, same per-step batch, same torch threads per process),
    as flat rows: speed, losses, and the relative differences to the first entry."""
    threads = max(1, (os.cpu_count() or 1) // max(devices_list))
    rows: list[dict[str, Any]] = []
    for devices in devices_list:
        result = fit_data_parallel(train, spec, freq, devices=devices, accelerator=accelerator, workdir=workdir,
                                   timeout_s=timeout_s, threads=threads)
        rows.append({**{k: result[k] for k in _ROW_KEYS}, "model_dir": result["model_dir"]})
    base = rows[0]
    for row in rows:
        row["speedup_vs_1"] = (row["steps_per_s"] / base["steps_per_s"]
                               if row["steps_per_s"] and base["steps_per_s"] else None)
        for key, name in (("val_loss", "loss_rel_diff_vs_1"), ("final_train_loss", "train_loss_rel_diff_vs_1")):
            row[name] = (abs(row[key] - base[key]) / abs(base[key])
                         if row[key] is not None and base[key] else None)
    return rows


def _rank_and_world() -> tuple[int, int]:
    """This process' rank and the world size (the process group lives until exit; env as a fallback)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))), int(os.environ.get("WORLD_SIZE", 1))


def _strategy(name: str, accelerator: str, devices: int) -> Any:
    """The Lightning strategy object for ``name`` (only ``'ddp'``): gloo on CPU, NCCL on CUDA."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)} (got {name!r})")
    if devices == 1:
        return None  # Lightning's single-device strategy
    from pytorch_lightning.strategies import DDPStrategy

    return DDPStrategy(process_group_backend="gloo" if accelerator == "cpu" else "nccl")


def _child(request_path: Path, out: Path) -> None:
    """One rank of a fit (every rank runs this; see :func:`fit_data_parallel`)."""
    import torch
    from neuralforecast import NeuralForecast

    from models.forecasting import save_model
    from models.nhits import best_checkpoint, build_nhits, lightning_quiet

    request = json.loads(request_path.read_text())
    spec, devices, accelerator = spec_from_json(request["spec"]), request["devices"], request["accelerator"]
    if accelerator == "cpu":
        torch.set_num_threads(request["threads"])
    local = per_process_spec(spec, devices)
    step_times: list[float] = []
    model = build_nhits(local, accelerator=accelerator, log_every_n_steps=1,
                        log_fn=lambda step, loss: step_times.append(time.perf_counter()),
                        devices=devices, strategy=_strategy(request["strategy"], accelerator, devices))
    nf = NeuralForecast(models=[model], freq=request["freq"])
    df = pd.read_parquet(request["data"])
    start = time.perf_counter()
    with lightning_quiet():
        nf.fit(df=df, val_size=spec.val_size)
    wall = time.perf_counter() - start
    rank, world_size = _rank_and_world()
    if rank != 0:
        return  # only rank 0 writes
    fitted = nf.models[0]
    train_traj = [(int(s), float(v)) for s, v in fitted.train_trajectories]
    val_traj = [(int(s), float(v)) for s, v in fitted.valid_trajectories]
    tail = train_traj[-max(1, len(train_traj) // 10):]
    best = best_checkpoint(nf) or {}
    span = step_times[-1] - step_times[0] if len(step_times) > 1 else 0.0
    result = {
        "devices": devices, "world_size": world_size, "accelerator": accelerator,
        "strategy": f"{request['strategy']}/{'gloo' if accelerator == 'cpu' else 'nccl'}" if devices > 1 else "single",
        "precision": str(fitted.trainer_kwargs.get("precision")), "threads_per_process": request["threads"],
        "per_process_batch": local.batch_size, "effective_batch": local.batch_size * devices,
        "per_process_series_batch": local.series_batch_size, "steps": len(train_traj),
        "wall_s": wall, "train_s": span, "steps_per_s": (len(step_times) - 1) / span if span else None,
        "initial_train_loss": train_traj[0][1] if train_traj else None,
        "final_train_loss": sum(v for _, v in tail) / len(tail) if tail else None,
        "val_loss": val_traj[-1][1] if val_traj else None, "best_val_loss": best.get("best_val_loss"),
        "best_step": best.get("best_step"), "train_trajectory": train_traj, "val_trajectory": val_traj,
        "spec": request["spec"],
    }
    out.mkdir(parents=True, exist_ok=True)
    save_model(nf, out / "model")
    (out / "result.json").write_text(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.ddp", description=_child.__doc__)
    parser.add_argument("--request", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    _child(args.request, args.out)


if __name__ == "__main__":
    main()
