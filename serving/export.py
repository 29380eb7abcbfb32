"""Export a registered model (NHITS, baseline, or an ensemble of the two) to ONNX with a dynamic batch, verify it,
and derive the optional fast variants (dynamic INT8, TorchScript).

Verification is part of the export: on the check windows (:mod:`serving.windows`: post-training windows and, as
this is a numerical equality test, in-sample ones too) the ONNX outputs must equal the torch outputs at several
batch sizes **per series**: ``max |onnx - torch| / max |torch|`` over each series' windows ``<= tol`` (default
1e-5) for every series, so a series at level 0.001 beside one at 60000 cannot hide its error. Otherwise
:class:`ExportError` is raised and nothing is stored.

INT8 (NHITS and ensemble graphs; a baseline graph has no weights to quantize) is offered only when, on the
**post-training** windows alone (every forecast step after the version's ``train_end``), for every series ``s``:
``mean |int8 - fp32| / mean |fp32|`` of its forecasts (all steps and outputs) ``<= int8_tolerance`` (default 1%).
With no post-training window INT8 is not offered (the note says why); fp32 is still exported, its equality check
needs no held-out data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.windows import FUTR, HIST, INPUT, OUTPUT, CheckWindows

OPSET = 18
CHECK_BATCHES = (1, 16, 256)
TOLERANCE_RULE = "per series s: max |onnx - torch| / max |torch| over s's windows <= tolerance, at every batch size"
INT8_RULE = ("per series s over the post-training windows: mean |int8 - fp32| / mean |fp32| of the forecasts "
             "(all steps and outputs) <= int8_tolerance")


class ExportError(RuntimeError):
    """The exported graph does not reproduce the model (or the model cannot be exported)."""


@dataclass
class ExportReport:
    """What an export produced and measured; stored beside the ONNX file as ``export.json``."""

    kind: str  # 'nhits', 'baseline' or 'ensemble' (NHITS + a served baseline)
    h: int
    input_size: int
    n_outputs: int
    output_names: list[str]
    batches_checked: list[int]
    max_rel_diff: float  # the largest per-series relative difference (TOLERANCE_RULE)
    max_rel_diff_series: str
    tolerance: float
    tolerance_rule: str = TOLERANCE_RULE
    train_end: str | None = None  # the version's training end; post-training windows forecast only after it
    post_training_windows: int = 0  # used by the equality check and by the INT8 gate
    in_sample_windows: int = 0  # inside the training period: used by the equality check only
    post_training_first_target: str | None = None  # the earliest timestamp a post-training window forecasts
    post_training_series: int = 0
    int8_rule: str = INT8_RULE
    int8_tolerance: float | None = None
    int8_windows: int = 0  # post-training windows the INT8 gate compared on
    int8_max_deviation: float | None = None
    int8_worst_series: str = ""
    int8_deviation_by_series: dict[str, float] = field(default_factory=dict)
    int8_offered: bool = False
    int8_note: str = ""
    files: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)  # of each file: the service verifies its download
    hist_exog: list[str] = field(default_factory=list)  # input hist_exog (B, input_size, n), in this order
    futr_exog: list[str] = field(default_factory=list)  # input futr_exog (B, input_size + h, n)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def graph_for(model: Any) -> tuple[Any, str, list[str]]:
    """The serving graph of an MLflow pyfunc's python model (``NHITSModel`` or ``BaselineModel``):
    ``(module, kind, output_names)``, kind ``'nhits'``, ``'ensemble'`` (an ``NHITSModel`` with ``.ensemble``:
    an :class:`serving.graph.EnsembleGraph`) or ``'baseline'``. ``output_names`` label the last axis
    (``['yhat']`` or quantiles)."""
    from domain.vocabulary import BASELINE_KIND, ENSEMBLE_KIND, NHITS_KIND
    from serving.graph import BaselineGraph, EnsembleGraph, from_nhits
    from storage.pyfunc import BaselineModel, NHITSModel

    if isinstance(model, NHITSModel):
        nhits = model.nf.models[0]
        names = list(getattr(nhits.loss, "output_names", [""]) or [""])
        labels = ["yhat"] if len(names) == 1 else [_quantile_label(n) for n in names]
        if model.ensemble is None:
            return from_nhits(nhits), NHITS_KIND, labels
        f = model.baseline
        baseline = BaselineGraph(f.name, f.h, f.input_size, f.season_length).eval()
        return EnsembleGraph(from_nhits(nhits), baseline, model.weight).eval(), ENSEMBLE_KIND, labels
    if isinstance(model, BaselineModel):
        f = model.forecaster
        return BaselineGraph(f.name, f.h, f.input_size, f.season_length).eval(), BASELINE_KIND, ["yhat"]
    raise ExportError(f"cannot export {type(model).__name__}: expected an NHITS, ensemble or baseline pyfunc model")


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
    """``max |got - want|`` relative to the largest ``|want|`` (the forecasts' scale), pooled over all windows."""
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-12))


