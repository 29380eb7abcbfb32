"""Export: the serving graph and its ONNX file equal neuralforecast's own predictions; dynamic batch; the export
refuses a graph that does not reproduce torch; the `onnx_model` asset's metadata and MLflow tags."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.serving.conftest import NAME, nhits_model, onnx_folder, real_bars, windows_of

TOL = 1e-5


def rel(got, want) -> float:
    from serving.export import max_rel_diff

    return max_rel_diff(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64))


def nf_predict(nf, windows: np.ndarray, freq: str) -> pd.DataFrame:
    """neuralforecast's own `NeuralForecast.predict`, one series per window (each exactly a window long)."""
    ds = pd.date_range("2023-03-01", periods=windows.shape[1], freq=freq)
    df = pd.concat([pd.DataFrame({"unique_id": f"w{i:04d}", "ds": ds, "y": w.astype(float)})
                    for i, w in enumerate(windows)], ignore_index=True)
    out = nf.predict(df=df)
    if "unique_id" not in out.columns:
        out = out.reset_index()
    return out.sort_values(["unique_id", "ds"], ignore_index=True)


def torch_out(module, windows: np.ndarray) -> np.ndarray:
    from serving.export import torch_forecast

    return torch_forecast(module, windows)


@pytest.mark.slow
def test_graph_and_onnx_equal_neuralforecast_predict_on_real_windows(served, tmp_path):
    """The registered NHITS (robust scaler, MAE): fused and unfused graphs, and the ONNX file stored in MLflow,
    reproduce `NeuralForecast.predict` on real windows to 1e-5 of the forecast scale."""
    from serving.graph import from_nhits
    from serving.runtime import OnnxForecaster

    nf = nhits_model(served).nf
    model = nf.models[0]
    assert (model.input_size, model.h, model.scaler.scaler_type) == (288, 12, "robust")
    windows = windows_of(served.frame(), model.input_size, 24)
    want = nf_predict(nf, windows, "5min")["NHITS"].to_numpy().reshape(len(windows), model.h)

    fused, plain = from_nhits(model), from_nhits(model, fuse=False)
    assert rel(torch_out(fused, windows)[..., 0], want) <= TOL
    assert rel(torch_out(plain, windows)[..., 0], want) <= TOL
    # the fused graph really is smaller: the last block keeps no backcast rows, two Linear layers became one
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n_params(fused) < n_params(plain)

    folder = onnx_folder(served, served.nhits, cache=tmp_path)
    report = json.loads((folder / "export.json").read_text())
    assert report["kind"] == "nhits" and report["max_rel_diff"] <= TOL and report["batches_checked"] == [1, 16, 256]
    onnx = OnnxForecaster.from_path(folder / "model.onnx")
    assert rel(onnx.run(windows)[..., 0], want) <= TOL


def _tiny_nhits(loss: str, scaler: str, freq: str = "min"):
    """A tiny NHITS trained for 3 steps on real 1-min closes (3 symbols)."""
    from neuralforecast import NeuralForecast

    from models.configs import spec_for
    from models.nhits import build_nhits, lightning_quiet

    parts = [real_bars(300, s)[["symbol", "ts", "close"]] for s in ("BTCUSD", "BTCUSDT", "BTCUSDC")]
    df = pd.concat(parts).rename(columns={"symbol": "unique_id", "close": "y"})
    df["ds"] = pd.to_datetime(df.ts).dt.tz_localize(None)
    spec = spec_for("crypto", "quick", h=6, input_size=24, max_steps=3, loss=loss, scaler_type=scaler, val_size=0,
                    mlp_units=((32, 32),) * 3, batch_size=32, n_pool_kernel_size=(4, 2, 1),
                    n_freq_downsample=(3, 2, 1))
    nf = NeuralForecast(models=[build_nhits(spec, accelerator="cpu")], freq=freq)
    with lightning_quiet():
        nf.fit(df=df[["unique_id", "ds", "y"]])
    windows = np.stack([p.close.to_numpy(np.float32)[-24 - k:len(p) - k] for p in parts for k in range(0, 60, 7)])
    return nf, windows


