"""The MLflow model registry, one client for every room (plain MLflow, no Dagster): local sqlite backend
`$TRADECAST_HOME/mlflow.db`, artifacts in `$TRADECAST_HOME/mlartifacts`, or an MLflow tracking server
(`MLFLOW_TRACKING_URI` / ``tracking_uri=`` http(s)://…, `mlflow server --serve-artifacts`: tracking, registry and
artifacts all through it, files read back via temporary folders under the home). One registered model per
`nhits-<asset_class>-<target>` with aliases `champion`, `challenger`, `previous_champion`. Each version is stored as
code (`storage/mlflow_model.py`) with its weights in safetensors and its parameters in JSON; nothing is pickled.
Versions come back typed (`storage.versions.ModelVersion`). mlflow is imported inside the methods (slow import)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

from domain.vocabulary import ENSEMBLE_KIND, NHITS_KIND
from storage.home import TRACKING_URI_ENV, local_mlflow_uri, tracking_server, tradecast_home
from storage.versions import FILES_TAG, ModelVersion, check_files, model_files

PIP_REQUIREMENTS = ["neuralforecast", "torch", "pandas", "numpy"]
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")  # MLflow "models from code": the model is this file
SCRATCH = "mlflow_tmp"  # under the home: where files from the store are downloaded to (temporary folders)
_warned: set[tuple[str, str]] = set()


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


def _local_path(location: str) -> Path | None:
    """The folder of a ``file://`` artifact location; None for a remote one (``mlflow-artifacts:``, ``s3://``)."""
    parsed = urlparse(location)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def _file_name(name: str) -> str:
    """``name`` when it is a plain file name (no folder, not ``.``/``..``), else ValueError."""
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise ValueError(f"artifact file name must be a plain file name, got {name!r}")
    return name


