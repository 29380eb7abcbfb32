"""A registered model version as tradecast reads it: typed fields instead of raw MLflow tag lookups, and the
record of the files it is rebuilt from (checked on every load)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from domain.vocabulary import BASELINE_KIND, NHITS_KIND

FILES_TAG = "files"  # {path of a weights/parameters file: [bytes, sha256]}: recorded at registration, checked on load


class IncompleteModel(RuntimeError):
    """A registered version whose stored weights or parameters are missing or differ from those registered."""


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    """One version of a registered model (``nhits-<class>-<target>``)."""

    name: str
    version: str
    run_id: str
    source: str
    tags: Mapping[str, str]

    @classmethod
    def from_mlflow(cls, version: Any) -> ModelVersion:
        return cls(name=version.name, version=str(version.version), run_id=version.run_id, source=version.source,
                   tags=dict(version.tags or {}))

    @property
    def kind(self) -> str:
        """``nhits``, ``ensemble`` (NHITS + a served baseline) or ``baseline`` (tag ``model_kind``; a version without
        it is NHITS)."""
        return self.tags.get("model_kind", NHITS_KIND)

    @property
    def is_baseline(self) -> bool:
        return self.kind == BASELINE_KIND

    @property
    def baseline(self) -> str | None:
        """The baseline a baseline version forecasts with (``naive``, ``seasonal_naive``, ``window_mean``)."""
        return self.tags.get("baseline") if self.is_baseline else None

    @property
    def evaluated_as(self) -> str:
        """The ``model`` of its own rows in `model_evaluations` / `evaluation_forecasts`: ``nhits``, ``ensemble`` or
        the baseline's name."""
        return (self.baseline or "naive") if self.is_baseline else self.kind

    @property
    def features(self) -> str:
        """``none`` or ``events`` (an event-aware NHITS reads `event_features`)."""
        return self.tags.get("features", "none")

    @property
    def onnx(self) -> str | None:
        """The ONNX file logged for the version (``onnx/model.onnx``), None until `onnx_model` exported it."""
        return self.tags.get("onnx")

    @property
    def label(self) -> str:
        """``v3 (nhits)`` or ``v1 (baseline: naive)``, as asset pages and the CLI show a version."""
        return f"v{self.version} ({self.kind}" + (f": {self.baseline})" if self.is_baseline else ")")

    @property
    def recorded_files(self) -> dict[str, list]:
        import json

        return json.loads(self.tags.get(FILES_TAG) or "{}")  # empty: registered before files were recorded


def model_files(folder: Path) -> dict[str, list]:
    """The files a version is rebuilt from (``artifacts/`` of its model folder: JSON and safetensors), by path:
    ``[bytes, sha256]``."""
    from ingest.files import sha256_of

    return {p.relative_to(folder).as_posix(): [p.stat().st_size, sha256_of(p)]
            for p in sorted((folder / "artifacts").rglob("*")) if p.is_file()}


def check_files(version: ModelVersion, folder: Path, where: str) -> None:
    """Every file recorded at registration is in ``folder`` with its size and SHA-256, else `IncompleteModel`
    naming each missing or different file and ``where`` the store keeps them."""
    recorded = version.recorded_files
    found = model_files(folder) if recorded else {}
    bad = [f"{path} {'is missing' if path not in found else 'differs from the registered file'}"
           for path, entry in recorded.items() if found.get(path) != entry]
    if bad:
        raise IncompleteModel(f"models:/{version.name}/{version.version}: the stored model is incomplete: "
                              f"{'; '.join(bad)} (in {where}); restore mlartifacts/ from a backup or register the "
                              "model again")
