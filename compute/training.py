"""NHITS training as a Ray task: the asset reads the frames, these functions ship them to the cluster (object
store), train and evaluate there, and bring back the weights and the scores; the asset writes them.

The weights travel as the files of ``models.forecasting.save_model`` (JSON + safetensors, read back through
``load_model``, which refuses anything else), never as a pickled model; the evaluation tables travel as Ray
objects (Arrow-backed pandas through Ray's own serializer, between this project's processes only)."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_CPUS_PER_TRAINING = 1.0


@dataclasses.dataclass
class Shipped:
    """A :class:`models.evaluation.TrainResult` without its model, plus the model's files and where it ran."""

    result: Any  # TrainResult with nf=None
    files: dict[str, bytes]
    node: str
    train_loss_trajectory: list[tuple[int, float]]
    started_at: float = 0.0  # wall clock (time.time) on the worker: when the task began and ended
    ended_at: float = 0.0


def _pack(result, started_at: float) -> Shipped:
    import ray

    from models.forecasting import save_model

    model = result.nf.models[0]
    trajectory = [(int(s), float(v)) for s, v in getattr(model, "train_trajectories", [])]
    with tempfile.TemporaryDirectory() as tmp:
        save_model(result.nf, Path(tmp) / "model")
        files = {p.name: p.read_bytes() for p in (Path(tmp) / "model").iterdir()}
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
    return Shipped(result=dataclasses.replace(result, nf=None), files=files, node=node,
                   train_loss_trajectory=trajectory, started_at=started_at, ended_at=time.time())


def unpack(shipped: Shipped, workdir: str | Path, *, accelerator: str = "auto"):
    """The TrainResult with its model loaded (on this machine's device) from the shipped files, written to a
    temporary folder under ``workdir`` that is removed once the weights are in memory."""
    from models.forecasting import load_model

    with tempfile.TemporaryDirectory(prefix="shipped-", dir=workdir) as folder:
        for name, content in shipped.files.items():
            if Path(name).name != name:  # file names come from save_model; a path in one would escape the folder
                raise ValueError(f"shipped model file {name!r} is not a plain file name")
            (Path(folder) / name).write_bytes(content)
        return dataclasses.replace(shipped.result, nf=load_model(folder, accelerator=accelerator))


def train_task(frame, spec, kwargs: dict) -> Shipped:
    """What runs on a Ray worker: ``models.evaluation.train_and_evaluate(frame, spec, **kwargs)``, packed."""
    from models.evaluation import train_and_evaluate

    started_at = time.time()
    return _pack(train_and_evaluate(frame, spec, **kwargs), started_at)


def submit(frame, spec, *, num_cpus: float = DEFAULT_CPUS_PER_TRAINING, num_gpus: float = 0, **kwargs):
    """Start one training on the connected cluster; returns its ObjectRef (``ray.get`` gives a :class:`Shipped`).
    ``kwargs`` go to ``train_and_evaluate`` (no ``log_fn``: the trajectory comes back instead)."""
    import ray

    if not ray.is_initialized():
        raise ValueError("Ray is not initialised: connect first (compute.cluster.connect or the `ray` resource)")
    remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)(train_task)
    return remote.remote(ray.put(frame), spec, kwargs)


def train_many(jobs: Sequence[tuple[Any, Any, dict]], *, num_cpus: float = DEFAULT_CPUS_PER_TRAINING,
               num_gpus: float = 0) -> list[Shipped]:
    """Several trainings at once, as many in parallel as the cluster has slots; results in ``jobs`` order."""
    import ray

    refs = [submit(frame, spec, num_cpus=num_cpus, num_gpus=num_gpus, **kw) for frame, spec, kw in jobs]
    return ray.get(refs)