class Registry:
    """Tracking and registry in one MLflow store: a tracking server (``tracking_uri``, else `MLFLOW_TRACKING_URI`,
    http(s)://: `storage.home.tracking_server`) or, by default, the sqlite store under the home. ``run_tags`` go
    on every run logged (the Dagster run id); ``run_ended(dagster_run_id)`` says whether (and how) the Dagster run
    behind a RUNNING MLflow run ended, so `close_abandoned_runs` can mark it KILLED (None outside a Dagster run:
    nothing is closed). ``server`` is the server's URI, None for the local store."""

    def __init__(self, home: str | Path | None = None, *, experiment: str = "tradecast",
                 run_tags: dict[str, str] | None = None, run_ended: Callable[[str], str | None] | None = None,
                 tracking_uri: str | None = None) -> None:
        self.root = tradecast_home(str(home) if home else None)
        self.server = tracking_server(tracking_uri)
        self.uri = self.server or local_mlflow_uri(str(self.root))
        self.experiment, self.run_tags, self.run_ended = experiment, dict(run_tags or {}), run_ended
        self._client = None
        if self.server and (self.root / "mlflow.db").exists() and (str(self.root), self.server) not in _warned:
            _warned.add((str(self.root), self.server))
            logging.getLogger("tradecast.storage").warning(
                "MLflow: using the tracking server %s (%s or tracking_uri); the local store %s is not read, its "
                "runs and versions are not visible while a server is set", self.server, TRACKING_URI_ENV,
                self.root / "mlflow.db")

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
        if self.server:  # the server's default artifact root (mlflow-artifacts:/… with --serve-artifacts)
            return client.create_experiment(name)
        artifacts = (self.root / "mlartifacts").resolve()
        artifacts.mkdir(parents=True, exist_ok=True)
        return client.create_experiment(name, artifact_location=artifacts.as_uri())

    def _scratch(self) -> tempfile.TemporaryDirectory:
        """A temporary folder under ``<home>/mlflow_tmp`` (removed on exit), for files to and from the store."""
        folder = self.root / SCRATCH
        folder.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(dir=folder)

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
        with self._scratch() as tmp:  # downloaded (from the server, or copied from mlartifacts/) under the home
            folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref, dst_path=tmp))
            where = self._location(version.source)  # named by an IncompleteModel error
            check_files(version, folder, str(_local_path(where) or where))
            return load_dir(folder, ref)

    def download_onnx(self, version: ModelVersion, dst: Path) -> Path:
        """The version's ``onnx/`` artifacts downloaded (through the server, when one is set) under ``dst``;
        returns ``dst / 'onnx'``."""
        self.client().download_artifacts(version.run_id, "onnx", str(dst))
        return dst / "onnx"

    def _location(self, source: str) -> str:
        """The artifact location of a version's model (``source`` = models:/m-<id>): file://… or mlflow-artifacts:…"""
        return self.client().get_logged_model(source.removeprefix("models:/")).artifact_location

    def _model_folder(self, source: str) -> Path | None:
        """The local folder holding a version's model files; None for a remote store (a server)."""
        return _local_path(self._location(source))

    def _stored_files(self, source: str) -> dict[str, list]:
        """`storage.versions.model_files` of the model as the store holds it: read in place in mlartifacts/, or
        downloaded back from the server into a temporary folder under the home."""
        import mlflow

        folder = self._model_folder(source)
        if folder is not None:
            return model_files(folder)
        with self._scratch() as tmp:
            return model_files(Path(mlflow.artifacts.download_artifacts(artifact_uri=self._location(source),
                                                                        dst_path=tmp)))

    # writes -----------------------------------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client().set_registered_model_alias(name, alias, str(version))

    def tag(self, name: str, version: str, tags: dict[str, str]) -> None:
        client = self.client()
        for key, value in tags.items():
            client.set_model_version_tag(name, str(version), key, str(value)[:5000])

    def log_benchmark(self, **kwargs) -> str:
        """One run in the `<experiment>-benchmarks` experiment (params, metrics, report files); returns its id."""
        return self.log_report("benchmarks", **kwargs)

    def log_backtest(self, **kwargs) -> str:
        """One run in the `<experiment>-backtests` experiment (params, metrics, report files); returns its id."""
        return self.log_report("backtests", **kwargs)

    def log_report(self, kind: str, *, run_name: str, params: dict, metrics: dict[str, float], tags: dict[str, str],
                   files: dict[str, bytes | str]) -> str:
        """One run in the `<experiment>-<kind>` experiment (params, metrics, report files); returns its id."""
        import mlflow

        self.client()
        with self._scratch() as tmp, mlflow.start_run(
                experiment_id=self.experiment_id(f"{self.experiment}-{kind}"), run_name=run_name) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics(_numbers(metrics))
            mlflow.set_tags(tags)
            for file_name, content in files.items():
                path = Path(tmp) / _file_name(file_name)
                path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
                mlflow.log_artifact(str(path))
        return run.info.run_id

    def log_search(self, *, run_name: str, params: dict, trials: list[dict], best: dict, tags: dict[str, str],
                   files: dict[str, bytes | str]) -> tuple[str, list[str]]:
        """A hyperparameter search as MLflow parent/child runs in `<experiment>-search`; returns
        ``(parent_run_id, child_run_ids)`` (children in the order of ``trials``).

        The parent: ``params`` (the search's settings), ``best["config"]`` as params ``best_<key>``, metric
        ``best_val_loss`` (``best["val_loss"]``), tag ``best_trial_id`` (``best["trial_id"]``, if given), ``tags``
        and ``run_tags``, and ``files`` (plain file names: a plot, the trials table) as artifacts. One child per
        trial (tag ``mlflow.parentRunId`` = the parent): ``trial["config"]`` as params, metrics ``val_loss`` (left
        out when None/NaN), ``last_step``, ``seconds``; tags ``trial_id``, ``status`` (Ray Tune's: TERMINATED /
        ERROR), ``stopped_early`` (true/false) and ``error`` (its first 5000 characters, when there is one). A
        trial with status ERROR ends FAILED, the others FINISHED; the parent ends FINISHED once everything is
        logged, FAILED (with the child being logged) when logging raises."""
        if not isinstance(best.get("config"), dict) or "val_loss" not in best:
            raise ValueError(f"best must hold 'config' (a dict) and 'val_loss', got keys {sorted(best)}")
        names = [_file_name(name) for name in files]
        client = self.client()
        experiment_id = self.experiment_id(f"{self.experiment}-search")
        best_tag = {"best_trial_id": str(best["trial_id"])} if best.get("trial_id") is not None else {}
        parent = client.create_run(experiment_id, run_name=run_name,
                                   tags={**self.run_tags, **tags, **best_tag}).info.run_id
        children: list[str] = []
        with self._ending(parent):
            self._log_batch(parent, {**params, **{f"best_{k}": v for k, v in best["config"].items()}},
                            {"best_val_loss": best["val_loss"]})
            for trial in trials:
                error = trial.get("error")
                child = client.create_run(experiment_id, run_name=f"{run_name}/{trial['trial_id']}", tags={
                    **self.run_tags, "mlflow.parentRunId": parent, "trial_id": str(trial["trial_id"]),
                    "status": str(trial["status"]), "stopped_early": str(bool(trial.get("stopped_early"))).lower(),
                    **({"error": str(error)[:5000]} if error else {})}).info.run_id
                children.append(child)
                with self._ending(child, "FAILED" if trial["status"] == "ERROR" else "FINISHED"):
                    self._log_batch(child, trial.get("config") or {}, {
                        k: trial.get(k) for k in ("val_loss", "last_step", "seconds")})
            with self._scratch() as tmp:
                for name, content in zip(names, files.values(), strict=True):
                    path = Path(tmp) / name
                    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
                    client.log_artifact(parent, str(path))
        return parent, children

    @contextlib.contextmanager
    def _ending(self, run_id: str, status: str = "FINISHED"):
        """End run ``run_id`` with ``status`` after the block, FAILED when the block raises."""
        try:
            yield
        except BaseException:
            self.client().set_terminated(run_id, "FAILED")
            raise
        self.client().set_terminated(run_id, status)

    def _log_batch(self, run_id: str, params: dict, metrics: dict) -> None:
        """``params`` (as text, 500 characters at most) and ``metrics`` (`_numbers`) on a run, 100 params a call."""
        from mlflow.entities import Metric, Param

        now, items = int(time.time() * 1000), [Param(str(k), str(v)[:500]) for k, v in params.items()]
        self.client().log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in _numbers(metrics).items()],
                                params=items[:100])
        for start in range(100, len(items), 100):
            self.client().log_batch(run_id, params=items[start:start + 100])

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
        with self._scratch() as tmp, \
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
        files = json.dumps(self._stored_files(info.model_uri), separators=(",", ":"))
        version = mlflow.register_model(info.model_uri, name,
                                        tags={"model_kind": kind, "run_id": run.info.run_id, FILES_TAG: files})
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
