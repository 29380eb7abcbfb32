"""The benchmark runner (plain code): every model on a tiny real slice, hand-computed metrics, the naive
baseline, the CSV loader and the JSON schema."""

import gzip
import json
import math

import numpy as np
import pandas as pd
import pytest

from domain.vocabulary import BENCHMARK_MODELS as MODELS
from models.benchmark.datasets import BenchData, common_grid, split_protocol, zscore
from models.benchmark.ltsf import LTSFError, read_benchmark_csv
from models.benchmark.report import MODEL_KEYS, SCHEMA, to_document, to_markdown
from models.benchmark.runner import run_benchmark
from models.benchmark.specs import RESULT_COLUMNS, BenchSpec, Budget
from models.benchmark.zoo import parse_models
from tests.conftest import ROOT

TINY = Budget(profile="test", max_steps=2, batch_size=8, max_series=2, max_test_windows=2, train_cap_s=120,
              eval_cap_s=120, latency_cap_s=60, latency_repeats=2, latency_warmup=1, predict_repeats=1,
              batches=(1, 4))


def _exchange_slice(rows=260, columns=2) -> pd.DataFrame:
    """The first rows of two series of the bundled exchange-rate file, as a long frame."""
    with gzip.open(ROOT / "data" / "fx" / "exchange_rate.txt.gz", "rt") as fh:
        wide = pd.read_csv(fh, header=None, nrows=rows).iloc[:, :columns]
    ds = pd.bdate_range("1990-01-01", periods=rows)
    return pd.concat([pd.DataFrame({"unique_id": f"fx{c}", "ds": ds, "y": wide[c].to_numpy()}) for c in wide],
                     ignore_index=True)


@pytest.mark.slow
def test_every_model_trains_two_steps_and_gives_finite_metrics_on_a_real_slice():
    spec = BenchSpec(name="tiny", h=4, input_size=16, freq="B", season_length=5, n_windows=2, step_size=4,
                     val_size=0)
    results, latency = run_benchmark(BenchData(_exchange_slice(), spec), TINY, MODELS, accelerator="cpu")
    neural = results[results.kind == "neural"].set_index("model")
    assert list(neural.index) == list(MODELS)
    assert set(results[results.kind == "baseline"].model) == {"naive", "seasonal_naive", "window_mean"}
    for column in ("mse", "mae", "mase", "naive_mase_same_windows", "train_seconds", "peak_memory_mb"):
        assert np.isfinite(results.loc[results.kind == "neural", column].astype(float)).all(), column
    assert (neural.steps_done == 2).all() and (neural.params > 0).all()
    assert not neural.capped.any(), neural.cap_note.to_dict()
    assert (results.seed == 1).all() and (results.n_windows == 2).all()
    forward = latency[(latency.path == "forward")]
    assert len(forward) == len(MODELS) * 2 and (forward.p50_ms > 0).all() and (forward.p95_ms >= forward.p50_ms).all()
    # a forward batch of b is b series windows for every model (iTransformer: b // 2 samples of both series, >= 1)
    windows = np.where((forward.model == "itransformer") & (forward.batch == 1), 2, forward.batch)
    np.testing.assert_allclose(forward.windows_per_s, windows / (forward.p50_ms / 1e3), rtol=1e-9)
    predict = latency[(latency.path == "predict") & (latency.model == "nhits")]
    assert (predict.p50_ms > 0).all()
    # iTransformer is multivariate: one predict call forecasts all its series, so only batch 1 is timed
    assert latency[(latency.model == "itransformer") & (latency.path == "predict") & (latency.batch == 4)] \
        .skipped.str.contains("multivariate").all()


def test_a_time_cap_is_reported_as_capped_not_hidden():
    spec = BenchSpec(name="tiny", h=4, input_size=16, freq="B", season_length=5, n_windows=2, step_size=4,
                     val_size=0)
    capped = TINY.replace(max_steps=500, train_cap_s=0.5)
    results, _ = run_benchmark(BenchData(_exchange_slice(), spec), capped, ("nhits",), accelerator="cpu")
    row = results[results.model == "nhits"].iloc[0]
    assert row.capped and row.steps_done < 500
    assert f"{row.steps_done} of 500 steps" in row.cap_note
    assert math.isfinite(row.mase)


