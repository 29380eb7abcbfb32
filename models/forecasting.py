"""Forecast with a fitted NeuralForecast, and save / load it.

Persistence: neuralforecast 3.3 writes a "v2" directory (``configuration.json``,
weights as ``NHITS_0.safetensors``, optionally ``dataset.safetensors``) and
loads it without pickle or ``torch.load`` at all; ``torch.load`` is only used
for legacy v1 ``.ckpt`` directories, and there neuralforecast itself forces
``weights_only=True`` unless ``allow_pickle=True``. :func:`load_model` never
passes ``allow_pickle``. Lightning callbacks (our step logger) are not saved;
trainer settings that are (accelerator/precision) are reset to this machine's
on load, so a model trained on GPU in bf16 loads and predicts on a CPU.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from models.evaluation import tidy_nf_output

FORECAST_COLUMNS = ["unique_id", "ds", "step", "yhat", "lo", "hi"]


def forecast(nf: Any, frame: pd.DataFrame, *, alias: str = "NHITS") -> pd.DataFrame:
    """The ``h`` steps after each series' last row in ``frame`` (``unique_id, ds, y``).

    Returns ``unique_id, ds, step (1..h), yhat, lo, hi``; ``lo``/``hi`` bound the
    80% interval and are NaN when the model's loss gives no interval.
    """
    from models.nhits import lightning_quiet

    with lightning_quiet():
        raw = nf.predict(df=frame[["unique_id", "ds", "y"]])
    out = tidy_nf_output(raw, alias).sort_values(["unique_id", "ds"], ignore_index=True)
    out["step"] = out.groupby("unique_id").cumcount() + 1
    return out[FORECAST_COLUMNS]


def save_model(nf: Any, path: str | os.PathLike[str], *, overwrite: bool = True) -> str:
    """Save ``nf`` to directory ``path`` (weights + config; no training data). Returns the path."""
    path = os.fspath(path)
    nf.save(path=path, save_dataset=False, overwrite=overwrite)
    return path


def load_model(path: str | os.PathLike[str], *, accelerator: str = "auto") -> Any:
    """Load a directory written by :func:`save_model`, ready to predict on this machine."""
    import torch
    from neuralforecast import NeuralForecast

    from models.nhits import lightning_quiet, trainer_settings

    with lightning_quiet():
        nf = NeuralForecast.load(path=os.fspath(path))
    settings = trainer_settings(accelerator)
    for model in nf.models:
        model.trainer_kwargs.update(settings)
        if settings["accelerator"] == "cpu":
            model.trainer_kwargs.pop("strategy", None)
            model.to(torch.device("cpu"))
    return nf