@pytest.mark.slow
@pytest.mark.parametrize("loss, scaler", [("quantile", "standard"), ("mse", "identity")])
def test_quantile_and_other_scalers_export_and_match(loss, scaler, tmp_path):
    """MQLoss exports with 3 outputs (in neuralforecast's column order) and the standard / identity scalers are
    reproduced; the ONNX file answers the same."""
    from serving.export import export_onnx
    from serving.graph import from_nhits
    from serving.runtime import OnnxForecaster

    nf, windows = _tiny_nhits(loss, scaler)
    model = nf.models[0]
    out = nf_predict(nf, windows, "min")
    cols = [f"NHITS{name}" for name in model.loss.output_names] if loss == "quantile" else ["NHITS"]
    want = np.stack([out[c].to_numpy().reshape(len(windows), model.h) for c in cols], axis=-1)
    assert want.shape == (len(windows), 6, 3 if loss == "quantile" else 1)

    for fuse in (True, False):
        graph = from_nhits(model, fuse=fuse)
        assert graph.n_outputs == want.shape[-1]
        assert rel(torch_out(graph, windows), want) <= TOL, f"fuse={fuse}"
    path = export_onnx(from_nhits(model), tmp_path / "model.onnx")
    onnx = OnnxForecaster.from_path(path)
    assert onnx.n_outputs == want.shape[-1] and onnx.h == 6 and onnx.input_size == 24
    assert rel(onnx.run(windows), want) <= TOL


def test_a_studentt_model_is_refused_with_a_clear_error():
    from models.configs import spec_for
    from models.nhits import build_nhits
    from serving.graph import from_nhits

    small = dict(h=4, input_size=16, max_steps=1, mlp_units=((8, 8),) * 3)
    studentt = build_nhits(spec_for("crypto", "quick", loss="studentt", **small), accelerator="cpu")
    with pytest.raises(ValueError, match="distribution"):
        from_nhits(studentt)


@pytest.mark.slow
def test_one_onnx_file_answers_any_batch_size(served, tmp_path):
    """Dynamic batch: B = 1, 7, 16, 256 from the same session, the right shapes, and each row the same as
    torch's and as that window's own B=1 answer."""
    from serving.graph import from_nhits
    from serving.runtime import OnnxForecaster

    model = nhits_model(served).nf.models[0]
    graph = from_nhits(model)
    onnx = OnnxForecaster.from_path(onnx_folder(served, served.nhits, cache=tmp_path) / "model.onnx")
    assert (onnx.input_size, onnx.h, onnx.n_outputs) == (288, 12, 1)
    pool = windows_of(served.frame(), 288, 64)
    singles = np.concatenate([onnx.run(pool[i:i + 1]) for i in range(len(pool))])
    for batch in (1, 7, 16, 256):
        sample = pool[np.arange(batch) % len(pool)]
        got = onnx.run(sample)
        assert got.shape == (batch, 12, 1)
        assert rel(got, torch_out(graph, sample)) <= TOL
        np.testing.assert_allclose(got, singles[np.arange(batch) % len(pool)], rtol=1e-5, atol=1e-3)


