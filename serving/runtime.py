"""What runs a forecast on the hot path: an ONNX Runtime session, or the naive fallback in numpy.

Every forecaster has the same surface: ``run(windows (B, input_size) float32) -> (B, h, n_outputs)`` plus
``h``, ``input_size``, ``output_names`` and a ``label`` saying which model version and path answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.windows import FUTR, HIST, INPUT, OUTPUT


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
    """An ONNX Runtime CPU session over an exported graph (``windows -> forecast``)."""

    def __init__(self, model: bytes | str, *, threads: int = 1, info: ModelInfo | None = None,
                 output_names: list[str] | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        shape_in = self.session.get_inputs()[0].shape
        shape_out = self.session.get_outputs()[0].shape
        self.input_size, self.h, self.n_outputs = int(shape_in[1]), int(shape_out[1]), int(shape_out[2])
        self.output_names = output_names or (["yhat"] if self.n_outputs == 1 else [f"q{i}" for i in
                                                                                 range(self.n_outputs)])
        self.info = info or ModelInfo(kind="onnx", variant="fp32")

    @classmethod
    def from_path(cls, path: str | Path, **kwargs: Any) -> OnnxForecaster:
        return cls(str(path), **kwargs)

    @property
    def label(self) -> str:
        return self.info.label

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
        return self.session.run([OUTPUT], feed)[0]


class NaiveForecaster:
    """The last value, repeated: the fallback that needs no file and cannot fail on a complete window."""

    n_outputs = 1
    output_names = ["yhat"]

    def __init__(self, h: int, input_size: int) -> None:
        self.h, self.input_size = h, input_size
        self.info = ModelInfo(name="naive", kind="naive", variant="numpy")

    @property
    def label(self) -> str:
        return "naive (last value, numpy)"

    needs_exog = False

    def run(self, windows: np.ndarray, hist_exog: np.ndarray | None = None,
            futr_exog: np.ndarray | None = None) -> np.ndarray:
        windows = np.asarray(windows, dtype=np.float32)
        return np.repeat(windows[:, -1:, None], self.h, axis=1)
