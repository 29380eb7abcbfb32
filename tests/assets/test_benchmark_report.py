"""benchmark_report on a real instance (DuckDB, MLflow) and `tradecast bench --csv` on a wide LTSF file."""

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.conftest import ROOT, run_job, warehouse_query


@pytest.mark.slow
def test_benchmark_report_writes_duckdb_mlflow_and_metadata(home):
    assert run_job("ingest_job", "crypto", max_rows=6000, assets=["market_bars"]).success
    result = run_job("benchmark_job", "crypto", run_config={"ops": {"benchmark_report": {"config": {
        "models": ["nhits", "tide"], "max_steps": 2}}}})
    assert result.success
    rows = warehouse_query("SELECT * FROM benchmark_results ORDER BY dataset, model")
    assert set(rows.dataset) == {"crypto-5min-close", "crypto-5min-volatility"}
    assert sorted(rows[rows.dataset == "crypto-5min-close"].model) == [
        "naive", "nhits", "seasonal_naive", "tide", "window_mean"]
    neural = rows[rows.kind == "neural"]
    assert (neural.steps_done == 2).all() and np.isfinite(neural[["mse", "mae", "mase"]].to_numpy(float)).all()
    assert (rows.profile == "quick").all() and rows.bench_id.nunique() == 1
    latency = warehouse_query("SELECT * FROM benchmark_latency")
    assert set(latency.batch) == {1, 16, 64, 256} and set(latency.path) == {"forward", "predict"}
    assert len(latency) == 2 * 2 * 2 * 4  # data sets x models x paths x batch sizes (a skipped batch has a row too)

    [materialization] = result.asset_materializations_for_node("benchmark_report")
    meta = materialization.metadata
    assert "| nhits |" in meta["report"].value and "crypto-5min-volatility" in meta["report"].value
    assert meta["plot"].value.startswith("![benchmark crypto](data:image/png;base64,")
    assert meta["dagster/row_count"].value == len(rows)

    from mlflow import MlflowClient

    from resources import ModelRegistry, Settings

    registry = ModelRegistry(settings=Settings())
    client: MlflowClient = registry.client()
    run = client.get_run(rows.mlflow_run_id.iloc[0])
    assert run.data.metrics["crypto-5min-close.naive.mase"] == pytest.approx(
        rows[(rows.dataset == "crypto-5min-close") & (rows.model == "naive")].mase.iloc[0])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"benchmark.json", "benchmark.md",
                                                                         "benchmark.png"}
    assert str(home) in run.info.artifact_uri  # everything under TRADECAST_HOME


