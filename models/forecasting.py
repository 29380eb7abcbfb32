"""Forecast with a fitted NeuralForecast, and save / load it.

Persistence: neuralforecast 3.3 writes a "v2" directory (``configuration.json``,
weights as ``NHITS_0.safetensors``) and reads it back without pickle or
``torch.load``. A legacy v1 directory (``*.pkl`` sidecars, ``.ckpt`` weights)
would be read through pickle, so :func:`load_model` accepts only a directory
holding JSON and safetensors files and refuses anything else by name, and
:func:`save_model` checks it wrote nothing else. Lightning callbacks (our step
logger) are not saved; trainer settings that are (accelerator/precision) are
reset to this machine's on load, so a model trained on GPU in bf16 loads and
predicts on a CPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from models.nf_frames import exog_of, model_columns, tidy_nf_output

FORECAST_COLUMNS = ["unique_id", "ds", "step", "yhat", "lo", "hi"]


def forecast(nf: Any, frame: pd.DataFrame, *, alias: str = "NHITS") -> pd.DataFrame:
    """The ``h`` steps after each series' last observed row in ``frame`` (``unique_id, ds, y``).

    A model with exogenous columns (event-aware NHITS) needs them in ``frame``; one with *future* exogenous
    columns also needs ``h`` rows per series after its history with ``y`` empty that carry those columns
    (:func:`models.events.features.future_rows`). Those rows are matched to the horizon positionally (step k = the k-th
    row), like neuralforecast's windows: their ``ds`` may skip a holiday the ``freq`` calendar does not know.

    Returns ``unique_id, ds, step (1..h), yhat, lo, hi``; ``lo``/``hi`` bound the
    80% interval and are NaN when the model's loss gives no interval.
    """
    from models.nhits import lightning_quiet

    hist, futr = exog_of(nf)
    known = model_columns(frame[frame["y"].notna()], hist + futr)
    futr_df = _future_exog(nf, known, frame[frame["y"].isna()], futr) if futr else None
    with lightning_quiet():
        raw = nf.predict(df=known, futr_df=futr_df)
    out = tidy_nf_output(raw, alias).sort_values(["unique_id", "ds"], ignore_index=True)
    out["step"] = out.groupby("unique_id").cumcount() + 1
    return out[FORECAST_COLUMNS]


def _future_exog(nf: Any, known: pd.DataFrame, future: pd.DataFrame, futr: list[str]) -> pd.DataFrame:
    """neuralforecast's future frame (its ``freq`` calendar) with the future columns of ``future``, by step."""
    expected = nf.make_future_dataframe(df=known[["unique_id", "ds", "y"]])
    expected["step"] = expected.groupby("unique_id").cumcount()
    future = future.sort_values(["unique_id", "ds"], kind="stable")
    future = future.assign(step=future.groupby("unique_id").cumcount())
    out = expected.merge(future[["unique_id", "step", *futr]], on=["unique_id", "step"], how="left")
    short = out[out[futr].isna().any(axis=1)]
    if len(short):
        raise ValueError(f"the model reads future exogenous column(s) {futr}: give {nf.h} rows per series after its "
                         f"history, y empty, with those columns (models.events.features.future_rows); "
                         f"{short.unique_id.iloc[0]} has fewer")
    return out.drop(columns="step")


STORED_SUFFIXES = (".json", ".safetensors")  # all a model directory may hold: nothing in it can run code


def check_model_dir(path: str | os.PathLike[str]) -> None:
    """Refuse a model directory that is not neuralforecast's v2 format of JSON and safetensors files only: a
    pickle, a checkpoint or a legacy v1 directory could run code when read."""
    path = Path(path)
    if not (path / "configuration.json").is_file():
        raise ValueError(f"{path}: no configuration.json, so not a model directory written by save_model "
                         f"(neuralforecast v2: JSON + safetensors); refusing to read it")
    other = sorted(p.name for p in path.iterdir() if not (p.is_file() and p.suffix in STORED_SUFFIXES))
    if other:
        raise ValueError(f"{path}: {other} not JSON or safetensors (a pickle or checkpoint could run code when "
                         f"read); a model directory holds only {list(STORED_SUFFIXES)} files; refusing to read it")


def save_model(nf: Any, path: str | os.PathLike[str], *, overwrite: bool = True) -> str:
    """Save ``nf`` to directory ``path`` (JSON configuration + safetensors weights; no training data).
    Returns the path."""
    path = os.fspath(path)
    nf.save(path=path, save_dataset=False, overwrite=overwrite)
    check_model_dir(path)
    return path


def load_model(path: str | os.PathLike[str], *, accelerator: str = "auto") -> Any:
    """Load a directory written by :func:`save_model`, ready to predict on this machine (refused, naming the file,
    when it holds anything but JSON and safetensors)."""
    import torch
    from neuralforecast import NeuralForecast

    from models.nhits import lightning_quiet, trainer_settings

    check_model_dir(path)
    with lightning_quiet():
        nf = NeuralForecast.load(path=os.fspath(path))
    settings = trainer_settings(accelerator)
    for model in nf.models:
        model.trainer_kwargs.update(settings)
        if settings["accelerator"] == "cpu":
            model.trainer_kwargs.pop("strategy", None)
            model.to(torch.device("cpu"))
    return nf
