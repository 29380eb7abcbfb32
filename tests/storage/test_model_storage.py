"""How a registered version is stored and loaded: MLflow "models from code", weights in safetensors, parameters in
JSON, nothing pickled; `ModelRegistry.load` never runs or unpickles what lies in `mlartifacts/` (real MLflow
store under a temporary TRADECAST_HOME)."""

import shutil
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest

from tests.assets.test_training import _sine_frame

NAME = "nhits-fx-close"
ROOT = Path(__file__).resolve().parents[2]
STORED = {".json", ".safetensors", ".yaml", ".txt", ".py"}  # data and the model code; plus MLflow's MLmodel


def _registry():
    from resources import ModelRegistry, Settings

    return ModelRegistry(settings=Settings())


def _stored_folder(registry, version: str) -> Path:
    """The version's model folder in the artifact store, where someone who can write mlartifacts/ would plant."""
    client = registry.client()
    model_id = client.get_model_version(NAME, version).source.removeprefix("models:/")
    return Path(urlparse(client.get_logged_model(model_id).artifact_location).path)


def _log(registry, **model) -> str:
    evaluation = pd.DataFrame({"model": ["nhits"], "mase": [1.0]})
    return registry.log_version(NAME, params={"h": 5}, metrics={"mase": 1.0}, tags={}, evaluation=evaluation, **model)


def _baseline_version(registry) -> tuple[str, dict]:
    params = {"name": "window_mean", "h": 5, "input_size": 20, "season_length": 5, "freq": "B"}
    return _log(registry, kind="baseline", baseline=params), params


@pytest.mark.slow
def test_a_version_is_code_json_and_safetensors_and_predicts_as_before_saving(home, tmp_path):
    import mlflow

    from models.configs import spec_for
    from models.evaluation import fit_nhits
    from models.forecasting import forecast, load_model
    from models.served_baselines import BaselineForecaster

    frame = _sine_frame(n_series=2, length=200)
    nf = fit_nhits(frame, spec_for("fx", "quick", h=5, input_size=20, max_steps=3, n_windows=1, val_size=5), "B",
                   accelerator="cpu")
    expected = forecast(nf, frame)
    registry = _registry()
    version = _log(registry, kind="nhits", nf=nf)

    folder = _stored_folder(registry, version)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert not [f for f in files if Path(f).suffix not in STORED and Path(f).name != "MLmodel"], files
    assert {"MLmodel", "mlflow_model.py", "artifacts/nf/configuration.json",
            "artifacts/nf/NHITS_0.safetensors"} <= set(files), files
    assert (folder / "mlflow_model.py").read_text() == (ROOT / "storage" / "mlflow_model.py").read_text()
    assert "model_code_path" in (folder / "MLmodel").read_text()

    loaded = registry.load(NAME, version)
    pd.testing.assert_frame_equal(loaded.predict(frame), expected)
    assert loaded.unwrap_python_model().nf.models[0].h == 5  # the interface callers use (forecasts, onnx_model)
    outside = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")  # still a valid MLflow model for anyone else
    pd.testing.assert_frame_equal(outside.predict(frame), expected)

    baseline, params = _baseline_version(registry)
    pd.testing.assert_frame_equal(registry.load(NAME, baseline).predict(frame),
                                  BaselineForecaster(**params).predict(frame).assign(lo=float("nan"), hi=float("nan")))

    legacy = shutil.copytree(folder / "artifacts" / "nf", tmp_path / "nf")  # the plain loader refuses a pickle too
    (legacy / "alias_to_model.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ValueError, match=r"alias_to_model\.pkl.*refusing to read it"):
        load_model(legacy)


def _load_error(registry, version):
    try:
        registry.load(NAME, version)
    except Exception as exc:  # noqa: BLE001  (returned, and asserted on by the caller)
        return exc
    return None


def test_planted_code_is_never_run_and_a_planted_pickle_is_refused(home, tmp_path):
    import pickle

    frame = _sine_frame(n_series=2, length=60)
    registry = _registry()
    version, _ = _baseline_version(registry)
    folder = _stored_folder(registry, version)
    marker = tmp_path / "marker"
    payload = f"open({str(marker)!r}, 'w').write('code from mlartifacts ran')"

    (folder / "mlflow_model.py").write_text(payload + "\n")  # the stored code copy is never executed
    assert len(registry.load(NAME, version).predict(frame)) == 2 * 5
    assert not marker.exists(), "the model code stored in mlartifacts/ ran on load"

    class Plant:
        def __reduce__(self):
            return exec, (payload,)

    (folder / "python_model.pkl").write_bytes(pickle.dumps(Plant()))  # what MLflow loads for a pickled model
    mlmodel = folder / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace("model_code_path", "no_code_path"))
    error = _load_error(registry, version)
    assert not marker.exists(), "a pickle planted in mlartifacts/ ran on load"
    assert type(error).__name__ == "UnsafeModelError" and "['python_model.pkl'], which could run code" in str(error)

    (folder / "python_model.pkl").unlink()  # without the pickle: not a models-from-code version, refused too
    error = _load_error(registry, version)
    assert type(error).__name__ == "UnsafeModelError" and "not a models-from-code version" in str(error)