def _toy() -> pd.DataFrame:
    t = np.arange(60)
    return pd.DataFrame({"unique_id": "toy", "ds": pd.date_range("2024-01-01", periods=60, freq="h"),
                         "y": (t ** 2).astype(float)})


def test_baseline_metrics_equal_hand_computed_values_on_a_toy_series():
    spec = BenchSpec(name="toy", h=4, input_size=8, freq="h", season_length=24, n_windows=2, step_size=4, val_size=0)
    results, latency = run_benchmark(BenchData(_toy(), spec), TINY, (), accelerator="cpu")
    naive = results[results.model == "naive"].iloc[0]
    # test part = the last h + step = 8 stamps: cutoffs at t=51 and t=55; the naive forecast is the last value
    y = np.arange(60.0) ** 2
    forecast = np.r_[np.full(4, y[51]), np.full(4, y[55])]
    errors = y[52:60] - forecast
    scale = np.mean(np.abs(np.diff(y[:52])))  # in-sample one-step naive MAE on the training part (t <= 51)
    assert scale == pytest.approx(51.0)
    assert naive.mse == pytest.approx(np.mean(errors ** 2))
    assert naive.mae == pytest.approx(np.mean(np.abs(errors)))
    assert naive.mase == pytest.approx(np.mean(np.abs(errors)) / scale)
    window_mean = results[results.model == "window_mean"].iloc[0]
    means = np.r_[np.full(4, y[44:52].mean()), np.full(4, y[48:56].mean())]
    assert window_mean.mae == pytest.approx(np.mean(np.abs(y[52:60] - means)))
    assert latency.empty


def test_naive_baseline_is_the_last_value_before_each_cutoff():
    from models.benchmark.runner import window_keys
    from models.evaluation import baseline_window_predictions, time_split

    spec = BenchSpec(name="toy", h=4, input_size=8, freq="h", season_length=24, n_windows=3, step_size=2, val_size=0)
    frame = _toy()
    split = time_split(frame, h=4, n_windows=3, step_size=2)
    preds = baseline_window_predictions(split, window_keys(split, 4), spec)
    naive = preds[preds.model == "naive"]
    last = frame.set_index("ds")["y"]
    assert len(naive) == 3 * 4
    for cutoff, part in naive.groupby("cutoff"):
        assert (part.yhat == last[cutoff]).all()
        assert (part.ds > cutoff).all()


def test_paper_protocol_standardises_with_training_statistics_only():
    frame = _exchange_slice(rows=1000, columns=3)
    spec = BenchSpec(name="p", h=24, input_size=48, freq="B", season_length=5, n_windows=1, step_size=1,
                     val_size=0, scaler_type="identity")
    data = split_protocol(frame, spec, TINY.replace(max_series=None, max_test_windows=None), (0.7, 0.1, 0.2))
    grid = np.sort(data.frame.ds.unique())
    train = data.frame[data.frame.ds <= grid[699]]
    assert np.allclose(train.groupby("unique_id").y.mean(), 0, atol=1e-9)
    assert np.allclose(train.groupby("unique_id").y.std(), 1)
    assert data.spec.val_size == 100 and data.spec.n_windows == 200 - 24 + 1 and data.spec.step_size == 1
    with pytest.raises(ValueError, match="constant in the training part"):
        zscore(frame.assign(y=1.0), pd.Timestamp(grid[10]))


def test_common_grid_keeps_only_shared_timestamps():
    a = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2024-01-01", periods=10, freq="D"), "y": 1.0})
    b = pd.DataFrame({"unique_id": "b", "ds": pd.date_range("2024-01-03", periods=10, freq="D"), "y": 2.0})
    out = common_grid(pd.concat([a, b]), max_series=None, min_length=5)
    assert out.groupby("unique_id").ds.agg(["min", "max", "size"]).to_dict("list") == {
        "min": [pd.Timestamp("2024-01-03")] * 2, "max": [pd.Timestamp("2024-01-10")] * 2, "size": [8, 8]}


