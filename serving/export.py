"""Export a registered model (NHITS or baseline) to ONNX with a dynamic batch, verify it, and derive the
optional fast variants (dynamic INT8, TorchScript).

Verification is part of the export: the ONNX outputs must equal the torch outputs on held-out windows
(``max |onnx - torch| / max |torch| <= tol``, default 1e-5), at several batch sizes, or :class:`ExportError` is
raised and nothing is stored. INT8 is offered only when its forecast error on the same windows is within
``int8_tolerance`` (default 1%) of the fp32 error.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

INPUT, OUTPUT = "windows", "forecast"
HIST, FUTR = "hist_exog", "futr_exog"
OPSET = 18
CHECK_BATCHES = (1, 16, 256)


class ExportError(RuntimeError):
    """The exported graph does not reproduce the model (or the model cannot be exported)."""


@dataclass
class ExportReport:
    """What an export produced and measured; stored beside the ONNX file as ``export.json``."""

    kind: str  # 'nhits' or 'baseline'
    h: int
    input_size: int
    n_outputs: int
    output_names: list[str]
    batches_checked: list[int]
    max_rel_diff: float
    tolerance: float
    n_windows: int
    mae_fp32: float | None = None
    mae_int8: float | None = None
    int8_mae_change: float | None = None  # relative: (int8 - fp32) / fp32
    int8_offered: bool = False
    int8_note: str = ""
    files: dict[str, str] = field(default_factory=dict)
    hist_exog: list[str] = field(default_factory=list)  # input hist_exog (B, input_size, n), in this order
    futr_exog: list[str] = field(default_factory=list)  # input futr_exog (B, input_size + h, n)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def graph_for(model: Any) -> tuple[Any, str, list[str]]:
    """The serving graph of an MLflow pyfunc's python model (``NHITSModel`` or ``BaselineModel``):
    ``(module, kind, output_names)``. ``output_names`` label the last axis (``['yhat']`` or quantiles)."""
    from serving.graph import BaselineGraph, from_nhits

    if hasattr(model, "nf"):
        nhits = model.nf.models[0]
        names = list(getattr(nhits.loss, "output_names", [""]) or [""])
        labels = ["yhat"] if len(names) == 1 else [_quantile_label(n) for n in names]
        return from_nhits(nhits), "nhits", labels
    if hasattr(model, "forecaster"):
        f = model.forecaster
        return BaselineGraph(f.name, f.h, f.input_size, f.season_length).eval(), "baseline", ["yhat"]
    raise ExportError(f"cannot export {type(model).__name__}: expected an NHITS or a baseline pyfunc model")


def _quantile_label(name: str) -> str:
    """neuralforecast MQLoss output names ('-lo-80.0', '-median', '-hi-80.0') as the forecasts table's columns
    (``lo``, ``yhat``, ``hi``: the 80% interval and the median)."""
    name = name.strip("-_")
    return {"median": "yhat", "": "yhat"}.get(name, name.split("-")[0])


def example_inputs(module: Any, batch: int = 2) -> tuple[dict[str, Any], list[str]]:
    """Inputs of the graph (``windows`` and, for a model with exogenous columns, ``hist_exog`` (B, L, n) and
    ``futr_exog`` (B, L + h, n)) as example tensors, and their names in order."""
    import torch

    L, h = module.input_size, module.h
    inputs = {INPUT: torch.zeros(batch, L) + torch.linspace(1.0, 2.0, L)}
    if getattr(module, "hist_exog", ()):
        inputs[HIST] = torch.rand(batch, L, len(module.hist_exog), generator=torch.Generator().manual_seed(0))
    if getattr(module, "futr_exog", ()):
        inputs[FUTR] = torch.rand(batch, L + h, len(module.futr_exog), generator=torch.Generator().manual_seed(1))
    return inputs, list(inputs)


def export_onnx(module: Any, path: str | Path) -> Path:
    """Write ``module`` as ONNX with a dynamic batch axis (TorchScript-based exporter, opset 18)."""
    import warnings

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs, names = example_inputs(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(inputs.values()), str(path), input_names=names, output_names=[OUTPUT],
                          dynamic_axes={**{n: {0: "batch"} for n in names}, OUTPUT: {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    return path


def torch_forecast(module: Any, windows: np.ndarray, **exog: np.ndarray | None) -> np.ndarray:
    import torch

    extra = [torch.as_tensor(exog[k], dtype=torch.float32) for k in (HIST, FUTR) if exog.get(k) is not None]
    with torch.no_grad():
        return module(torch.as_tensor(windows, dtype=torch.float32), *extra).numpy()


def max_rel_diff(got: np.ndarray, want: np.ndarray) -> float:
    """``max |got - want|`` relative to the largest ``|want|`` (the forecasts' scale)."""
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-12))


