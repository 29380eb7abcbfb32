"""The MLflow model registry: local sqlite backend `$TRADECAST_HOME/mlflow.db`, artifacts in
`$TRADECAST_HOME/mlartifacts`. One registered model per `nhits-<asset_class>-<target>`, aliases
`champion` and `challenger`. mlflow is imported inside the methods (it is slow to import)."""

import json
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg

from models.store import mlflow_uri, model_name  # noqa: F401  (model_name: one naming rule for all rooms)
from resources.settings import Settings

PIP_REQUIREMENTS = ["neuralforecast", "torch", "pandas", "numpy"]


class ModelRegistry(dg.ConfigurableResource):
    """Tracking and registry in one local MLflow store under TRADECAST_HOME."""

    settings: Settings
    experiment: str = "tradecast"

    @property
    def tracking_uri(self) -> str:
        return mlflow_uri(str(self.settings.root))

    def client(self):
        import logging
        import os

        import mlflow
        from mlflow import MlflowClient

        # keep run logs readable: no artifact progress bars, no per-version INFO chatter, and no notice that a
        # python_model object is pickled (we load only models this project registered itself)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        return MlflowClient(self.tracking_uri, self.tracking_uri)

    def experiment_id(self, experiment: str | None = None) -> str:
        client = self.client()
        name = experiment or self.experiment
        found = client.get_experiment_by_name(name)
        if found:
            return found.experiment_id
        artifacts = (self.settings.root / "mlartifacts").resolve()
        artifacts.mkdir(parents=True, exist_ok=True)
        return client.create_experiment(name, artifact_location=artifacts.as_uri())

    def log_benchmark(self, *, run_name: str, params: dict, metrics: dict[str, float], tags: dict[str, str],
                      files: dict[str, bytes | str]) -> str:
        """One run in the `<experiment>-benchmarks` experiment (params, metrics, report files); returns its id."""
        import mlflow

        self.client()
        with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(
                experiment_id=self.experiment_id(f"{self.experiment}-benchmarks"), run_name=run_name) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v and v is not None})
            mlflow.set_tags(tags)
            for file_name, content in files.items():
                path = Path(tmp) / file_name
                path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
                mlflow.log_artifact(str(path))
        return run.info.run_id

    def log_version(self, name: str, *, kind: str, params: dict, metrics: dict[str, float], tags: dict[str, str],
                    evaluation, plot_png: bytes | None = None, nf: Any = None, baseline: dict | None = None,
                    run_name: str | None = None) -> str:
        """One MLflow run (params, metrics, evaluation table, plot, model) and a new registered version
        of `name`; returns the version number. `kind` is 'nhits' (give `nf`) or 'baseline' (`baseline`)."""
        import mlflow

        from resources.pyfunc import BaselineModel, NHITSModel

        self.client()
        with tempfile.TemporaryDirectory() as tmp, \
                mlflow.start_run(experiment_id=self.experiment_id(), run_name=run_name) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
            mlflow.set_tags({**tags, "model_kind": kind})
            mlflow.log_table(evaluation, artifact_file="evaluation.json")
            if plot_png:
                (Path(tmp) / "forecast.png").write_bytes(plot_png)
                mlflow.log_artifact(str(Path(tmp) / "forecast.png"))
            if kind == "nhits":
                from models.forecasting import save_model

                artifacts, python_model = {"nf_dir": save_model(nf, Path(tmp) / "nf")}, NHITSModel()
            else:
                (Path(tmp) / "baseline.json").write_text(json.dumps(baseline))
                artifacts, python_model = {"baseline": str(Path(tmp) / "baseline.json")}, BaselineModel()
            info = mlflow.pyfunc.log_model(name="model", python_model=python_model, artifacts=artifacts,
                                           pip_requirements=PIP_REQUIREMENTS, registered_model_name=name)
        version = str(info.registered_model_version)
        client = self.client()
        client.set_model_version_tag(name, version, "model_kind", kind)
        client.set_model_version_tag(name, version, "run_id", run.info.run_id)
        return version

    def log_onnx(self, name: str, version: str, folder: Path, tags: dict[str, str]) -> None:
        """Attach an ONNX export (``folder`` = model.onnx, maybe model.int8.onnx, export.json) to the version's
        run under ``onnx/`` and tag the version (tag ``onnx`` marks it servable)."""
        client = self.client()
        run_id = client.get_model_version(name, version).run_id
        client.log_artifacts(run_id, str(folder), artifact_path="onnx")
        self.tag(name, version, {**tags, "onnx": "onnx/model.onnx"})

    def alias(self, name: str, alias: str):
        """The model version holding `alias`, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client().get_model_version_by_alias(name, alias)
        except MlflowException:
            return None

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client().set_registered_model_alias(name, alias, version)

    def tag(self, name: str, version: str, tags: dict[str, str]) -> None:
        client = self.client()
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, str(value)[:5000])

    def load(self, name: str, alias_or_version: str):
        """The pyfunc model of `name` at an alias (e.g. 'champion') or a version number."""
        import mlflow

        self.client()
        ref = f"{name}/{alias_or_version}" if str(alias_or_version).isdigit() else f"{name}@{alias_or_version}"
        return mlflow.pyfunc.load_model(f"models:/{ref}")
