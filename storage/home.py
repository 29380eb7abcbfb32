"""Where tradecast keeps its state: the home folder (`$TRADECAST_HOME`, default `<project>/var`), the warehouse file
and the MLflow store under it, or an MLflow tracking server. Plain Python: Dagster's `Settings` resource and the
serving process share it."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlparse

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
SERVER_SCHEMES = ("http", "https")
_warned: set[str] = set()


def tradecast_home(home: str | None = None) -> Path:
    """$TRADECAST_HOME, else `<project>/var`; created on first use."""
    path = Path(home or os.environ.get("TRADECAST_HOME") or PROJECT_ROOT / "var").expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def warehouse_path(home: str | None = None) -> Path:
    return tradecast_home(home) / "warehouse.duckdb"


def tracking_server(explicit: str | None = None) -> str | None:
    """The MLflow tracking server to use: ``explicit``, else ``$MLFLOW_TRACKING_URI``; None: the local store.

    Only a server (``http://`` or ``https://``, e.g. ``mlflow server --serve-artifacts``) replaces the local store:
    an explicit URI of another kind is a ValueError. The variable holding another kind is ignored: MLflow itself
    writes the last ``sqlite:///…`` URI used into it (``mlflow.set_tracking_uri``, for subprocesses), and any other
    store would put artifacts where tradecast does not look; a value that is not a tradecast store
    (``…/mlflow.db``) is logged as a warning once."""
    if explicit:
        if urlparse(explicit).scheme not in SERVER_SCHEMES:
            raise ValueError(f"tracking_uri must be an MLflow tracking server (http:// or https://), got {explicit!r}; "
                             "leave it unset for the local store under $TRADECAST_HOME")
        return explicit.rstrip("/")
    value = os.environ.get(TRACKING_URI_ENV, "").strip()
    if urlparse(value).scheme in SERVER_SCHEMES:
        return value.rstrip("/")
    if value and not (value.startswith("sqlite:///") and value.endswith("/mlflow.db")) and value not in _warned:
        _warned.add(value)
        logging.getLogger("tradecast.storage").warning(
            "%s=%s is not a tracking server (http:// or https://): ignored, MLflow data stays in "
            "$TRADECAST_HOME/mlflow.db", TRACKING_URI_ENV, value)
    return None


def local_mlflow_uri(home: str | None = None) -> str:
    """The local MLflow store: sqlite ``<home>/mlflow.db`` (artifacts in ``<home>/mlartifacts``), re-rooted first
    when the home was moved or restored (`storage.rehome`)."""
    from storage.rehome import rehome

    root = tradecast_home(home)
    rehome(root)  # a moved or restored home: its artifact locations point at itself, not the original
    return f"sqlite:///{root / 'mlflow.db'}"


def mlflow_uri(home: str | None = None, tracking_uri: str | None = None) -> str:
    """The MLflow tracking and registry URI: the tracking server (:func:`tracking_server`) when one is set, else
    the local sqlite store under the home (:func:`local_mlflow_uri`)."""
    return tracking_server(tracking_uri) or local_mlflow_uri(home)