def by_series(got: np.ndarray, want: np.ndarray, series: np.ndarray,
              reduce: Callable[[np.ndarray], Any] = np.max) -> dict[str, float]:
    """Per series ``s``: ``reduce |got - want| / reduce |want|`` over the rows (windows) of ``s``, all steps and
    outputs (``np.max``: the equality check's measure; ``np.mean``: the INT8 gate's). NaN where not finite."""
    out = {}
    for name in np.unique(series):
        rows = series == name
        with np.errstate(invalid="ignore", over="ignore"):
            diff = float(reduce(np.abs(got[rows] - want[rows]))) / max(float(reduce(np.abs(want[rows]))), 1e-12)
        out[str(name)] = diff if np.isfinite(diff) else float("nan")
    return out


def worst(diffs: dict[str, float]) -> tuple[float, str]:
    """The largest value of ``diffs`` and its series (NaN ranks first: it is never within a tolerance)."""
    name = max(diffs, key=lambda k: np.inf if np.isnan(diffs[k]) else diffs[k])
    return diffs[name], name


def verify(path: str | Path, module: Any, windows: np.ndarray, *, series: np.ndarray | None = None,
           tol: float = 1e-5, batches: tuple[int, ...] = CHECK_BATCHES,
           **exog: np.ndarray | None) -> tuple[float, list[int], str]:
    """Run the ONNX file at each batch size on real windows and compare with torch per series (``series``: the
    series of each window; one series when not given); raise if any series is off. Returns the largest
    per-series relative difference, the batch sizes checked and the series it was found in."""
    from serving.runtime import OnnxForecaster

    series = np.zeros(len(windows), int) if series is None else np.asarray(series)
    runtime = OnnxForecaster.from_path(path)
    largest, where, checked = 0.0, "", []
    for batch in batches:
        idx = np.arange(batch) % len(windows)
        sample = windows[idx]
        extra = {k: v[idx] for k, v in exog.items() if v is not None}
        diff, name = worst(by_series(runtime.run(sample, **extra), torch_forecast(module, sample, **extra),
                                     series[idx]))
        checked.append(batch)
        if not np.isfinite(diff) or diff > tol:
            raise ExportError(f"{Path(path).name}: ONNX differs from torch at batch {batch} on series {name}: max "
                              f"relative difference {diff:.3g} > {tol:g} (relative to that series' largest "
                              f"|forecast|)")
        if diff >= largest:
            largest, where = diff, name
    return largest, checked, where


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """Dynamic INT8 quantization (ONNX Runtime's tool): weights per output channel (about half the error of one
    scale per tensor on our NHITS, at the same speed), activations quantized per call."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger("root").setLevel(logging.ERROR)  # the quantizer warns about pre-processing on stdout
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
    return Path(dst)


def int8_gate(int8: np.ndarray, fp32: np.ndarray, series: np.ndarray,
              tolerance: float) -> tuple[bool, float, str, dict[str, float]]:
    """:data:`INT8_RULE`: ``(offered, largest deviation, its series, deviation per series)`` of INT8 forecasts
    from the fp32 ones (``(N, h, outputs)`` each, ``series`` (N,)), every series within ``tolerance``."""
    deviations = by_series(int8, fp32, series, np.mean)
    largest, name = worst(deviations)
    return bool(np.isfinite(largest) and largest <= tolerance), largest, name, deviations


def export_model(model: Any, out_dir: str | Path, checks: CheckWindows, *, tol: float = 1e-5,
                 int8_tolerance: float = 0.01) -> ExportReport:
    """Export, verify and (when accurate enough) quantize ``model`` into ``out_dir``: ``model.onnx``, maybe
    ``model.int8.onnx``, and ``export.json``. ``checks`` (:func:`serving.windows.check_windows`): every window
    serves the per-series ONNX = torch check; only its post-training windows serve the INT8 gate (the module
    docstring has both rules; ``export.json`` records them, the window counts and the per-series results)."""
    from domain.vocabulary import BASELINE_KIND

    out_dir = Path(out_dir)
    module, kind, labels = graph_for(model)
    windows, exog = checks.windows, checks.exog
    if windows.ndim != 2 or windows.shape[1] != module.input_size or not len(windows):
        raise ExportError(f"need check windows of shape (N, {module.input_size}); got {windows.shape}")
    missing = [k for k, cols in ((HIST, getattr(module, "hist_exog", ())), (FUTR, getattr(module, "futr_exog", ())))
               if cols and exog.get(k) is None]
    if missing:
        raise ExportError(f"the model reads exogenous columns: pass {missing} for the check windows")
    fp32 = export_onnx(module, out_dir / "model.onnx")
    diff, checked, where = verify(fp32, module, windows, series=checks.series, tol=tol, **exog)
    report = ExportReport(kind=kind, h=module.h, input_size=module.input_size, n_outputs=module.n_outputs,
                          output_names=labels, batches_checked=checked, max_rel_diff=diff, max_rel_diff_series=where,
                          tolerance=tol, files={"fp32": fp32.name}, **checks.describe())
    report.hist_exog = list(getattr(module, "hist_exog", ()))
    report.futr_exog = list(getattr(module, "futr_exog", ()))
    if kind != BASELINE_KIND:  # NHITS and ensemble graphs hold weights to quantize
        _int8(report, fp32, out_dir / "model.int8.onnx", checks.post_training_only(), int8_tolerance)
    from ingest.files import atomic_write_text, sha256_of

    report.sha256 = {name: sha256_of(out_dir / name) for name in report.files.values()}
    atomic_write_text(out_dir / "export.json", report.to_json())
    return report


def _int8(report: ExportReport, fp32: Path, path: Path, post: CheckWindows, tolerance: float) -> None:
    """Quantize and gate INT8 on the post-training windows (kept in ``path`` only when offered)."""
    from serving.runtime import OnnxForecaster

    report.int8_tolerance = tolerance
    if not len(post):
        end = report.train_end or "not recorded for this version"
        report.int8_note = f"INT8 not offered: no windows after the training end ({end}) to compare it with fp32 on"
        return
    int8 = quantize_int8(fp32, path)
    want = OnnxForecaster.from_path(fp32).run(post.windows, **post.exog)
    got = OnnxForecaster.from_path(int8).run(post.windows, **post.exog)
    offered, largest, name, deviations = int8_gate(got, want, post.series, tolerance)
    report.int8_windows, report.int8_deviation_by_series = len(post), deviations
    report.int8_max_deviation, report.int8_worst_series, report.int8_offered = largest, name, offered
    report.int8_note = (f"INT8 vs fp32 on {len(post)} post-training windows of {len(deviations)} series: largest "
                        f"mean deviation {100 * largest:.3g}% of the series' mean |forecast| ({name}; limit "
                        f"{100 * tolerance:g}% per series)")
    if offered:
        report.files["int8"] = int8.name
    else:
        int8.unlink()


def torchscript(module: Any) -> Any:
    """The TorchScript fallback (traced; the graph has no data-dependent control flow)."""
    import torch

    inputs, _ = example_inputs(module)
    with torch.no_grad():
        return torch.jit.freeze(torch.jit.trace(module, tuple(inputs.values())).eval())