def _autoformer_exchange_csv(path, rows=700):
    """The exchange-rate data in the wide LTSF layout of the Autoformer repository (date,0,...,6,OT): a file
    layout this project's catalog has never seen."""
    with gzip.open(ROOT / "data" / "fx" / "exchange_rate.txt.gz", "rt") as fh:
        wide = pd.read_csv(fh, header=None, nrows=rows)
    wide.columns = [str(i) for i in range(7)] + ["OT"]
    dates = pd.date_range("1990-01-01", periods=rows, freq="D")
    wide.insert(0, "date", [f"{d.year}/{d.month}/{d.day} 0:00" for d in dates])
    wide.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_bench_cli_on_a_wide_ltsf_file(tmp_path, home):
    from pipelines.cli import main

    csv = _autoformer_exchange_csv(tmp_path / "exchange_rate.csv")
    out = tmp_path / "results"
    result = CliRunner().invoke(main, ["bench", "--csv", str(csv), "--h", "24", "--input-size", "48", "--steps", "2",
                                       "--profile", "quick", "--models", "nhits,tide", "--split", "0.6,0.2,0.2",
                                       "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "exchange_rate-h24.json").read_text())
    assert doc["schema"] == "tradecast.benchmark/1" and doc["profile"] == "quick"
    [dataset] = doc["datasets"]
    assert dataset["freq"] == "D" and dataset["n_series"] == 8 and dataset["h"] == 24
    assert [m["model"] for m in dataset["models"]] == ["nhits", "tide", "naive", "seasonal_naive", "window_mean"]
    assert all(m["mse"] is not None for m in dataset["models"])
    assert dataset["models"][1]["ratio_to_nhits"]["train_seconds"] > 0
    assert "## exchange_rate-h24" in (out / "exchange_rate-h24.md").read_text()
    assert not list(home.glob("**/*.duckdb")), "--csv benchmarks must not touch the warehouse"


@pytest.mark.slow
def test_bench_cli_searches_nhits_on_the_validation_part_first(tmp_path, home):
    """--search N: N Ray Tune trials (on the session's Ray cluster) on the validation part, which ends before the
    first test timestamp; NHITS is then trained with the best config and scored beside the baselines."""
    from pipelines.cli import main

    csv = _autoformer_exchange_csv(tmp_path / "exchange_rate.csv", rows=400)
    out = tmp_path / "results"
    result = CliRunner().invoke(main, ["bench", "--csv", str(csv), "--h", "12", "--input-size", "24", "--steps", "8",
                                       "--profile", "quick", "--models", "nhits", "--split", "0.6,0.2,0.2",
                                       "--search", "3", "--no-caps", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "exchange_rate-h12.json").read_text())
    found = doc["search"]
    assert found["num_samples"] == found["trials_run"] == len(found["trials"]) == 3
    assert found["val_size"] == 80 and found["max_steps"] == 8  # 20 % of 400 rows, the budget's steps
    ok = [t for t in found["trials"] if t["status"] == "TERMINATED"]
    assert ok and found["best_val_mae"] == pytest.approx(min(t["val_loss"] for t in ok), rel=1e-12)
    assert set(found["best_config"]) == set(found["space"]) >= {"input_size", "learning_rate", "scaler_type"}
    test_start = pd.Timestamp(found["validation"]["test_start"])
    assert all(pd.Timestamp(t["val_end"]) < test_start and pd.Timestamp(t["data_end"]) < test_start
               for t in found["trials"])  # no trial saw a test timestamp
    [dataset] = doc["datasets"]
    nhits = next(m for m in dataset["models"] if m["model"] == "nhits")
    assert nhits["steps_done"] == 8 and np.isfinite(nhits["mse"])
    markdown = (out / "exchange_rate-h12.md").read_text()
    assert "## NHITS search (exchange_rate-h12)" in markdown and found["best_trial_id"] in markdown


def test_bench_cli_rejects_a_bad_file_and_bad_options(tmp_path):
    from pipelines.cli import main

    bad = tmp_path / "bad.csv"
    bad.write_text("date,OT\n2016-07-01,1\n2016-07-02,oops\n")
    runner = CliRunner()
    result = runner.invoke(main, ["bench", "--csv", str(bad), "--h", "4"])
    assert result.exit_code == 1 and f"{bad}: line 3, column 'OT': not a finite number 'oops'" in result.output
    result = runner.invoke(main, ["bench", "--csv", str(bad)])
    assert result.exit_code == 2 and "--h is required" in result.output
    result = runner.invoke(main, ["bench", "--csv", str(bad), "--h", "4", "--models", "nhits,arima"])
    assert result.exit_code == 2 and "unknown model" in result.output
    result = runner.invoke(main, ["bench", "--search", "4"])
    assert result.exit_code == 2 and "--search tunes NHITS on a --csv file" in result.output
    result = runner.invoke(main, ["bench", "--csv", str(bad), "--h", "4", "--models", "tide", "--search", "4"])
    assert result.exit_code == 2 and "keep nhits" in result.output
    short = tmp_path / "short.csv"
    short.write_text("date,OT\n" + "".join(f"2016-07-{d:02d},{d}\n" for d in range(1, 29)))
    result = runner.invoke(main, ["bench", "--csv", str(short), "--h", "24"])
    assert result.exit_code == 1 and "no series has 146 observations" in result.output


@pytest.mark.slow
def test_bench_cli_warns_at_the_end_when_a_cap_cut_the_steps_and_no_caps_trains_them_all(tmp_path, home):
    """`--steps 3000 --train-cap 0.5` trains fewer steps and says so in a WARNING line at the very end (not only in
    the table note); `--no-caps` trains every requested step and warns about nothing."""
    import re

    from pipelines.cli import main

    csv = _autoformer_exchange_csv(tmp_path / "fx.csv", rows=300)
    out = tmp_path / "results"
    args = ["bench", "--csv", str(csv), "--h", "4", "--input-size", "16", "--profile", "quick", "--models", "nhits",
            "--max-series", "2", "--out", str(out)]
    runner = CliRunner()
    capped = runner.invoke(main, [*args, "--steps", "3000", "--train-cap", "0.5", "--eval-cap", "600", "--name",
                                  "capped"], catch_exceptions=False)
    assert capped.exit_code == 0, capped.output
    [row] = [m for m in json.loads((out / "capped.json").read_text())["datasets"][0]["models"] if m["model"] == "nhits"]
    assert row["steps_done"] < 3000 and row["capped"]
    lines = [line for line in capped.output.splitlines() if line.strip()]
    assert lines[-1] == (f"WARNING: nhits on fx-h4 trained {row['steps_done']} of 3000 requested steps: stopped by "
                         "--train-cap 0.5 s; rerun with a larger --train-cap or --no-caps")
    assert len([line for line in lines if line.startswith("WARNING")]) == 1

    uncapped = runner.invoke(main, [*args, "--steps", "30", "--no-caps", "--name", "uncapped"], catch_exceptions=False)
    assert uncapped.exit_code == 0, uncapped.output
    doc = json.loads((out / "uncapped.json").read_text())
    [row] = [m for m in doc["datasets"][0]["models"] if m["model"] == "nhits"]
    assert row["steps_done"] == 30 and "WARNING" not in uncapped.output
    assert not re.search("training|evaluation", row["cap_note"])  # only the latency sweep keeps a budget
    assert doc["budget"]["train_cap_s"] is None and doc["budget"]["eval_cap_s"] is None
    both = runner.invoke(main, [*args, "--no-caps", "--train-cap", "5"])
    assert both.exit_code == 2 and re.search(r"--no-caps cannot be combined", both.output)
