"""Ensemble versions (NHITS + a served baseline): the pyfunc combines every output column as w * NHITS + (1 - w) *
baseline, EnsembleGraph equals the pyfunc on windows, its ONNX export is verified against torch, weight 1 is the
plain NHITS, and a bad weight or baseline is refused with a clear error. Tiny NHITS fitted 3 steps on real closes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.serving.conftest import real_bars

H, L = 6, 24
SYMBOLS = ("BTCUSD", "BTCUSDT", "BTCUSDC")
WINDOW_MEAN = {"name": "window_mean", "h": H, "input_size": 12, "season_length": 1, "freq": "min"}  # half the window
EWMA = {"name": "ewma", "h": H, "input_size": L, "season_length": 1, "freq": "min"}
TOL = 1e-5


def _fit(loss: str, hist: tuple[str, ...] = (), futr: tuple[str, ...] = ()):
    """A tiny NHITS (robust scaler) fitted 3 steps on 300 real 1-min closes of 3 symbols; its frame."""
    from neuralforecast import NeuralForecast

    from models.configs import spec_for
    from models.nhits import build_nhits, lightning_quiet

    parts = []
    for s in SYMBOLS:
        bars = real_bars(300, s)
        parts.append(pd.DataFrame({"unique_id": s, "ds": pd.to_datetime(bars.ts).dt.tz_localize(None),
                                   "y": bars.close.to_numpy(float)}))
    frame = pd.concat(parts, ignore_index=True)
    t = frame.groupby("unique_id").cumcount().to_numpy()
    for i, col in enumerate((*hist, *futr)):
        frame[col] = np.sin(t / (7.0 + 5 * i))  # columns that move, known in advance
    spec = spec_for("crypto", "quick", h=H, input_size=L, max_steps=3, loss=loss, scaler_type="robust", val_size=0,
                    mlp_units=((32, 32),) * 3, batch_size=32, n_pool_kernel_size=(4, 2, 1), n_freq_downsample=(3, 2, 1),
                    hist_exog=hist, futr_exog=futr)
    nf = NeuralForecast(models=[build_nhits(spec, accelerator="cpu")], freq="min")
    with lightning_quiet():
        nf.fit(df=frame)
    return nf, frame


@pytest.fixture(scope="module")
def point():
    return _fit("mae")


@pytest.fixture(scope="module")
def quantile():
    return _fit("quantile")


def _ewma_by_hand(values) -> float:
    sq = [float(v) ** 2 for v in values]
    k = min(30, len(sq))
    s = sum(sq[:k]) / k
    for v in sq:
        s = 0.94 * s + 0.06 * v
    return s**0.5


BY_HAND = {"window_mean": lambda v: float(np.mean(v[-12:])), "ewma": lambda v: _ewma_by_hand(v[-L:])}


def _windows(frame: pd.DataFrame) -> np.ndarray:
    ys = [g.y.to_numpy(np.float32) for _, g in frame.groupby("unique_id", sort=True)]
    return np.stack([y[len(y) - L - k:len(y) - k] for y in ys for k in range(0, 90, 11)])


def _window_frame(windows: np.ndarray) -> pd.DataFrame:
    """One series per window, each exactly a window long (what the service forecasts from)."""
    ds = pd.date_range("2023-03-01", periods=windows.shape[1], freq="min")
    return pd.concat([pd.DataFrame({"unique_id": f"w{i:03d}", "ds": ds, "y": w.astype(float)})
                      for i, w in enumerate(windows)], ignore_index=True)


def _graph(nf, params: dict, weight: float):
    from serving.graph import BaselineGraph, EnsembleGraph, from_nhits

    base = BaselineGraph(params["name"], params["h"], params["input_size"], params["season_length"]).eval()
    return EnsembleGraph(from_nhits(nf.models[0]), base, weight).eval()


def _rel(got, want) -> float:
    from serving.export import max_rel_diff

    return max_rel_diff(np.asarray(got, np.float64), np.asarray(want, np.float64))


@pytest.mark.parametrize("fixture", ["point", "quantile"])
def test_pyfunc_predict_is_w_times_nhits_plus_1_minus_w_times_the_baseline(fixture, request):
    from storage.pyfunc import NHITSModel

    nf, frame = request.getfixturevalue(fixture)
    plain = NHITSModel(nf).predict(frame)
    assert plain.lo.notna().all() == (fixture == "quantile")
    values = {uid: g.sort_values("ds").y.to_numpy() for uid, g in frame.groupby("unique_id")}
    for params in (WINDOW_MEAN, EWMA):
        model = NHITSModel(nf, {"weight": 0.7, "baseline": params})
        assert model.ensemble == {"weight": 0.7, "baseline": params} and model.weight == 0.7
        got = model.predict(frame)
        pd.testing.assert_frame_equal(got[["unique_id", "ds", "step"]], plain[["unique_id", "ds", "step"]])
        b = plain.unique_id.map({uid: BY_HAND[params["name"]](v) for uid, v in values.items()}).to_numpy()
        assert np.abs(b - plain.yhat).min() > 1.0  # the baseline really moves the forecast (price units)
        for col in ("yhat", "lo", "hi"):  # every output column; lo/hi stay NaN for a point model
            np.testing.assert_allclose(got[col], 0.7 * plain[col] + 0.3 * b, rtol=1e-12)
    assert NHITSModel(nf).ensemble is None and NHITSModel(nf).weight == 1.0


def test_weight_one_is_the_plain_nhits_and_weight_zero_the_baseline(point):
    import torch

    from models.served_baselines import BaselineForecaster
    from serving.graph import from_nhits
    from storage.pyfunc import NHITSModel

    nf, frame = point
    plain = NHITSModel(nf).predict(frame)
    pd.testing.assert_frame_equal(NHITSModel(nf, {"weight": 1, "baseline": EWMA}).predict(frame), plain)
    zero = NHITSModel(nf, {"weight": 0.0, "baseline": EWMA}).predict(frame)
    np.testing.assert_allclose(zero.yhat, BaselineForecaster(**EWMA).predict(frame).yhat, rtol=1e-12)
    windows = torch.from_numpy(_windows(frame))
    with torch.no_grad():
        np.testing.assert_array_equal(_graph(nf, EWMA, 1.0)(windows).numpy(), from_nhits(nf.models[0])(windows).numpy())


@pytest.mark.parametrize("fixture, params", [("point", WINDOW_MEAN), ("point", EWMA), ("quantile", EWMA)])
def test_ensemble_graph_equals_the_pyfunc_on_windows(fixture, params, request):
    from serving.export import torch_forecast
    from storage.pyfunc import NHITSModel

    nf, frame = request.getfixturevalue(fixture)
    windows = _windows(frame)
    graph = _graph(nf, params, 0.6)
    assert (graph.h, graph.input_size, graph.hist_exog, graph.futr_exog) == (H, L, (), ())
    got = torch_forecast(graph, windows)
    assert got.shape == (len(windows), H, 3 if fixture == "quantile" else 1) and graph.n_outputs == got.shape[-1]
    fc = NHITSModel(nf, {"weight": 0.6, "baseline": params}).predict(_window_frame(windows))
    cols = ["lo", "yhat", "hi"] if fixture == "quantile" else ["yhat"]
    want = np.stack([fc[c].to_numpy().reshape(len(windows), H) for c in cols], axis=-1)
    # the pyfunc orders the quantiles (lo <= yhat <= hi); w >= 0 and one baseline shift keep that order
    assert _rel(np.sort(got, axis=-1), want) <= TOL


@pytest.mark.parametrize("fixture, params", [("point", EWMA), ("quantile", WINDOW_MEAN)])
def test_the_export_of_an_ensemble_is_verified_and_its_onnx_equals_torch(fixture, params, request, tmp_path):
    from serving.export import ExportError, export_model, graph_for, torch_forecast, verify
    from serving.runtime import OnnxForecaster
    from serving.windows import check_windows
    from storage.pyfunc import NHITSModel

    nf, frame = request.getfixturevalue(fixture)
    model = NHITSModel(nf, {"weight": 0.25, "baseline": params})
    module, kind, labels = graph_for(model)
    assert kind == "ensemble" and type(module).__name__ == "EnsembleGraph" and module.weight == 0.25
    assert labels == graph_for(NHITSModel(nf))[2] == (["yhat"] if fixture == "point" else ["lo", "yhat", "hi"])
    train_end = frame.ds.sort_values().iloc[int(0.8 * len(frame))]
    checks = check_windows(frame, L, H, max_windows=16, train_end=train_end)
    report = export_model(model, tmp_path / "out", checks)
    assert report.kind == "ensemble" and report.max_rel_diff <= TOL and report.batches_checked == [1, 16, 256]
    assert report.output_names == labels and report.n_outputs == len(labels)
    assert report.int8_windows == report.post_training_windows > 0  # the INT8 gate ran, as for an NHITS
    stored = json.loads((tmp_path / "out" / "export.json").read_text())
    assert stored["kind"] == "ensemble" and stored["max_rel_diff"] == report.max_rel_diff

    windows = _windows(frame)
    onnx = OnnxForecaster.from_path(tmp_path / "out" / "model.onnx")
    assert (onnx.input_size, onnx.h, onnx.n_outputs) == (L, H, len(labels))
    assert _rel(onnx.run(windows), torch_forecast(module, windows)) <= TOL
    module.weight = 0.5  # the file no longer matches the module: the verification says so
    with pytest.raises(ExportError, match="differs from torch at batch 1"):
        verify(tmp_path / "out" / "model.onnx", module, checks.windows, series=checks.series)


def test_an_ensemble_with_exogenous_columns_takes_the_nhits_inputs(tmp_path):
    """hist/futr exogenous inputs pass to the NHITS; the baseline reads only the observed rows (the pyfunc is given
    future rows with y empty)."""
    import torch

    from serving.export import export_onnx
    from serving.graph import from_nhits
    from serving.runtime import OnnxForecaster
    from storage.pyfunc import NHITSModel

    nf, frame = _fit("mae", hist=("news",), futr=("fomc",))
    ahead = frame.groupby("unique_id").cumcount(ascending=False) < H  # each series' last H rows
    past, future = frame[~ahead], frame[ahead].assign(y=np.nan)
    given = pd.concat([past, future], ignore_index=True)
    plain = NHITSModel(nf).predict(given)
    got = NHITSModel(nf, {"weight": 0.4, "baseline": WINDOW_MEAN}).predict(given)
    b = plain.unique_id.map(past.groupby("unique_id").y.apply(lambda v: v.iloc[-12:].mean())).to_numpy()
    np.testing.assert_allclose(got.yhat, 0.4 * plain.yhat + 0.6 * b, rtol=1e-12)

    graph = _graph(nf, WINDOW_MEAN, 0.4)
    assert (graph.hist_exog, graph.futr_exog) == (("news",), ("fomc",))
    part = frame[frame.unique_id == "BTCUSDT"]
    win = part.y.to_numpy(np.float32)[None, -L - H:-H].repeat(3, 0)
    hist = part[["news"]].to_numpy(np.float32)[None, -L - H:-H].repeat(3, 0)
    futr = part[["fomc"]].to_numpy(np.float32)[None, -L - H:].repeat(3, 0)
    with torch.no_grad():
        x = [torch.from_numpy(a) for a in (win, hist, futr)]
        want = 0.4 * from_nhits(nf.models[0])(*x).numpy() + 0.6 * win[:, -12:].mean(axis=1)[:, None, None]
        np.testing.assert_allclose(graph(*x).numpy(), want, rtol=1e-6)
    onnx = OnnxForecaster.from_path(export_onnx(graph, tmp_path / "e.onnx"))
    assert onnx.inputs == ["windows", "hist_exog", "futr_exog"]
    assert _rel(onnx.run(win, hist_exog=hist, futr_exog=futr), want) <= TOL


@pytest.mark.parametrize("weight", [1.5, -0.1, float("nan"), float("inf"), "0.5", True, None])
def test_a_bad_weight_is_refused_with_a_clear_error(point, weight):
    from storage.pyfunc import NHITSModel

    nf, _ = point
    with pytest.raises(ValueError, match=r"ensemble weight must be a finite number in \[0, 1\]"):
        NHITSModel(nf, {"weight": weight, "baseline": EWMA})
    if isinstance(weight, float):
        with pytest.raises(ValueError, match=r"ensemble weight must be a finite number in \[0, 1\]"):
            _graph(nf, EWMA, weight)


def test_a_bad_ensemble_artifact_is_refused_and_a_good_one_loads(point, tmp_path):
    import yaml

    from models.forecasting import save_model
    from storage.pyfunc import ENSEMBLE_ARTIFACT, NHITS_ARTIFACT, NHITSModel, from_artifacts, load_dir

    nf, frame = point
    bad = [
        ({"weight": 0.5, "baseline": {**EWMA, "name": "garch"}}, "ensemble baseline: .*name must be one of"),
        ({"weight": 0.5, "baseline": {**EWMA, "h": H + 1}}, f"baseline h {H + 1} != the NHITS's h {H}"),
        ({"weight": 0.5, "baseline": {**EWMA, "input_size": L + 1}}, f"input_size {L + 1} > the NHITS's"),
        ({"weight": 0.5, "baseline": {k: v for k, v in EWMA.items() if k != "h"}}, r"missing \['h'\]"),
        ({"weight": 0.5, "baseline": {**EWMA, "season_length": 30, "name": "seasonal_naive"}}, "season_length 30 <="),
        ({"weight": 0.5, "baseline": EWMA, "note": 1}, r"keys \['baseline', 'weight'\]"),
        ([0.5, EWMA], "JSON object with keys"),
    ]
    for ensemble, match in bad:
        with pytest.raises(ValueError, match=match):
            NHITSModel(nf, ensemble)

    folder = tmp_path / "model"
    save_model(nf, folder / "artifacts" / "nf")
    artifact = folder / "artifacts" / "ensemble.json"
    artifacts = {NHITS_ARTIFACT: str(folder / "artifacts" / "nf"), ENSEMBLE_ARTIFACT: str(artifact)}
    artifact.write_text(json.dumps({"weight": float("nan"), "baseline": EWMA}))  # json writes NaN: still refused
    with pytest.raises(ValueError, match="weight must be a finite number"):
        from_artifacts(artifacts)
    artifact.write_text("{not json")
    with pytest.raises(ValueError, match="ensemble artifact ensemble.json is not valid JSON"):
        from_artifacts(artifacts)

    artifact.write_text(json.dumps({"weight": 0.3, "baseline": EWMA}))
    want = NHITSModel(nf, {"weight": 0.3, "baseline": EWMA}).predict(frame)
    loaded = from_artifacts(artifacts)
    assert loaded.ensemble == {"weight": 0.3, "baseline": EWMA}
    pd.testing.assert_frame_equal(loaded.predict(frame), want)
    (folder / "mlflow_model.py").write_text("raise SystemExit('never run')\n")
    (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": {"python_function": {
        "model_code_path": "mlflow_model.py",
        "artifacts": {NHITS_ARTIFACT: {"path": "artifacts/nf"}, ENSEMBLE_ARTIFACT: {"path": "artifacts/ensemble.json"}},
    }}}))
    from_dir = load_dir(folder, "test")  # the registry's loader: the folder check lets ensemble.json through
    assert from_dir.weight == 0.3 and from_dir.baseline.name == "ewma"
    pd.testing.assert_frame_equal(from_dir.predict(frame), want)