def verify(path: str | Path, module: Any, windows: np.ndarray, *, tol: float = 1e-5,
           batches: tuple[int, ...] = CHECK_BATCHES, **exog: np.ndarray | None) -> tuple[float, list[int]]:
    """Run the ONNX file at each batch size on real windows and compare with torch; raise if off."""
    from serving.runtime import OnnxForecaster

    runtime = OnnxForecaster.from_path(path)
    worst, checked = 0.0, []
    for batch in batches:
        idx = np.arange(batch) % len(windows)
        sample = windows[idx]
        extra = {k: v[idx] for k, v in exog.items() if v is not None}
        diff = max_rel_diff(runtime.run(sample, **extra), torch_forecast(module, sample, **extra))
        worst, checked = max(worst, diff), [*checked, batch]
        if not np.isfinite(diff) or diff > tol:
            raise ExportError(f"{Path(path).name}: ONNX differs from torch at batch {batch}: max relative "
                              f"difference {diff:.3g} > {tol:g}")
    return worst, checked


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """Dynamic INT8 quantization (ONNX Runtime's tool): weights per output channel (about half the error of one
    scale per tensor on our NHITS, at the same speed), activations quantized per call."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger("root").setLevel(logging.ERROR)  # the quantizer warns about pre-processing on stdout
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
    return Path(dst)


def mae(forecast: np.ndarray, actual: np.ndarray, output: int = 0) -> float:
    return float(np.mean(np.abs(forecast[..., output] - actual)))


def export_model(model: Any, out_dir: str | Path, windows: np.ndarray, actuals: np.ndarray, *,
                 tol: float = 1e-5, int8_tolerance: float = 0.01, **exog: np.ndarray | None) -> ExportReport:
    """Export, verify and (when accurate enough) quantize ``model`` into ``out_dir``:
    ``model.onnx``, maybe ``model.int8.onnx``, and ``export.json``. ``windows`` (N, input_size) are held-out
    inputs, ``actuals`` (N, h) what followed them; ``hist_exog`` / ``futr_exog`` their exogenous inputs when the
    model has any."""
    out_dir = Path(out_dir)
    module, kind, labels = graph_for(model)
    if windows.ndim != 2 or windows.shape[1] != module.input_size or not len(windows):
        raise ExportError(f"need held-out windows of shape (N, {module.input_size}); got {windows.shape}")
    missing = [k for k, cols in ((HIST, getattr(module, "hist_exog", ())), (FUTR, getattr(module, "futr_exog", ())))
               if cols and exog.get(k) is None]
    if missing:
        raise ExportError(f"the model reads exogenous columns: pass {missing} for the held-out windows")
    fp32 = export_onnx(module, out_dir / "model.onnx")
    diff, checked = verify(fp32, module, windows, tol=tol, **exog)
    report = ExportReport(kind=kind, h=module.h, input_size=module.input_size, n_outputs=module.n_outputs,
                          output_names=labels, batches_checked=checked, max_rel_diff=diff, tolerance=tol,
                          n_windows=len(windows), files={"fp32": fp32.name})
    if kind == "nhits":
        from serving.runtime import OnnxForecaster

        int8 = quantize_int8(fp32, out_dir / "model.int8.onnx")
        median = labels.index("yhat")
        report.mae_fp32 = mae(OnnxForecaster.from_path(fp32).run(windows, **exog), actuals, median)
        report.mae_int8 = mae(OnnxForecaster.from_path(int8).run(windows, **exog), actuals, median)
        report.int8_mae_change = (report.mae_int8 - report.mae_fp32) / max(report.mae_fp32, 1e-12)
        report.int8_offered = abs(report.int8_mae_change) <= int8_tolerance
        report.int8_note = (f"INT8 changes the MAE on {len(windows)} held-out windows by "
                            f"{100 * report.int8_mae_change:+.2f}% (limit ±{100 * int8_tolerance:g}%)")
        if report.int8_offered:
            report.files["int8"] = int8.name
        else:
            int8.unlink()
    report.hist_exog = list(getattr(module, "hist_exog", ()))
    report.futr_exog = list(getattr(module, "futr_exog", ()))
    (out_dir / "export.json").write_text(report.to_json())
    return report


def torchscript(module: Any) -> Any:
    """The TorchScript fallback (traced; the graph has no data-dependent control flow)."""
    import torch

    inputs, _ = example_inputs(module)
    with torch.no_grad():
        return torch.jit.freeze(torch.jit.trace(module, tuple(inputs.values())).eval())


def _held_out_ends(frame: Any, input_size: int, h: int, max_windows: int, after: Any) -> list[tuple[Any, int]]:
    """``(series rows, end)`` of the held-out windows: from the end of each series (after ``after`` where given),
    spaced ``h`` apart, at most ``max_windows`` evenly chosen."""
    ends = []
    for _, part in frame.sort_values(["unique_id", "ds"]).groupby("unique_id", sort=True):
        first = input_size if after is None else max(input_size, int((part["ds"] <= after).sum()))
        ends += [(part, end) for end in range(len(part) - h, first - 1, -h)]
    if not ends:
        raise ExportError(f"no series has {input_size + h} points for a held-out window")
    keep = np.linspace(0, len(ends) - 1, min(max_windows, len(ends))).round().astype(int)
    return [ends[i] for i in keep]


def held_out_windows(frame: Any, input_size: int, h: int, *, max_windows: int = 64,
                     after: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Input windows and what followed them (``(N, input_size)``, ``(N, h)``) from a long ``unique_id, ds, y``
    frame (see :func:`_held_out_ends`)."""
    chosen = _held_out_ends(frame, input_size, h, max_windows, after)
    ys = [part["y"].to_numpy(dtype=np.float32) for part, _ in chosen]
    return (np.stack([y[end - input_size:end] for y, (_, end) in zip(ys, chosen)]),
            np.stack([y[end:end + h] for y, (_, end) in zip(ys, chosen)]))


