"""The forecaster a registered version holds, stored and loaded without pickle.

A version's MLflow model is "models from code": the code is `storage/mlflow_model.py` (MLflow copies the file
into the model), the data are artifacts read as data: an NHITS version `nf_dir` (neuralforecast's
`configuration.json` + `NHITS_0.safetensors`), a baseline version `baseline` (its JSON parameters).

`load_dir` (behind `ModelRegistry.load`) rebuilds the forecaster with the code installed here from those files:
nothing stored is executed (not even the stored copy of the model code) or unpickled, and a model folder
holding anything else (a pickle, a checkpoint) is refused, naming the file. `mlflow.pyfunc.load_model(...)`
still works for anyone else: it runs the stored code file, which calls the same `from_artifacts`.

Both forecasters answer `predict(history)` -> forecast frame (unique_id, ds, step, yhat, lo, hi), like an MLflow
`PyFuncModel`; `unwrap_python_model()` returns the forecaster itself (`.nf` or `.forecaster`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NHITS_ARTIFACT, BASELINE_ARTIFACT = "nf_dir", "baseline"
MODEL_FOLDER_SUFFIXES = (".json", ".safetensors", ".yaml", ".txt", ".py")  # data, and the code copy we never run
MODEL_FOLDER_NAMES = ("MLmodel", "registered_model_meta")  # MLflow's YAML files without a suffix
LEGACY = ("a version registered before models were stored as code, or altered since: delete that version in "
          "MLflow, or start from a fresh $TRADECAST_HOME, and run train_job again")


class UnsafeModelError(ValueError):
    """A stored model folder holds something that could run code when read, or is not ours."""


class _Forecaster:
    """What every stored forecaster answers: `h`, `input_size`, `freq`, its exogenous columns `hist_exog` and
    `futr_exog` (empty for all but an event-aware NHITS) and `predict(history)`."""

    h: int
    input_size: int
    freq: str
    hist_exog: tuple[str, ...] = ()
    futr_exog: tuple[str, ...] = ()

    def unwrap_python_model(self):
        """The forecaster itself (the interface of an MLflow `PyFuncModel`)."""
        return self

    @property
    def exog(self) -> tuple[str, ...]:
        """Every exogenous column the model reads (historical, then future)."""
        return (*self.hist_exog, *self.futr_exog)


class NHITSModel(_Forecaster):
    """A fitted NeuralForecast (`.nf`). `predict(history)`: the history frame (unique_id, ds, y); an event-aware
    version (tag features=events) also needs its event feature columns and, for future exogenous ones
    (fomc_day), h rows per series after the history with y empty (`models.events.features.future_rows`): see
    `models.forecasting.forecast`."""

    def __init__(self, nf: Any):
        from models.nf_frames import exog_of

        self.nf = nf
        model = nf.models[0]
        self.h, self.input_size, self.freq = int(model.h), int(model.input_size), nf.freq
        hist, futr = exog_of(nf)
        self.hist_exog, self.futr_exog = tuple(hist), tuple(futr)

    def predict(self, model_input, params=None):
        from models.forecasting import forecast

        return forecast(self.nf, model_input)


class BaselineModel(_Forecaster):
    """A naive baseline (`.forecaster`, built from its JSON parameters); no weights, no interval."""

    def __init__(self, forecaster: Any):
        self.forecaster = forecaster
        self.h, self.input_size, self.freq = forecaster.h, forecaster.input_size, forecaster.freq

    def predict(self, model_input, params=None):
        out = self.forecaster.predict(model_input)
        return out.assign(lo=float("nan"), hi=float("nan"))


def from_artifacts(artifacts: dict[str, str]) -> NHITSModel | BaselineModel:
    """The forecaster of a version from its local artifact paths (key `nf_dir` or `baseline`)."""
    if NHITS_ARTIFACT in artifacts:
        from models.forecasting import load_model

        return NHITSModel(load_model(artifacts[NHITS_ARTIFACT], accelerator="cpu"))
    if BASELINE_ARTIFACT in artifacts:
        from models.baselines import BaselineForecaster

        return BaselineModel(BaselineForecaster(**json.loads(Path(artifacts[BASELINE_ARTIFACT]).read_text())))
    raise UnsafeModelError(f"no model artifact: expected {NHITS_ARTIFACT!r} or {BASELINE_ARTIFACT!r}, "
                           f"got {sorted(artifacts)}")


def check_model_folder(folder: Path, label: str) -> None:
    """Refuse a downloaded MLflow model folder with a file that is not data or our code copy (a pickle such as
    python_model.pkl, a checkpoint): reading it could run code."""
    other = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                   if p.is_file() and p.name not in MODEL_FOLDER_NAMES and p.suffix not in MODEL_FOLDER_SUFFIXES)
    if other:
        raise UnsafeModelError(
            f"{label}: the stored model holds {other}, which could run code when loaded (pickle/checkpoint); "
            f"tradecast stores models as code + JSON + safetensors only and refuses to load it "
            f"({LEGACY})")


def load_dir(folder: Path, label: str) -> NHITSModel | BaselineModel:
    """The forecaster of a downloaded MLflow model folder, read from its MLmodel (YAML), JSON and safetensors."""
    import yaml

    check_model_folder(folder, label)
    flavor = yaml.safe_load((folder / "MLmodel").read_text()).get("flavors", {}).get("python_function", {})
    if "model_code_path" not in flavor:
        raise UnsafeModelError(f"{label}: not a models-from-code version (no model_code_path in MLmodel); "
                               f"refusing to load it ({LEGACY})")
    root, artifacts = folder.resolve(), {}
    for key, entry in (flavor.get("artifacts") or {}).items():
        path = (folder / entry["path"]).resolve()
        if not path.is_relative_to(root):
            raise UnsafeModelError(f"{label}: artifact {key!r} points outside the model folder ({entry['path']})")
        artifacts[key] = str(path)
    return from_artifacts(artifacts)
