"""The code location: loads, stays light, and every asset is documented and well-formed."""

import subprocess
import sys

import dagster as dg
import yaml

from tests.conftest import ROOT

HEAVY = ("pandas", "pandera", "torch", "neuralforecast", "mlflow", "matplotlib", "duckdb", "lightning")


def test_definitions_load_and_resolve_jobs():
    from pipelines.definitions import defs

    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("ingest_job").partitions_def is not None
    assert defs.resolve_job_def("events_job")


def test_code_location_imports_no_heavy_module():
    code = ("import sys, pipelines.definitions; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported at load time: {out.stdout}"


def test_dagster_cli_validates_the_workspace():
    dagster = ROOT / ".venv" / "bin" / "dagster"
    exe = str(dagster) if dagster.exists() else "dagster"
    out = subprocess.run([exe, "definitions", "validate", "-w", "workspace.yaml"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_every_asset_has_description_group_kinds_and_owner():
    from pipelines.definitions import defs

    groups = {"ingestion", "validation", "training", "evaluation", "deployment", "trading"}
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        assert spec.description and len(spec.description) > 40, name
        assert spec.group_name in groups, name
        assert spec.kinds, name
        assert spec.owners, name


def test_checks_follow_the_naming_convention():
    from pipelines.definitions import defs

    keys = defs.resolve_asset_graph().asset_check_keys
    assert len(keys) >= 7
    for key in keys:
        assert key.name.startswith(f"check_{key.asset_key.path[-1]}_"), key


def test_every_duckdb_writer_is_in_the_single_writer_pool(home):
    from assets.common import DUCKDB_POOL
    from pipelines.definitions import defs
    from pipelines.instance import ensure_dagster_home

    for assets_def in defs.resolve_asset_graph().assets_defs:
        if not assets_def.is_executable:  # live_metrics: written by the forecast service, not by a Dagster step
            continue
        if "duckdb" in {k for spec in assets_def.specs for k in spec.kinds}:
            assert assets_def.node_def.pool == DUCKDB_POOL, assets_def.key
    dagster_home = ensure_dagster_home()
    assert dagster_home == home / "dagster_home"
    config = yaml.safe_load((dagster_home / "dagster.yaml").read_text())
    assert config["concurrency"]["pools"]["default_limit"] == 1
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