def held_out_exog(frame: Any, input_size: int, h: int, hist: tuple[str, ...], futr: tuple[str, ...], *,
                  max_windows: int = 64, after: Any = None) -> dict[str, np.ndarray | None]:
    """The exogenous inputs of the same windows as :func:`held_out_windows`: ``hist_exog`` (N, input_size, n)
    and ``futr_exog`` (N, input_size + h, n) from the frame's feature columns."""
    chosen = _held_out_ends(frame, input_size, h, max_windows, after)

    def stack(cols: tuple[str, ...], ahead: int) -> np.ndarray | None:
        if not cols:
            return None
        return np.stack([part[list(cols)].to_numpy(dtype=np.float32)[end - input_size:end + ahead]
                         for part, end in chosen])

    return {HIST: stack(hist, 0), FUTR: stack(futr, h)}


def check_windows(frame: Any, input_size: int, h: int, hist: tuple[str, ...] = (), futr: tuple[str, ...] = (), *,
                  max_windows: int = 256, train_end: Any = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """The export's check windows: those after the version's training period (``train_end``), plus windows spread
    over the whole frame (a short test period gives too few for the INT8 accuracy check); with their actuals
    and exogenous inputs."""
    parts = []
    for after in (train_end, None) if train_end is not None else (None,):
        where = dict(max_windows=max_windows, after=after)
        parts.append((*held_out_windows(frame, input_size, h, **where),
                      held_out_exog(frame, input_size, h, hist, futr, **where)))
    windows, actuals = (np.concatenate([p[i] for p in parts]) for i in (0, 1))
    exog = {k: None if parts[0][2][k] is None else np.concatenate([p[2][k] for p in parts]) for k in parts[0][2]}
    return windows, actuals, exog
