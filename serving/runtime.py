"""What runs a forecast on the hot path: an ONNX Runtime session, or the naive fallback in numpy.

Every forecaster has the same surface: ``run(windows (B, input_size) float32) -> (B, h, n_outputs)`` plus
``h``, ``input_size``, ``output_names`` and a ``label`` saying which model version and path answered.

Execution providers: an ONNX session runs on ``CPUExecutionProvider`` unless asked otherwise (the service's latency
figures are CPU figures), by the ``providers`` argument, else by the environment variable ``TRADECAST_ORT_PROVIDERS``
(a comma list, in order of preference). A name onnxruntime does not know, or one this build of it does not offer
(``CUDAExecutionProvider`` needs the ``onnxruntime-gpu`` build), is a ``ValueError`` naming what is available.
``OnnxForecaster.providers`` is what the session actually uses (onnxruntime may fall back, e.g. from TensorRT to
CUDA when TensorRT cannot start), for benchmarks to record.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.windows import FUTR, HIST, INPUT, OUTPUT

PROVIDERS_ENV = "TRADECAST_ORT_PROVIDERS"
DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
GPU_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_BUILD_HINT = ("the GPU providers need the onnxruntime-gpu build in place of onnxruntime (the same version: "
                  "uninstall onnxruntime, then install onnxruntime-gpu)")


def available_providers(preferred: Sequence[str] = GPU_PREFERENCE) -> list[str]:
    """Those of ``preferred`` that this onnxruntime reports available (``ort.get_available_providers()``), in the
    order of ``preferred``."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    return [name for name in dict.fromkeys(preferred) if name in have]


def resolve_providers(providers: str | Sequence[str] | None = None) -> list[str]:
    """The providers a session is asked for: ``providers`` (a sequence or a comma list) when given, else
    ``$TRADECAST_ORT_PROVIDERS`` when set and not blank, else CPU only. Duplicates are dropped, order kept.

    Raises ``ValueError`` for an empty list, for a name onnxruntime does not know (``ort.get_all_providers()``) and
    for one this build does not offer, naming the available ones."""
    import onnxruntime as ort

    where = "providers"
    if providers is None:
        env = os.environ.get(PROVIDERS_ENV, "").strip()
        providers, where = (env, f"${PROVIDERS_ENV}") if env else (DEFAULT_PROVIDERS, "default")
    names = providers.split(",") if isinstance(providers, str) else list(providers)
    names = list(dict.fromkeys(str(n).strip() for n in names if str(n).strip()))
    if not names:
        raise ValueError(f"{where}: no ONNX Runtime execution provider named")
    available = ort.get_available_providers()
    unknown = [n for n in names if n not in ort.get_all_providers()]
    if unknown:
        raise ValueError(f"{where}: unknown ONNX Runtime execution provider(s) {unknown}; this onnxruntime "
                         f"{ort.__version__} offers {available}")
    missing = [n for n in names if n not in available]
    if missing:
        hint = f"; {GPU_BUILD_HINT}" if set(missing) & {"CUDAExecutionProvider", "TensorrtExecutionProvider"} else ""
        raise ValueError(f"{where}: execution provider(s) {missing} not available in this onnxruntime "
                         f"{ort.__version__} (build {ort.get_device()}), which offers {available}{hint}")
    return names


@dataclass
class ModelInfo:
    """Which registered model a forecaster serves."""

    name: str = ""
    version: str = ""
    kind: str = ""  # nhits | baseline | naive
    variant: str = ""  # fp32 | int8 | numpy
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version} ({self.kind}, {self.variant})" if self.version else self.kind


class OnnxForecaster:
    """An ONNX Runtime session over an exported graph (``windows -> forecast``): on the CPU unless ``providers``
    (or ``$TRADECAST_ORT_PROVIDERS``) asks for others (see :func:`resolve_providers`, which raises ``ValueError``
    for a name that is unknown or not available). ``requested_providers`` is what was asked for, ``providers``
    what the session uses (``session.get_providers()``), ``provider`` the first of those."""

    def __init__(self, model: bytes | str, *, threads: int = 1, info: ModelInfo | None = None,
                 output_names: list[str] | None = None, providers: str | Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        self.requested_providers = resolve_providers(providers)

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model, options, providers=self.requested_providers)
        self.inputs = [i.name for i in self.session.get_inputs()]
        shape_in = self.session.get_inputs()[0].shape
        shape_out = self.session.get_outputs()[0].shape
        self.input_size, self.h, self.n_outputs = int(shape_in[1]), int(shape_out[1]), int(shape_out[2])
        self.output_names = output_names or (["yhat"] if self.n_outputs == 1 else [f"q{i}" for i in
                                                                                 range(self.n_outputs)])
        self.info = info or ModelInfo(kind="onnx", variant="fp32")
        self.calls = 0  # session runs: a batch of any size is one (what "one model call per tick" is checked by)

    @classmethod
    def from_path(cls, path: str | Path, **kwargs: Any) -> OnnxForecaster:
        return cls(str(path), **kwargs)

    @property
    def label(self) -> str:
        return self.info.label

    @property
    def providers(self) -> list[str]:
        """The execution providers the session runs on, in priority order (after any fallback of onnxruntime's)."""
        return list(self.session.get_providers())

    @property
    def provider(self) -> str:
        return self.providers[0]

    @property
    def needs_exog(self) -> bool:
        return len(self.inputs) > 1

    def run(self, windows: np.ndarray, hist_exog: np.ndarray | None = None,
            futr_exog: np.ndarray | None = None) -> np.ndarray:
        feed = {INPUT: np.ascontiguousarray(windows, dtype=np.float32)}
        for name, value in ((HIST, hist_exog), (FUTR, futr_exog)):
            if name in self.inputs:
                if value is None:
                    raise ValueError(f"{self.label}: the model needs {name}")
                feed[name] = np.ascontiguousarray(value, dtype=np.float32)
        self.calls += 1
        return self.session.run([OUTPUT], feed)[0]


class NaiveForecaster:
    """The last value, repeated: the fallback that needs no file and cannot fail on a complete window."""

    n_outputs = 1
    output_names = ["yhat"]

    def __init__(self, h: int, input_size: int) -> None:
        self.h, self.input_size = h, input_size
        self.info = ModelInfo(name="naive", kind="naive", variant="numpy")
        self.calls = 0

    @property
    def label(self) -> str:
        return "naive (last value, numpy)"

    needs_exog = False

    def run(self, windows: np.ndarray, hist_exog: np.ndarray | None = None,
            futr_exog: np.ndarray | None = None) -> np.ndarray:
        self.calls += 1
        windows = np.asarray(windows, dtype=np.float32)
        return np.repeat(windows[:, -1:, None], self.h, axis=1)
