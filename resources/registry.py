"""The MLflow model registry: local sqlite backend `$TRADECAST_HOME/mlflow.db`, artifacts in
`$TRADECAST_HOME/mlartifacts`. One registered model per `nhits-<asset_class>-<target>`, aliases
`champion` and `challenger`. Each version is stored as code (`resources/mlflow_model.py`) with its weights in
safetensors and its parameters in JSON; nothing is pickled. mlflow is imported inside the methods (it is slow
to import)."""

import contextlib
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from models.store import mlflow_uri, model_name  # noqa: F401  (model_name: one naming rule for all rooms)
from resources.settings import Settings

PIP_REQUIREMENTS = ["neuralforecast", "torch", "pandas", "numpy"]
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")  # MLflow "models from code": the model is this file


FILES_TAG = "files"  # {path of a weights/parameters file: [bytes, sha256]}: recorded at registration, checked on load


class IncompleteModel(RuntimeError):
    """A registered version whose stored weights or parameters are missing or differ from those registered."""


def _files(folder: Path) -> dict[str, list]:
    """The files a version is rebuilt from (``artifacts/`` of its model folder: JSON and safetensors), by path."""
    from ingest.files import sha256_of

    return {p.relative_to(folder).as_posix(): [p.stat().st_size, sha256_of(p)]
            for p in sorted((folder / "artifacts").rglob("*")) if p.is_file()}