@pytest.mark.slow
def test_export_fails_when_the_graph_does_not_reproduce_torch(served, tmp_path):
    """The verification is real: an ONNX file checked against a module whose weights differ (one weight nudged)
    is refused; an export whose check is not finite (windows that overflow float32) is refused and leaves no
    export.json; so are windows of the wrong length and an object that is no model."""
    import torch

    from serving.export import ExportError, export_model, export_onnx, held_out_windows, verify
    from serving.graph import from_nhits

    pyfunc = nhits_model(served)
    model = pyfunc.nf.models[0]
    frame = served.frame()
    windows, actuals = held_out_windows(frame, 288, 12, max_windows=16)
    graph = from_nhits(model)
    path = export_onnx(graph, tmp_path / "ok" / "model.onnx")
    worst, checked = verify(path, graph, windows)
    assert worst <= TOL and checked == [1, 16, 256]

    with torch.no_grad():  # a weight changes after the export: the file no longer matches the module
        graph.blocks[-1].layers[-1].bias[0] += 1.0  # the first forecast step moves by one scaled unit
    with pytest.raises(ExportError, match="differs from torch at batch 1"):
        verify(path, graph, windows)

    out = tmp_path / "overflow"  # held-out windows on which the model overflows float32: nothing is verified
    with pytest.raises(ExportError, match=r"at batch 1: max relative difference nan"):
        export_model(pyfunc, out, np.full_like(windows, 3e38), actuals)
    assert (out / "model.onnx").exists() and not (out / "export.json").exists()
    with pytest.raises(ExportError, match=r"shape \(N, 288\)"):
        export_model(pyfunc, tmp_path / "bad", windows[:, :100], actuals)
    with pytest.raises(ExportError, match="cannot export"):
        export_model(object(), tmp_path / "none", windows, actuals)

    report = export_model(pyfunc, tmp_path / "good", windows, actuals)
    assert report.kind == "nhits" and report.max_rel_diff <= TOL and report.n_windows == 16
    assert report.output_names == ["yhat"] and report.files["fp32"] == "model.onnx"
    assert report.mae_fp32 > 0 and (report.int8_offered == (abs(report.int8_mae_change) <= 0.01))
    assert ("int8" in report.files) == (tmp_path / "good" / "model.int8.onnx").exists() == report.int8_offered
    assert json.loads((tmp_path / "good" / "export.json").read_text())["max_rel_diff"] == report.max_rel_diff


def test_held_out_windows_are_what_followed_each_window():
    """Values encode (series, position), so every window and its actuals can be checked exactly."""
    from serving.export import ExportError, held_out_windows

    ds = pd.date_range("2024-01-01", periods=100, freq="5min")
    frame = pd.concat([pd.DataFrame({"unique_id": f"S{s}", "ds": ds, "y": 1000.0 * s + np.arange(100)})
                       for s in range(3)], ignore_index=True).sample(frac=1, random_state=0)  # order must not matter
    wins, acts = held_out_windows(frame, 10, 4, max_windows=1000)
    assert wins.shape[1:] == (10,) and acts.shape[1:] == (4,) and len(wins) == len(acts)
    assert len(wins) == 3 * len(range(96, 9, -4))
    for w, a in zip(wins, acts):
        np.testing.assert_array_equal(np.diff(np.concatenate([w, a])), 1.0)  # contiguous, in time order
    assert {int(a[-1]) % 1000 for a in acts} >= {99}  # each series' last window ends at its last point

    few, _ = held_out_windows(frame, 10, 4, max_windows=5)
    assert few.shape == (5, 10)
    after = ds[60]
    wins, acts = held_out_windows(frame, 10, 4, after=after)
    assert (acts[:, 0] % 1000 > 60).all() and len(wins) == 3 * 9  # only targets after `after`
    with pytest.raises(ExportError, match="no series has 105 points"):
        held_out_windows(frame, 101, 4)


@pytest.mark.slow
def test_onnx_model_asset_metadata_and_registry_tags(served):
    """The asset's metadata (export table, max_rel_diff <= 1e-5) and the version tags `onnx`,
    `onnx_max_rel_diff`, `onnx_int8` on both exported versions; a second run reuses the exports."""
    from tests.conftest import run_job

    result = served.export_result
    meta = result.asset_materializations_for_node("onnx_model")[0].metadata
    assert meta["max_rel_diff"].value <= TOL
    table = meta["exports"].value
    assert "| alias" in table and "now" in table
    for version in (served.nhits, served.baseline):
        assert f"| {version} " in table or f"|{version}|" in table.replace(" ", "")
        tags = served.client().get_model_version(NAME, version).tags
        assert tags["onnx"] == "onnx/model.onnx"
        assert float(tags["onnx_max_rel_diff"]) <= TOL
        assert tags["onnx_int8"]
    assert served.client().get_model_version(NAME, served.baseline).tags["onnx_int8"] == "not applicable"
    assert meta["serve"].value == "tradecast serve --asset-class crypto --target close"

    import dagster as dg

    again = run_job("export_job", dg.MultiPartitionKey({"asset_class": "crypto", "target": "close"}))
    table = again.asset_materializations_for_node("onnx_model")[0].metadata["exports"].value
    assert "already" in table and "now" not in table
