"""Export: the serving graph and its ONNX file equal neuralforecast's own predictions; dynamic batch; the export
refuses a graph that does not reproduce torch on any one series; INT8 is gated per series on post-training windows
only; the `onnx_model` asset's metadata and MLflow tags."""

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
    import dataclasses

    import torch

    from serving.export import ExportError, export_model, export_onnx, verify
    from serving.graph import from_nhits
    from serving.windows import check_windows

    pyfunc = nhits_model(served)
    model = pyfunc.nf.models[0]
    checks = check_windows(served.frame(), 288, 12, max_windows=8, train_end=train_end_of(served))
    windows = checks.windows
    graph = from_nhits(model)
    path = export_onnx(graph, tmp_path / "ok" / "model.onnx")
    worst, checked, _ = verify(path, graph, windows, series=checks.series)
    assert worst <= TOL and checked == [1, 16, 256]

    with torch.no_grad():  # a weight changes after the export: the file no longer matches the module
        graph.blocks[-1].layers[-1].bias[0] += 1.0  # the first forecast step moves by one scaled unit
    with pytest.raises(ExportError, match="differs from torch at batch 1 on series"):
        verify(path, graph, windows, series=checks.series)

    out = tmp_path / "overflow"  # windows on which the model is not finite: nothing is verified (the scaler's
    with pytest.raises(ExportError, match=r"at batch 1 on series \w+: max relative difference nan"):  # float64
        export_model(pyfunc, out, dataclasses.replace(checks, windows=np.full_like(windows, np.inf)))  # takes 3e38)
    assert (out / "model.onnx").exists() and not (out / "export.json").exists()
    with pytest.raises(ExportError, match=r"shape \(N, 288\)"):
        export_model(pyfunc, tmp_path / "bad", dataclasses.replace(checks, windows=windows[:, :100]))
    with pytest.raises(ExportError, match="cannot export"):
        export_model(object(), tmp_path / "none", checks)

    report = export_model(pyfunc, tmp_path / "good", checks)
    assert report.kind == "nhits" and report.max_rel_diff <= TOL and report.max_rel_diff_series in set(checks.series)
    assert report.post_training_windows + report.in_sample_windows == len(checks)
    assert report.int8_windows == report.post_training_windows > 0
    assert report.output_names == ["yhat"] and report.files["fp32"] == "model.onnx"
    assert set(report.int8_deviation_by_series) == set(checks.series[checks.post_training])
    assert report.int8_offered == (max(report.int8_deviation_by_series.values()) <= 0.01)
    assert ("int8" in report.files) == (tmp_path / "good" / "model.int8.onnx").exists() == report.int8_offered
    assert json.loads((tmp_path / "good" / "export.json").read_text())["max_rel_diff"] == report.max_rel_diff

    # no window after the training end: INT8 is refused with the reason, fp32 is still exported and verified
    in_sample = export_model(pyfunc, tmp_path / "in_sample", checks.select(~checks.post_training))
    assert not in_sample.int8_offered and "no windows after the training end" in in_sample.int8_note
    assert in_sample.post_training_windows == 0 and not (tmp_path / "in_sample" / "model.int8.onnx").exists()


def train_end_of(served) -> pd.Timestamp:
    import duckdb

    con = duckdb.connect(str(served.home / "warehouse.duckdb"), read_only=True)
    try:
        value = con.execute("SELECT max(train_end) FROM model_evaluations WHERE model_name = ? AND version = ?",
                            [NAME, served.nhits]).fetchone()[0]
    finally:
        con.close()
    return pd.Timestamp(value)


@pytest.mark.slow
def test_the_int8_gate_of_the_stored_export_used_only_windows_after_train_end(served, tmp_path):
    """The `onnx_model` export of the trained NHITS: export.json names its windows (post-training / in-sample)
    and the INT8 gate compared INT8 with fp32 on post-training windows only, every one forecasting after the
    version's train_end (the old export pooled windows spread over the training period into that check)."""
    from serving.windows import check_windows

    train_end = train_end_of(served)
    report = json.loads((onnx_folder(served, served.nhits, cache=tmp_path) / "export.json").read_text())
    assert pd.Timestamp(report["train_end"]) == train_end
    assert report["post_training_windows"] > 0 and report["in_sample_windows"] > 0
    assert report["int8_windows"] == report["post_training_windows"]
    assert pd.Timestamp(report["post_training_first_target"]) > train_end
    assert set(report["int8_deviation_by_series"]) == {"BTCUSD", "BTCUSDC", "BTCUSDT"}

    checks = check_windows(served.frame(), 288, 12, train_end=train_end)  # what the asset passed the export
    assert (checks.first_target[checks.post_training] > np.datetime64(train_end)).all()
    assert (checks.first_target[~checks.post_training] <= np.datetime64(train_end)).all()
    assert checks.describe()["post_training_windows"] == report["post_training_windows"]