@contextlib.contextmanager
def _writing(path: Path):
    """An OSError that names no file (a full disk under a library's ``write``) names ``path``, what was written."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


def _numbers(metrics: dict) -> dict[str, float]:
    """The metrics MLflow can store (no None, no NaN)."""
    return {k: float(v) for k, v in metrics.items() if v is not None and not math.isnan(float(v))}


class ModelRegistry(dg.ConfigurableResource):
    """Tracking and registry in one local MLflow store under TRADECAST_HOME."""

    settings: Settings
    experiment: str = "tradecast"
    _instance: Any = PrivateAttr(default=None)  # the Dagster instance and run using this resource, if any
    _run_id: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._instance, self._run_id = context.instance, context.run_id

    @property
    def tracking_uri(self) -> str:
        return mlflow_uri(str(self.settings.root))

    def client(self):
        import logging
        import os

        import mlflow
        from mlflow import MlflowClient

        # keep run logs readable: no artifact progress bars, no per-version INFO chatter, and no notice that a
        # signature cannot be inferred from the model code's DataFrame type hint (the input has optional columns)
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
            mlflow.log_metrics(_numbers(metrics))
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
        of `name`; returns the version number. `kind` is 'nhits' (give `nf`) or 'baseline' (`baseline`).

        Crash-safe: the version is registered last, with its tags in the same commit, once every file is logged
        and the run has ended; a process killed before that leaves a run (marked KILLED by the next run,
        `close_abandoned_runs`) and no version, never a version without its files or tags."""
        import mlflow

        from resources.pyfunc import BASELINE_ARTIFACT, NHITS_ARTIFACT

        self.close_abandoned_runs()
        with tempfile.TemporaryDirectory() as tmp, \
                mlflow.start_run(experiment_id=self.experiment_id(), run_name=run_name) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics(_numbers(metrics))
            mlflow.set_tags({**({"dagster_run_id": self._run_id} if self._run_id else {}), **tags, "model_kind": kind})
            mlflow.log_table(evaluation, artifact_file="evaluation.json")
            if plot_png:
                (Path(tmp) / "forecast.png").write_bytes(plot_png)
                mlflow.log_artifact(str(Path(tmp) / "forecast.png"))
            if kind == "nhits":
                from models.forecasting import save_model

                with _writing(Path(tmp) / "nf"):
                    artifacts = {NHITS_ARTIFACT: save_model(nf, Path(tmp) / "nf")}
            else:
                with _writing(Path(tmp) / "baseline.json"):
                    (Path(tmp) / "baseline.json").write_text(json.dumps(baseline))
                artifacts = {BASELINE_ARTIFACT: str(Path(tmp) / "baseline.json")}
            info = mlflow.pyfunc.log_model(name="model", python_model=str(MODEL_CODE), artifacts=artifacts,
                                           pip_requirements=PIP_REQUIREMENTS)
        stored = self._model_folder(info.model_uri)
        files = {FILES_TAG: json.dumps(_files(stored), separators=(",", ":"))} if stored else {}
        version = mlflow.register_model(info.model_uri, name,
                                        tags={"model_kind": kind, "run_id": run.info.run_id, **files})
        return str(version.version)

    def _model_folder(self, source: str) -> Path | None:
        """The folder holding a version's model files (``source`` = models:/m-<id>); None for a remote store."""
        from urllib.parse import unquote, urlparse

        location = urlparse(self.client().get_logged_model(source.removeprefix("models:/")).artifact_location)
        return Path(unquote(location.path)) if location.scheme == "file" else None

    def close_abandoned_runs(self) -> list[str]:
        """Mark KILLED the runs of the experiment that a killed Dagster run left RUNNING (tag ``dagster_run_id``, set
        on every run logged in a Dagster run, naming a run that has ended: failed by `pipelines.run_guard` or the
        daemon's run monitoring); returns their ids. Needs the Dagster instance of the run using this resource
        (none outside a run: nothing is done)."""
        client = self.client()
        if self._instance is None:
            return []
        closed = []
        for run in client.search_runs([self.experiment_id()], "attributes.status = 'RUNNING'"):
            dagster_run = self._instance.get_run_by_id(run.data.tags.get("dagster_run_id") or "")
            if dagster_run is not None and dagster_run.is_finished:
                client.set_tag(run.info.run_id, "tradecast/ended", f"Dagster run {dagster_run.run_id[:8]} ended "
                               f"({dagster_run.status.value}) while this run was RUNNING: its process was killed")
                client.set_terminated(run.info.run_id, "KILLED")
                closed.append(run.info.run_id)
        return closed

    def log_onnx(self, name: str, version: str, folder: Path, tags: dict[str, str]) -> None:
        """Attach an ONNX export (``folder`` = model.onnx, maybe model.int8.onnx, export.json) to the version's
        run under ``onnx/`` and tag the version (tag ``onnx`` marks it servable). The tag is set last, and a
        re-export removes it before it overwrites the files: a kill mid-copy leaves a version that is not servable
        (the next export writes it again), never one tagged servable over half-written files."""
        client = self.client()
        stored = client.get_model_version(name, version)
        if "onnx" in stored.tags:
            client.delete_model_version_tag(name, version, "onnx")
        client.log_artifacts(stored.run_id, str(folder), artifact_path="onnx")
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
        """The forecaster of `name` at an alias (e.g. 'champion') or a version number: `.predict(history)`, and
        `.nf` (NHITS) or `.forecaster` (baseline). Rebuilt by the installed code from the version's JSON and
        safetensors files: nothing stored is executed or unpickled (see `resources.pyfunc`). Files missing from the
        store, or differing from those registered, are an `IncompleteModel` error naming them."""
        import mlflow

        from resources.pyfunc import load_dir

        client = self.client()
        version = (client.get_model_version(name, str(alias_or_version)) if str(alias_or_version).isdigit()
                   else client.get_model_version_by_alias(name, alias_or_version))
        ref = f"{name}/{version.version}"
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{ref}", dst_path=tmp))
            recorded = json.loads(version.tags.get(FILES_TAG) or "{}")  # none: registered before files were recorded
            found = _files(folder) if recorded else {}
            bad = [f"{path} {'is missing' if path not in found else 'differs from the registered file'}"
                   for path, entry in recorded.items() if found.get(path) != entry]
            if bad:
                raise IncompleteModel(f"models:/{ref}: the stored model is incomplete: {'; '.join(bad)} (in "
                                      f"{self._model_folder(version.source) or version.source}); restore mlartifacts/ "
                                      "from a backup or register the model again")
            return load_dir(folder, f"models:/{ref}")
