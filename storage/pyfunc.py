"""The forecaster a registered version holds, stored and loaded without pickle.

A version's MLflow model is "models from code": the code is `storage/mlflow_model.py` (MLflow copies the file
into the model), the data are artifacts read as data: an NHITS version `nf_dir` (neuralforecast's
`configuration.json` + `NHITS_0.safetensors`), a baseline version `baseline` (its JSON parameters), an ensemble
version `nf_dir` plus `ensemble` (JSON `{"weight": w, "baseline": {<BaselineForecaster params>}}`: every output
column of NHITS, yhat and lo/hi, becomes `w * o + (1 - w) * b`, b the baseline's point forecast, 0 <= w <= 1).

`load_dir` (behind `ModelRegistry.load`) rebuilds the forecaster with the code installed here from those files:
nothing stored is executed (not even the stored copy of the model code) or unpickled, and a model folder
holding anything else (a pickle, a checkpoint) is refused, naming the file. `mlflow.pyfunc.load_model(...)`
still works for anyone else: it runs the stored code file, which calls the same `from_artifacts`.

Both forecasters answer `predict(history)` -> forecast frame (unique_id, ds, step, yhat, lo, hi), like an MLflow
`PyFuncModel`; `unwrap_python_model()` returns the forecaster itself (`.nf` or `.forecaster`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

NHITS_ARTIFACT, BASELINE_ARTIFACT, ENSEMBLE_ARTIFACT = "nf_dir", "baseline", "ensemble"
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


def check_ensemble(ensemble: object, h: int | None = None, input_size: int | None = None) -> dict:
    """An ensemble artifact's content, validated and normalised: ``{"weight": float, "baseline": <the
    BaselineForecaster params>}``. A ValueError naming the problem when it is not a JSON object with exactly those
    keys, the weight is not a finite number in [0, 1], the baseline parameters are not valid, or (given the NHITS's
    ``h`` / ``input_size``) the baseline forecasts another horizon or reads more values than the NHITS window (the
    served graph feeds it the last ``baseline.input_size`` values of that window)."""
    from models.served_baselines import BaselineForecaster

    if not isinstance(ensemble, dict) or set(ensemble) != {"weight", "baseline"}:
        keys = sorted(ensemble) if isinstance(ensemble, dict) else type(ensemble).__name__
        raise ValueError(f"ensemble must be a JSON object with keys ['baseline', 'weight'] (got {keys})")
    weight = ensemble["weight"]
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) \
            or not 0.0 <= weight <= 1.0:
        raise ValueError(f"ensemble weight must be a finite number in [0, 1] (got {weight!r})")
    try:
        baseline = BaselineForecaster.from_params(ensemble["baseline"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"ensemble baseline: {exc}") from exc
    if h is not None and baseline.h != h:
        raise ValueError(f"ensemble baseline h {baseline.h} != the NHITS's h {h}")
    if input_size is not None and baseline.input_size > input_size:
        raise ValueError(f"ensemble baseline input_size {baseline.input_size} > the NHITS's input_size {input_size} "
                         f"(the service gives the baseline the last values of the NHITS window)")
    if baseline.name == "seasonal_naive" and baseline.season_length > baseline.input_size:
        raise ValueError(f"ensemble baseline seasonal_naive needs season_length {baseline.season_length} <= "
                         f"input_size {baseline.input_size}")
    return {"weight": float(weight), "baseline": baseline.params()}


class NHITSModel(_Forecaster):
    """A fitted NeuralForecast (`.nf`), alone or in an ensemble with a served baseline (`.ensemble`: the
    validated dict of :func:`check_ensemble`, or None; `.baseline`: its `BaselineForecaster`, or None; `.weight`:
    NHITS's weight, 1.0 alone). `predict(history)`: the history frame (unique_id, ds, y); an event-aware
    version (tag features=events) also needs its event feature columns and, for future exogenous ones
    (fomc_day), h rows per series after the history with y empty (`models.events.features.future_rows`): see
    `models.forecasting.forecast`. An ensemble's baseline reads the observed rows (y not empty) only."""

    def __init__(self, nf: Any, ensemble: dict | None = None):
        from models.nf_frames import exog_of

        self.nf = nf
        model = nf.models[0]
        self.h, self.input_size, self.freq = int(model.h), int(model.input_size), nf.freq
        hist, futr = exog_of(nf)
        self.hist_exog, self.futr_exog = tuple(hist), tuple(futr)
        self.ensemble = None if ensemble is None else check_ensemble(ensemble, self.h, self.input_size)
        self.baseline = None
        if self.ensemble is not None:
            from models.served_baselines import BaselineForecaster

            self.baseline = BaselineForecaster(**self.ensemble["baseline"])

    @property
    def weight(self) -> float:
        """NHITS's weight in the combination (1.0 for a plain NHITS version)."""
        return 1.0 if self.ensemble is None else self.ensemble["weight"]

    def predict(self, model_input, params=None):
        from models.forecasting import forecast

        out = forecast(self.nf, model_input)
        if self.baseline is None:
            return out
        observed = model_input[model_input["y"].notna()]
        base = self.baseline.predict(observed[["unique_id", "ds", "y"]])[["unique_id", "step", "yhat"]]
        b = out[["unique_id", "step"]].merge(base.rename(columns={"yhat": "_b"}), on=["unique_id", "step"],
                                             how="left")["_b"].to_numpy(float)
        w = self.weight
        for col in ("yhat", "lo", "hi"):
            out[col] = w * out[col].to_numpy(float) + (1.0 - w) * b
        return out


class BaselineModel(_Forecaster):
    """A naive baseline (`.forecaster`, built from its JSON parameters); no weights, no interval."""

    def __init__(self, forecaster: Any):
        self.forecaster = forecaster
        self.h, self.input_size, self.freq = forecaster.h, forecaster.input_size, forecaster.freq

    def predict(self, model_input, params=None):
        out = self.forecaster.predict(model_input)
        return out.assign(lo=float("nan"), hi=float("nan"))


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} artifact {Path(path).name} is not valid JSON: {exc}") from exc


def from_artifacts(artifacts: dict[str, str]) -> NHITSModel | BaselineModel:
    """The forecaster of a version from its local artifact paths (key `nf_dir`, with `ensemble` for an ensemble
    version, or `baseline`); a ValueError when an ensemble or baseline artifact is not valid."""
    if NHITS_ARTIFACT in artifacts:
        from models.forecasting import load_model

        ensemble = _read_json(artifacts[ENSEMBLE_ARTIFACT], "ensemble") if ENSEMBLE_ARTIFACT in artifacts else None
        return NHITSModel(load_model(artifacts[NHITS_ARTIFACT], accelerator="cpu"), ensemble=ensemble)
    if BASELINE_ARTIFACT in artifacts:
        from models.served_baselines import BaselineForecaster

        return BaselineModel(BaselineForecaster.from_params(_read_json(artifacts[BASELINE_ARTIFACT], "baseline")))
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