def _frame(n: int = 100, series: int = 3) -> pd.DataFrame:
    ds = pd.date_range("2024-01-01", periods=n, freq="5min")
    return pd.concat([pd.DataFrame({"unique_id": f"S{s}", "ds": ds, "y": 1000.0 * s + np.arange(n)})
                      for s in range(series)], ignore_index=True).sample(frac=1, random_state=0)  # any row order


def test_check_windows_flag_post_training_windows_and_keep_them_apart():
    """Post-training windows forecast only after train_end; in-sample ones are flagged as such, never mixed into
    the post-training set; without a train_end nothing is post-training. Values encode (series, position)."""
    from serving.windows import check_windows

    frame = _frame()
    train_end = pd.Timestamp("2024-01-01") + pd.Timedelta(minutes=5 * 60)  # position 60
    checks = check_windows(frame, 10, 4, max_windows=1000, train_end=train_end)
    post = checks.post_training_only()
    assert len(post) == 3 * 9 and (post.first_target > np.datetime64(train_end)).all()  # ends 96, 92, .., 64
    assert (post.actuals[:, 0] % 1000 > 60).all() and (post.windows[:, -1] % 1000 >= 60).all()  # origin >= train_end
    assert (checks.actuals[~checks.post_training][:, 0] % 1000 <= 60).all()
    for w, a, s in zip(checks.windows, checks.actuals, checks.series, strict=True):  # contiguous, of their own series
        np.testing.assert_array_equal(np.diff(np.concatenate([w, a])), 1.0)
        assert int(w[0]) // 1000 == int(s[1:])
    keys = list(zip(checks.series, checks.first_target, strict=True))
    assert len(keys) == len(set(keys))  # no window twice
    assert checks.describe() == {"train_end": str(train_end), "post_training_windows": 27,
                                 "in_sample_windows": len(checks) - 27,
                                 "post_training_first_target": "2024-01-01 05:20:00",
                                 "post_training_series": 3}
    assert not check_windows(frame, 10, 4, train_end=None).post_training.any()
    late = check_windows(frame, 10, 4, train_end=pd.Timestamp("2030-01-01"))  # nothing after it: none, not a fallback
    assert len(late.post_training_only()) == 0 and late.describe()["post_training_first_target"] is None


def test_per_series_tolerance_catches_an_error_on_a_tiny_series_that_the_pooled_check_misses():
    """A series at level 0.001 beside one at 60000: an ONNX error of 1e-6 on the small one is 1e-3 of its scale
    (100x the 1e-5 tolerance) but 2e-11 of the pooled scale, which the old pooled check passed."""
    from serving.export import by_series, max_rel_diff, worst

    rng = np.random.default_rng(0)
    series = np.repeat(["BIG", "TINY"], 8)
    torch_out = np.concatenate([60000 + rng.normal(0, 50, (8, 12, 1)), 0.001 + rng.normal(0, 1e-4, (8, 12, 1))])
    onnx_out = torch_out.copy()
    onnx_out[:8] *= 1 + 1e-7  # float32-level noise on the big series: fine
    onnx_out[8:, 3] += 1e-6  # a real error on the tiny series
    assert max_rel_diff(onnx_out, torch_out) <= 1e-5  # pooled: hidden
    diffs = by_series(onnx_out, torch_out, series)
    assert diffs["BIG"] <= 1e-5 and diffs["TINY"] > 1e-4
    assert worst(diffs) == (diffs["TINY"], "TINY")
    nan = onnx_out.copy()
    nan[0, 0, 0] = np.nan
    assert np.isnan(worst(by_series(nan, torch_out, series))[0])  # never within a tolerance


def test_int8_gate_refuses_when_one_series_deviates_though_the_pooled_mae_is_fine():
    """INT8 is compared with fp32 per series: one series whose INT8 forecasts are 5% off is refused even though
    the old pooled rule (MAE against the actuals over all windows, within 1%) passed it."""
    from serving.export import int8_gate

    rng = np.random.default_rng(1)
    series = np.repeat(["A", "B", "C"], 6)
    level = np.repeat([30000.0, 2000.0, 0.002], 6)[:, None, None]
    fp32 = level * (1 + rng.normal(0, 0.01, (18, 12, 1)))
    actuals = (level * (1 + rng.normal(0, 0.01, (18, 12, 1))))[..., 0]
    int8 = fp32 * (1 + rng.normal(0, 1e-4, fp32.shape))
    int8[12:] *= 1.05  # series C: INT8 forecasts 5% away from fp32
    old_change = np.mean(np.abs(int8[..., 0] - actuals)) / np.mean(np.abs(fp32[..., 0] - actuals)) - 1
    assert abs(old_change) <= 0.01  # the pooled MAE rule would have offered it
    offered, largest, name, deviations = int8_gate(int8, fp32, series, 0.01)
    assert not offered and name == "C" and largest == pytest.approx(0.05, rel=1e-3)
    assert deviations["A"] < 1e-3 and deviations["B"] < 1e-3
    assert int8_gate(int8[:12], fp32[:12], series[:12], 0.01)[0]  # without C: offered


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
    assert "post_training_windows" in table and "in_sample_windows" in table  # the windows named for what they are
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
