"""The model registry as a Dagster resource: `storage.registry.Registry` (one MLflow client for every room) under
the run's TRADECAST_HOME, with the Dagster run id on every MLflow run and abandoned runs of killed Dagster runs
closed."""

from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from resources.settings import Settings


class ModelRegistry(dg.ConfigurableResource):
    """Tracking and registry in one MLflow store: the sqlite file under TRADECAST_HOME, or the tracking server at
    $MLFLOW_TRACKING_URI (see `storage.registry.Registry` for
    every method: `alias`, `version`, `versions`, `load`, `log_version`, `log_onnx`, `set_alias`, `tag`, …)."""

    settings: Settings
    experiment: str = "tradecast"
    _instance: Any = PrivateAttr(default=None)  # the Dagster instance and run using this resource, if any
    _run_id: str | None = PrivateAttr(default=None)
    _store: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._instance, self._run_id = context.instance, context.run_id

    def _run_ended(self, dagster_run_id: str) -> str | None:
        run = self._instance.get_run_by_id(dagster_run_id) if dagster_run_id else None
        return run.status.value if run is not None and run.is_finished else None

    @property
    def store(self):
        """The plain registry client (`storage.registry.Registry`)."""
        if self._store is None:
            from storage.registry import Registry

            self._store = Registry(self.settings.root, experiment=self.experiment,
                                   run_tags={"dagster_run_id": self._run_id} if self._run_id else {},
                                   run_ended=self._run_ended if self._instance is not None else None)
        return self._store

    # the plain client's methods, on the resource (assets call `registry.alias(...)`, ...)
    def client(self):
        return self.store.client()

    def experiment_id(self, experiment: str | None = None) -> str:
        return self.store.experiment_id(experiment)

    def alias(self, name: str, alias: str):
        return self.store.alias(name, alias)

    def version(self, name: str, alias_or_version: str | int):
        return self.store.version(name, alias_or_version)

    def versions(self, name: str):
        return self.store.versions(name)

    def load(self, name: str, alias_or_version: str | int):
        return self.store.load(name, alias_or_version)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.store.set_alias(name, alias, version)

    def tag(self, name: str, version: str, tags: dict[str, str]) -> None:
        self.store.tag(name, version, tags)

    def log_version(self, name: str, **kwargs) -> str:
        return self.store.log_version(name, **kwargs)

    def log_onnx(self, name: str, version: str, folder, tags: dict[str, str]) -> None:
        self.store.log_onnx(name, version, folder, tags)

    def log_benchmark(self, **kwargs) -> str:
        return self.store.log_benchmark(**kwargs)

    def log_backtest(self, **kwargs) -> str:
        return self.store.log_backtest(**kwargs)

    def log_search(self, **kwargs) -> tuple[str, list[str]]:
        return self.store.log_search(**kwargs)

    def close_abandoned_runs(self) -> list[str]:
        return self.store.close_abandoned_runs()
