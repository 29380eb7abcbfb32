"""Shared fixtures: every test gets its own TRADECAST_HOME (a real DuckDB file, a real Dagster instance)."""

from pathlib import Path

import pytest

pytest_plugins = ["tests.fault_report"]  # the fault suite's markers and its report (make chaos)

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "data" / "bad"
CANONICAL = {c: c for c in ("ts", "symbol", "open", "high", "low", "close", "volume")}


@pytest.fixture(scope="session", autouse=True)
def ray_head(tmp_path_factory):
    """One real local Ray head (2 CPUs, 127.0.0.1) for the whole session: every `ray` resource and CLI run of the
    tests connects to it through $RAY_ADDRESS, as they would to a cluster; stopped at the end."""
    import os

    from compute.cluster import auth_env, local_head, stop_local_head

    ray_home = str(tmp_path_factory.mktemp("ray"))
    saved = {k: os.environ.get(k) for k in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    os.environ.update(auth_env(ray_home))
    head = local_head(ray_home, num_cpus=2, num_gpus=0)
    os.environ["RAY_ADDRESS"] = head.address
    yield head
    import ray

    ray.shutdown()
    stop_local_head(ray_home)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("TRADECAST_HOME", str(path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # tests use the home's own store unless they ask
    monkeypatch.delenv("TRADECAST_CATALOG", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(path / "dagster_home"))  # restored after the test
    return path


def run_job(name: str, partition=None, max_rows: int | None = None, assets=(), run_config=None,
            raise_on_error=True):
    """Execute a job of the real Definitions on the real (temporary) instance under TRADECAST_HOME."""
    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.instance import ensure_dagster_home

    ensure_dagster_home()
    run_config = run_config or ({"ops": {a: {"config": {"max_rows_per_source": max_rows}} for a in assets}}
                                if max_rows else {})
    with dg.DagsterInstance.get() as instance:
        return defs.resolve_job_def(name).execute_in_process(
            instance=instance, partition_key=partition, run_config=run_config, raise_on_error=raise_on_error)


def warehouse_query(sql: str, params=None):
    from resources import Settings, Warehouse

    return Warehouse(settings=Settings()).query(sql, params)


def bars_spec(path, **overrides):
    """A catalog entry for a canonical-format bar file."""
    from ingest.catalog import spec_from_dict

    entry = {"name": Path(path).name.split(".")[0], "path": str(path), "table": "bars",
             "asset_class": "crypto", "freq": "1d", "columns": dict(CANONICAL), **overrides}
    return spec_from_dict(entry, Path(path).parent)


def write_catalog(path: Path, entries: list[dict]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"sources": entries}, sort_keys=False))
    return path
