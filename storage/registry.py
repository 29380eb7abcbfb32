"""The MLflow model registry, one client for every room (plain MLflow, no Dagster): local sqlite backend
`$TRADECAST_HOME/mlflow.db`, artifacts in `$TRADECAST_HOME/mlartifacts`. One registered model per
`nhits-<asset_class>-<target>` with aliases `champion`, `challenger`, `previous_champion`. Each version is stored as
code (`storage/mlflow_model.py`) with its weights in safetensors and its parameters in JSON; nothing is pickled.
Versions come back typed (`storage.versions.ModelVersion`). mlflow is imported inside the methods (slow import)."""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

from domain.vocabulary import ENSEMBLE_KIND, NHITS_KIND
from storage.home import mlflow_uri, tradecast_home
from storage.versions import FILES_TAG, ModelVersion, check_files, model_files

PIP_REQUIREMENTS = ["neuralforecast", "torch", "pandas", "numpy"]
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")  # MLflow "models from code": the model is this file


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


class Registry:
    """Tracking and registry in one MLflow store under the home. ``run_tags`` go on every run logged (the Dagster
    run id); ``run_ended(dagster_run_id)`` says whether (and how) the Dagster run behind a RUNNING MLflow run
    ended, so `close_abandoned_runs` can mark it KILLED (None outside a Dagster run: nothing is closed)."""

    def __init__(self, home: str | Path | None = None, *, experiment: str = "tradecast",
                 run_tags: dict[str, str] | None = None,
                 run_ended: Callable[[str], str | None] | None = None) -> None:
        self.root = tradecast_home(str(home) if home else None)
        self.uri = mlflow_uri(str(self.root))
        self.experiment, self.run_tags, self.run_ended = experiment, dict(run_tags or {}), run_ended
        self._client = None

    def client(self):
        if self._client is None:
            import logging
            import os

            import mlflow
            from mlflow import MlflowClient

            # readable logs: no artifact progress bars, no per-version INFO chatter, and no notice that a signature
            # cannot be inferred from the model code's DataFrame type hint (the input has optional columns)
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            # a model folder holds code, JSON and safetensors only (`storage.pyfunc` refuses anything else): MLflow
            # must not copy the project's uv.lock / pyproject.toml into it (it does when it finds a uv project)
            os.environ["MLFLOW_LOG_UV_FILES"] = "false"
            logging.getLogger("mlflow").setLevel(logging.WARNING)
            logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
            self._client = MlflowClient(self.uri, self.uri)
        import mlflow

        mlflow.set_tracking_uri(self.uri)  # the fluent API (start_run, log_model) writes to this store too
        mlflow.set_registry_uri(self.uri)
        return self._client

    def experiment_id(self, experiment: str | None = None) -> str:
        client = self.client()
        name = experiment or self.experiment
        found = client.get_experiment_by_name(name)
        if found:
            return found.experiment_id
        artifacts = (self.root / "mlartifacts").resolve()
        artifacts.mkdir(parents=True, exist_ok=True)
        return client.create_experiment(name, artifact_location=artifacts.as_uri())

    # reads ------------------------------------------------------------------------------------------------------
    def alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version holding ``alias`` (None when the model or the alias does not exist)."""
        from mlflow.exceptions import MlflowException

        try:
            return ModelVersion.from_mlflow(self.client().get_model_version_by_alias(name, alias))
        except MlflowException:
            return None

    def version(self, name: str, alias_or_version: str | int) -> ModelVersion:
        """The version at an alias (e.g. 'champion') or a version number; MlflowException when there is none."""
        ref, client = str(alias_or_version), self.client()
        found = client.get_model_version(name, ref) if ref.isdigit() else client.get_model_version_by_alias(name, ref)
        return ModelVersion.from_mlflow(found)

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first."""
        found = self.client().search_model_versions(f"name = '{name}'")
        return sorted((ModelVersion.from_mlflow(v) for v in found), key=lambda v: int(v.version))

    def run_params(self, run_id: str) -> dict[str, str]:
        return dict(self.client().get_run(run_id).data.params)

    def load(self, name: str, alias_or_version: str | int):
        """The forecaster of ``name`` at an alias or version: `.predict(history)`, and `.nf` (NHITS) or
        `.forecaster` (baseline). Rebuilt by the installed code from the version's JSON and safetensors files:
        nothing stored is executed or unpickled (see `storage.pyfunc`). Files missing from the store, or differing
        from those registered, are an `IncompleteModel` error naming them."""
        import mlflow

        from storage.pyfunc import load_dir

        version = self.version(name, alias_or_version)
        ref = f"models:/{name}/{version.version}"
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref, dst_path=tmp))
            check_files(version, folder, str(self._model_folder(version.source) or version.source))
            return load_dir(folder, ref)

    def download_onnx(self, version: ModelVersion, dst: Path) -> Path:
        """The version's ``onnx/`` artifacts downloaded under ``dst``; returns ``dst / 'onnx'``."""
        self.client().download_artifacts(version.run_id, "onnx", str(dst))
        return dst / "onnx"

    def _model_folder(self, source: str) -> Path | None:
        """The folder holding a version's model files (``source`` = models:/m-<id>); None for a remote store."""
        from urllib.parse import unquote, urlparse

        location = urlparse(self.client().get_logged_model(source.removeprefix("models:/")).artifact_location)
        return Path(unquote(location.path)) if location.scheme == "file" else None

    # writes -----------------------------------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client().set_registered_model_alias(name, alias, str(version))

    def tag(self, name: str, version: str, tags: dict[str, str]) -> None:
        client = self.client()
        for key, value in tags.items():
            client.set_model_version_tag(name, str(version), key, str(value)[:5000])

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
                    evaluation, plot_png: bytes | None = None, nf=None, baseline: dict | None = None,
                    ensemble: dict | None = None, run_name: str | None = None) -> str:
        """One MLflow run (params, metrics, evaluation table, plot, model) and a new registered version of
        ``name``; returns the version number. ``kind`` is 'nhits' (give ``nf``), 'ensemble' (``nf`` and
        ``ensemble``: its weight and served baseline, `storage.pyfunc`) or 'baseline' (``baseline``).

        Crash-safe: the version is registered last, with its tags in the same commit, once every file is logged
        and the run has ended; a process killed before that leaves a run (marked KILLED by the next run,
        `close_abandoned_runs`) and no version, never a version without its files or tags."""
        import mlflow

        from storage.pyfunc import BASELINE_ARTIFACT, ENSEMBLE_ARTIFACT, NHITS_ARTIFACT

        self.close_abandoned_runs()
        with tempfile.TemporaryDirectory() as tmp, \
                mlflow.start_run(experiment_id=self.experiment_id(), run_name=run_name) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics(_numbers(metrics))
            mlflow.set_tags({**self.run_tags, **tags, "model_kind": kind})
            mlflow.log_table(evaluation, artifact_file="evaluation.json")
            if plot_png:
                (Path(tmp) / "forecast.png").write_bytes(plot_png)
                mlflow.log_artifact(str(Path(tmp) / "forecast.png"))
            if kind in (NHITS_KIND, ENSEMBLE_KIND):
                from models.forecasting import save_model

                with _writing(Path(tmp) / "nf"):
                    artifacts = {NHITS_ARTIFACT: save_model(nf, Path(tmp) / "nf")}
                if kind == ENSEMBLE_KIND:
                    if ensemble is None:
                        raise ValueError("an ensemble version needs ensemble= (its weight and baseline)")
                    with _writing(Path(tmp) / "ensemble.json"):
                        (Path(tmp) / "ensemble.json").write_text(json.dumps(ensemble))
                    artifacts[ENSEMBLE_ARTIFACT] = str(Path(tmp) / "ensemble.json")
            else:
                with _writing(Path(tmp) / "baseline.json"):
                    (Path(tmp) / "baseline.json").write_text(json.dumps(baseline))
                artifacts = {BASELINE_ARTIFACT: str(Path(tmp) / "baseline.json")}
            info = mlflow.pyfunc.log_model(name="model", python_model=str(MODEL_CODE), artifacts=artifacts,
                                           pip_requirements=PIP_REQUIREMENTS)
        stored = self._model_folder(info.model_uri)
        files = {FILES_TAG: json.dumps(model_files(stored), separators=(",", ":"))} if stored else {}
        version = mlflow.register_model(info.model_uri, name,
                                        tags={"model_kind": kind, "run_id": run.info.run_id, **files})
        return str(version.version)

    def close_abandoned_runs(self) -> list[str]:
        """Mark KILLED the experiment's runs that a killed Dagster run left RUNNING (tag ``dagster_run_id`` naming a
        run that has ended: failed by `pipelines.run_guard` or the daemon's run monitoring); returns their ids."""
        client = self.client()
        if self.run_ended is None:
            return []
        closed = []
        for run in client.search_runs([self.experiment_id()], "attributes.status = 'RUNNING'"):
            dagster_run_id = run.data.tags.get("dagster_run_id") or ""
            ended = self.run_ended(dagster_run_id)
            if ended is not None:
                client.set_tag(run.info.run_id, "tradecast/ended", f"Dagster run {dagster_run_id[:8]} ended "
                               f"({ended}) while this run was RUNNING: its process was killed")
                client.set_terminated(run.info.run_id, "KILLED")
                closed.append(run.info.run_id)
        return closed

    def log_onnx(self, name: str, version: str, folder: Path, tags: dict[str, str]) -> None:
        """Attach an ONNX export (``folder`` = model.onnx, maybe model.int8.onnx, export.json) to the version's
        run under ``onnx/`` and tag the version (tag ``onnx`` marks it servable). The tag is set last, and a
        re-export removes it before it overwrites the files: a kill mid-copy leaves a version that is not servable
        (the next export writes it again), never one tagged servable over half-written files."""
        client = self.client()
        stored = self.version(name, version)
        if stored.onnx is not None:
            client.delete_model_version_tag(name, str(version), "onnx")
        client.log_artifacts(stored.run_id, str(folder), artifact_path="onnx")
        self.tag(name, version, {**tags, "onnx": "onnx/model.onnx"})
