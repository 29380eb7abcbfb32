"""Fixtures of the serving tests: one real registry (trained once per session), services on it, tiny ONNX graphs.

``trained`` runs the real jobs once (``ingest_job`` on a slice of the bundled crypto data, ``train_job`` with a
small step budget, ``export_job``) in a temporary TRADECAST_HOME, so every test below talks to a real DuckDB
file, a real MLflow registry with a real NHITS and a real baseline version, and real ONNX exports. The gate's
decision (promote NHITS or keep the baseline) is whatever it is; ``served`` then puts the aliases in one known
state before each test (champion = NHITS, challenger = baseline, previous_champion = baseline), because some
tests move them.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from serving.local_server import ThreadedServer
from tests.conftest import ROOT, run_job

NAME = "nhits-crypto-close"
SYMBOLS = ("BTCUSD", "BTCUSDC", "BTCUSDT")
TRAIN = {"max_steps": 10, "n_windows": 2, "ensemble": False}  # an NHITS and a baseline version, nothing else
CRYPTO_1MIN = ROOT / "data" / "crypto" / "crypto_1min_binanceus_2023-03.csv.gz"


@dataclass
class Trained:
    home: Path
    nhits: str  # the NHITS version
    baseline: str  # the baseline version (bootstrap champion)
    export_result: Any = None
    decision: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def client(self) -> Any:
        from mlflow import MlflowClient

        from storage.home import mlflow_uri

        uri = mlflow_uri(str(self.home))
        return MlflowClient(uri, uri)

    def set_aliases(self, **aliases: str | None) -> None:
        client = self.client()
        for alias, version in aliases.items():
            if version is None:
                with contextlib.suppress(Exception):  # not set
                    client.delete_registered_model_alias(NAME, alias)
            else:
                client.set_registered_model_alias(NAME, alias, version)

    def reset_aliases(self) -> None:
        self.set_aliases(champion=self.nhits, challenger=self.baseline, previous_champion=self.baseline)

    def frame(self) -> pd.DataFrame:
        import duckdb

        con = duckdb.connect(str(self.home / "warehouse.duckdb"), read_only=True)
        try:
            return con.execute("SELECT unique_id, ds, y FROM training_frames WHERE asset_class = 'crypto' AND "
                               "target = 'close' ORDER BY unique_id, ds").df()
        finally:
            con.close()


_TRAINED: list[Trained] = []  # one training per session, also for modules that import these fixtures (tests/chaos)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    if _TRAINED:
        return _TRAINED[0]
    import dagster as dg

    home = tmp_path_factory.mktemp("serving") / "home"
    env = {"TRADECAST_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")}
    with pytest.MonkeyPatch.context() as mp:  # the environment is restored after the setup
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("TRADECAST_CATALOG", raising=False)
        assert run_job("ingest_job", "crypto").success  # all three 1-min series (the file is sorted by symbol)
        key = dg.MultiPartitionKey({"asset_class": "crypto", "target": "close"})
        run_job("train_job", key, run_config={"ops": {"nhits_model": {"config": TRAIN}}}, raise_on_error=False)
        exported = run_job("export_job", key)
        assert exported.success
        from tests.conftest import warehouse_query

        decision = warehouse_query("SELECT decision FROM model_promotions ORDER BY decided_at").decision.tolist()
    result = Trained(home=home, nhits="", baseline="", export_result=exported, decision=",".join(decision), env=env)
    for version in result.client().search_model_versions(f"name = '{NAME}'"):
        kind = version.tags.get("model_kind")
        if kind == "nhits":
            result.nhits = str(version.version)
        elif kind == "baseline":
            result.baseline = str(version.version)
    assert result.nhits and result.baseline, "train_job should register an NHITS and a baseline version"
    _TRAINED.append(result)
    return result


@pytest.fixture
def served(trained, monkeypatch) -> Trained:
    """The trained home, as this test's TRADECAST_HOME, with the aliases in their known state."""
    for key, value in trained.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TRADECAST_CATALOG", raising=False)
    trained.reset_aliases()
    return trained


@pytest.fixture
def make_service(served):
    """``make_service(**config)``: a real ForecastService on the trained registry (stopped after the test)."""
    from serving.service import ForecastService, ServiceConfig

    made = []

    def make(source=None, **overrides):
        config = ServiceConfig(**{"asset_class": "crypto", "target": "close", "variant": "fp32",
                                  "home": str(served.home), **overrides})
        service = ForecastService(config, source=source)
        made.append(service)
        return service

    yield make
    for service in made:
        service.stop()


_LOADED: dict[tuple[str, str], Any] = {}


def nhits_model(trained: Trained) -> Any:
    """The registered NHITS's python model (``.nf`` is the fitted NeuralForecast), loaded from MLflow once."""
    from resources import ModelRegistry, Settings

    key = (str(trained.home), trained.nhits)
    if key not in _LOADED:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TRADECAST_HOME", str(trained.home))
            _LOADED[key] = ModelRegistry(settings=Settings()).load(NAME, trained.nhits).unwrap_python_model()
    return _LOADED[key]


def onnx_folder(trained: Trained, version: str, cache: Path | None = None) -> Path:
    """The version's ONNX folder, downloaded from its MLflow run (into ``cache`` when given)."""
    from serving.source import ModelSource

    source = ModelSource(str(trained.home))
    if cache is not None:
        source.cache = cache
    return source.onnx_dir(NAME, source.registry.version(NAME, version))


def tiny_onnx(path: Path, name: str = "window_mean", h: int = 4, input_size: int = 8, season: int = 2) -> Path:
    """A real exported ONNX graph of a baseline (no training needed)."""
    from serving.export import export_onnx
    from serving.graph import BaselineGraph

    return export_onnx(BaselineGraph(name, h, input_size, season).eval(), path)


@functools.lru_cache(maxsize=1)
def _crypto_1min() -> pd.DataFrame:
    frame = pd.read_csv(CRYPTO_1MIN)
    frame["epoch"] = pd.to_datetime(frame.ts, utc=True).astype("int64") / 1e9
    return frame


def real_bars(n: int = 400, symbol: str = "BTCUSDT", start: int = 0) -> pd.DataFrame:
    """``n`` real 1-minute bars of one symbol from the bundled file (from its ``start``-th bar)."""
    frame = _crypto_1min()
    return frame[frame.symbol == symbol].iloc[start:start + n].reset_index(drop=True)


def to_bar(row: Any, **changes: Any) -> Any:
    from serving.buffers import Bar

    values = {"symbol": row.symbol, "ts": float(row.epoch), "open": float(row.open), "high": float(row.high),
              "low": float(row.low), "close": float(row.close), "volume": float(row.volume_base), **changes}
    return Bar(**values)


Server = ThreadedServer  # a real uvicorn server for an app on 127.0.0.1 (a free port), in a thread


def windows_of(frame: pd.DataFrame, input_size: int, n: int) -> np.ndarray:
    """``n`` real windows (float32) spread over the frame's series."""
    from serving.windows import check_windows

    return check_windows(frame, input_size, 12, max_windows=n).windows