def test_csv_loader_reads_wide_and_long_files(tmp_path):
    wide = tmp_path / "ett.csv"
    wide.write_text("date,HUFL,OT\n2016-07-01 00:00:00,5.8,30.5\n2016-07-01 01:00:00,5.7,27.8\n"
                    "2016-07-01 02:00:00,5.2,27.8\n2016-07-01 03:00:00,5.1,25.0\n")
    frame = read_benchmark_csv(wide)
    assert frame.attrs["freq"] == "h"
    assert sorted(frame.unique_id.unique()) == ["HUFL", "OT"] and len(frame) == 8
    assert frame[frame.unique_id == "OT"].y.tolist() == [30.5, 27.8, 27.8, 25.0]
    long = tmp_path / "long.csv"
    long.write_text("unique_id,ds,y\nA,2024-01-01,1\nA,2024-01-02,2\nA,2024-01-03,3\nB,2024-01-01,4\n")
    frame = read_benchmark_csv(long, freq="D")
    assert frame.attrs["freq"] == "D" and frame.groupby("unique_id").size().to_dict() == {"A": 3, "B": 1}


@pytest.mark.parametrize("content, message", [
    ("when,OT\n2016-07-01,1\n", "no date column 'date'"),
    ("date,OT\n2016-07-01,1\n2016-07-02,abc\n", "line 3, column 'OT': not a finite number 'abc'"),
    ("date,OT\n2016-07-01,1\nyesterday,2\n", "line 3, column 'date': not a date 'yesterday'"),
    ("date,OT\n2016-07-01,1\n2016-07-01,2\n", "duplicate timestamp"),
    ("date,OT\n", "no data rows"),
    ("date\n2016-07-01\n", "no value columns"),
    ("unique_id,ds,y\n,2024-01-01,1\n", "line 2, column 'unique_id': empty"),
])
def test_csv_loader_rejects_bad_files_naming_file_line_and_column(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(LTSFError, match=message) as err:
        read_benchmark_csv(path)
    assert str(path) in str(err.value)


def test_model_list_is_validated():
    assert parse_models("NHITS, tide") == ("nhits", "tide")
    assert parse_models(None) == MODELS
    with pytest.raises(ValueError, match="unknown model.*'lstm'"):
        parse_models("nhits,lstm")


def test_json_document_has_a_stable_schema():
    spec = BenchSpec(name="toy", h=4, input_size=8, freq="h", season_length=24, n_windows=2, step_size=4, val_size=0)
    results, latency = run_benchmark(BenchData(_toy(), spec), TINY, (), accelerator="cpu")
    doc = json.loads(json.dumps(to_document(results, latency, name="t", created_at="2026-01-01T00:00:00+00:00",
                                            budget={"max_steps": 2}), allow_nan=False))
    assert doc["schema"] == SCHEMA == "tradecast.benchmark/1"
    assert set(doc) == {"schema", "name", "created_at", "profile", "seed", "device", "device_name", "budget",
                        "datasets"}
    dataset = doc["datasets"][0]
    assert set(dataset) == {"dataset", "asset_class", "target", "protocol", "notes", "h", "input_size", "freq",
                            "n_series", "n_windows_protocol", "step_size", "train_rows", "models"}
    model = dataset["models"][0]
    assert set(model) == set(MODEL_KEYS) | {"ratio_to_nhits", "latency"}
    assert set(model["ratio_to_nhits"]) == {"params", "train_seconds", "seconds_per_step", "forward_ms_b1",
                                            "forward_ms_b256", "peak_memory_mb"}
    assert set(model["latency"]) == {"forward", "predict"}
    assert "| naive |" in to_markdown(results, latency)


def _costs_frames():
    """Two models on one 8-series data set: NHITS (one window per sample) and iTransformer (one sample = a window of
    each of the 8 series), with their step times and forward latencies as the runner records them."""
    base = {"dataset": "d", "kind": "neural", "n_series": 8, "batch_size": 32, "params": 1000, "train_seconds": 10.0,
            "peak_memory_mb": 100.0}
    results = pd.DataFrame([{**base, "model": "nhits", "seconds_per_step": 0.02},
                            {**base, "model": "itransformer", "seconds_per_step": 0.04}])
    rows = []
    for model, per_sample, calls in (("nhits", 1, {1: 1.0, 256: 10.0}), ("itransformer", 8, {1: 4.0, 256: 80.0})):
        for batch, ms in calls.items():  # windows_per_s counts series windows: batch x windows per sample
            rows.append({"dataset": "d", "model": model, "path": "forward", "batch": batch, "p50_ms": ms,
                         "windows_per_s": batch * per_sample / (ms / 1e3)})
    return results, pd.DataFrame(rows).assign(p95_ms=np.nan, repeats=1, skipped="")


def test_cost_ratios_are_per_series_window_for_a_multivariate_model():
    """iTransformer's forward batch b holds b x 8 windows and its step samples x 8: a call 4x NHITS's at batch 1
    is 0.5x per window, 8x at batch 256 is 1x; 2x the step time over the same 32 windows per step is 2x."""
    from models.benchmark.report import with_costs

    results, latency = _costs_frames()
    costs = with_costs(results, latency).set_index("model")
    assert costs.loc["itransformer", "windows_per_step"] == costs.loc["nhits", "windows_per_step"] == 32
    assert costs.loc["itransformer", "x_forward_ms_b1"] == pytest.approx(0.5)
    assert costs.loc["itransformer", "x_forward_ms_b256"] == pytest.approx(1.0)
    assert costs.loc["itransformer", "x_seconds_per_step"] == pytest.approx(2.0)
    assert costs.loc["itransformer", "fwd_b1"] == 4.0  # the raw latency per call is kept beside the ratios
    full = results.reindex(columns=RESULT_COLUMNS).assign(profile="t", seed=1, device="cpu", device_name="cpu")
    doc = to_document(full, latency, name="t", created_at="2026-01-01T00:00:00+00:00", budget={})
    itransformer = doc["datasets"][0]["models"][1]
    assert itransformer["model"] == "itransformer" and itransformer["windows_per_step"] == 32
    assert itransformer["ratio_to_nhits"]["forward_ms_b1"] == pytest.approx(0.5)


def test_itransformer_trains_the_budgets_windows_per_step():
    """Windows per step follow the budget for every model: iTransformer's samples = budget // n_series (at least 1);
    it used the library default of 32 samples, i.e. 32 x n_series windows, while the others had 32 windows."""
    from models.benchmark.zoo import build_model, samples_for

    spec = BenchSpec(name="tiny", h=4, input_size=16, freq="B", season_length=5, n_windows=2, step_size=4,
                     val_size=0)
    budget = TINY.replace(batch_size=32)
    for n_series, samples in ((8, 4), (3, 10), (1, 32), (64, 1)):
        model = build_model("itransformer", spec, budget, n_series=n_series, accelerator="cpu")
        assert model.windows_batch_size == samples == samples_for("itransformer", 32, n_series)
    assert build_model("tide", spec, budget, n_series=8, accelerator="cpu").windows_batch_size == 32
    assert build_model("nhits", spec, budget, n_series=8, accelerator="cpu").windows_batch_size == 32
    uncapped = build_model("nhits", spec, budget.replace(train_cap_s=None), n_series=8, accelerator="cpu")
    assert "max_time" not in uncapped.trainer_kwargs  # --no-caps: no Lightning time limit
    assert build_model("nhits", spec, budget, n_series=8, accelerator="cpu").trainer_kwargs["max_time"]


def test_cap_warnings_name_each_model_a_cap_cut_short():
    from models.benchmark.report import cap_warnings
    from models.benchmark.specs import budget_for

    row = {"dataset": "weather-h96", "kind": "neural", "max_steps": 1000, "cap_note": ""}
    results = pd.DataFrame([{**row, "model": "nhits", "steps_done": 1000},
                            {**row, "model": "itransformer", "steps_done": 99,
                             "cap_note": "training capped at 90 s: 99 of 1000 steps; evaluation capped at 40 s: "
                                         "scored 32 of 1424 windows (every 45th); naive on the same windows beside it"},
                            {**row, "model": "naive", "kind": "baseline", "steps_done": 0}])
    assert cap_warnings(results, budget_for("full")) == [
        ("WARNING: itransformer on weather-h96 trained 99 of 1000 requested steps: stopped by --train-cap 90 s; "
        "rerun with a larger --train-cap or --no-caps"),
        ("WARNING: itransformer on weather-h96: evaluation capped at 40 s: scored 32 of 1424 windows; rerun with a "
        "larger --eval-cap or --no-caps")]
    assert cap_warnings(results[results.model == "nhits"], budget_for("full")) == []
    assert budget_for("full", no_caps=True).train_cap_s is None and budget_for("full", train_cap_s=5).train_cap_s == 5
