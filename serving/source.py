"""Models for the service, from the MLflow registry (plain MLflow, no Dagster): which version holds an alias,
and that version's ONNX files (logged by the ``onnx_model`` asset under the run's ``onnx/`` artifacts),
downloaded once into ``$TRADECAST_HOME/serving_cache/<model>/<version>/``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from serving.runtime import ModelInfo, OnnxForecaster
from storage.registry import Registry
from storage.versions import ModelVersion

VARIANTS = ("auto", "fp32", "int8")


class MissingOnnx(LookupError):
    """The version has no ONNX export yet (materialize ``onnx_model`` for its partition)."""


class CorruptExport(ValueError):
    """An ONNX folder that is incomplete or damaged (the message names the file)."""


STALE_DOWNLOAD_S = 600  # a staging folder this old belongs to a download that was killed


def _remove_stale_downloads(folder: Path) -> None:
    """Staging folders left by killed downloads (a live download's folder is younger than STALE_DOWNLOAD_S)."""
    import shutil
    import time

    for stale in folder.glob(".download-*"):
        if time.time() - stale.stat().st_mtime > STALE_DOWNLOAD_S:
            shutil.rmtree(stale, ignore_errors=True)


def verify_export(folder: Path) -> dict:
    """``export.json`` parses and every file it lists is there, non-empty and, where the export recorded
    them, of the recorded size and SHA-256; returns the report."""
    import hashlib

    report_path = folder / "export.json"
    try:
        report = json.loads(report_path.read_text())
        files = dict(report["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptExport(f"{report_path}: missing or unreadable ({type(exc).__name__}: {exc})") from None
    checksums = report.get("sha256", {})
    for variant, file_name in files.items():
        path = folder / file_name
        if Path(file_name).name != file_name or not path.is_file() or path.stat().st_size == 0:
            raise CorruptExport(f"{path}: the {variant} model file is missing or empty")
        if file_name in checksums and hashlib.sha256(path.read_bytes()).hexdigest() != checksums[file_name]:
            raise CorruptExport(f"{path}: SHA-256 differs from the one recorded at export")
    return report


class ModelSource:
    """The served versions and their ONNX files, through the one registry client (`storage.registry.Registry`)."""

    def __init__(self, home: str | None = None) -> None:
        self.registry = Registry(home)
        self.cache = self.registry.root / "serving_cache"

    def version(self, name: str, alias: str) -> ModelVersion | None:
        """The model version holding ``alias`` (None when the model or the alias does not exist)."""
        return self.registry.alias(name, alias)

    def onnx_dir(self, name: str, version: ModelVersion) -> Path:
        """The version's ONNX folder (``model.onnx``, maybe ``model.int8.onnx``, ``export.json``), cached.

        Crash-safe: MLflow downloads files in parallel, so a download killed half-way can leave ``export.json``
        without ``model.onnx``. The files go to a temporary folder beside the cache, are verified
        (:func:`verify_export`), and the folder is renamed into place in one step; a cached folder that fails
        the check is downloaded again."""
        import shutil
        import tempfile

        if version.onnx is None:
            raise MissingOnnx(f"{name} v{version.version} has no ONNX export yet: materialize onnx_model")
        target = self.cache / name / str(version.version) / "onnx"
        if target.is_dir():
            try:
                verify_export(target)
                return target
            except CorruptExport as exc:
                logging.getLogger("tradecast.serving").warning("%s; downloading it again", exc)
                shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_downloads(target.parent)
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
        try:
            verify_export(self.registry.download_onnx(version, staging))
            try:
                (staging / "onnx").rename(target)
            except OSError:  # another process put a complete copy in place first
                verify_export(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def forecaster(self, name: str, version: ModelVersion, *, variant: str = "auto",
                   threads: int = 1) -> OnnxForecaster:
        """An ONNX Runtime forecaster for ``version``: INT8 when offered (``auto``/``int8``), else fp32."""
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {list(VARIANTS)} (got {variant!r})")
        folder = self.onnx_dir(name, version)
        report = verify_export(folder)
        use_int8 = variant in ("auto", "int8") and "int8" in report["files"]
        if variant == "int8" and not use_int8:
            logging.getLogger("tradecast.serving").warning("%s v%s: INT8 not offered (%s); serving fp32", name,
                                                          version.version, report.get("int8_note", ""))
        chosen = "int8" if use_int8 else "fp32"
        info = ModelInfo(name=name, version=str(version.version), kind=report["kind"], variant=chosen,
                         extra={"max_rel_diff": report["max_rel_diff"], "int8_note": report.get("int8_note", ""),
                                "hist_exog": report.get("hist_exog", []), "futr_exog": report.get("futr_exog", [])})
        return OnnxForecaster.from_path(folder / report["files"][chosen], threads=threads, info=info,
                                        output_names=report["output_names"])
