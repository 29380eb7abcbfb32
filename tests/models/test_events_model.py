"""Event-aware NHITS: trains with historical and future exogenous event features, forecasts, reloads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.configs import spec_for
from models.evaluation import loaded_window_predictions, time_split, train_and_evaluate
from models.events.features import attach, event_features, future_rows
from models.events.spec import exog_columns
from models.forecasting import forecast, load_model, save_model
from models.frames import to_training_frame
from tests.models.sample_bars import equity_bars
from tests.models.test_events import real_events


@pytest.fixture(scope="module")
def event_frame():
    """Real slice: daily volatility of AAL, AAP, AAPL, ABBV up to May 2014 (AAPL's tweets run Jan-May 2014), with
    all event features from the first 3000 rows of each news source and the FOMC files."""
    news, macro = real_events()
    frame = to_training_frame(equity_bars(n_tickers=4), "equities", "volatility", min_length=1)
    frame = frame[(frame.ds >= "2013-06-01") & (frame.ds <= "2014-05-05")].reset_index(drop=True)
    frame.attrs["freq"] = "B"
    hist, futr = exog_columns("all")
    feats = event_features(frame, news, macro, "B").rename(columns={"unique_id": "symbol"})
    return attach(frame, feats, hist + futr), macro


@pytest.fixture(scope="module")
def trained(event_frame):
    frame, _ = event_frame
    hist, futr = exog_columns("all")
    spec = spec_for("equities", "quick", h=5, input_size=40, n_windows=3, max_steps=10, val_size=0,
                    val_check_steps=10, hist_exog=hist, futr_exog=futr)
    return train_and_evaluate(frame, spec, accelerator="cpu")


@pytest.mark.slow
def test_event_aware_nhits_trains_with_exogenous_columns_and_is_scored(trained, event_frame) -> None:
    frame, _ = event_frame
    model = trained.nf.models[0]
    assert list(model.hist_exog_list) == list(exog_columns("all")[0]) and list(model.futr_exog_list) == ["fomc_day"]
    table = trained.evaluation.set_index("model")
    assert np.isfinite(table[["mse", "mae", "mase"]].to_numpy()).all() and table.loc["nhits", "n_series"] == 4
    tail = frame[frame.ds > trained.train_end]
    assert (tail.groupby("unique_id").size() == 5 + 5 * 2).all()  # 3 windows of h=5, step 5
    assert (frame.loc[frame.ds > "2014-01-01"].news_logn_short > 0).any()  # AAPL's tweets are in the frame
    assert trained.spec.to_params()["futr_exog"] == "['fomc_day']"


@pytest.mark.slow
def test_event_aware_forecast_needs_and_uses_future_rows(trained, event_frame, tmp_path) -> None:
    frame, macro = event_frame
    nf = trained.nf
    with pytest.raises(ValueError, match="future exogenous column"):
        forecast(nf, frame)
    with pytest.raises(ValueError, match="lacks"):
        forecast(nf, frame[["unique_id", "ds", "y"]])
    fut = future_rows(frame, nf.h, "B", macro, ["fomc_day"])
    out = forecast(nf, pd.concat([frame, fut], ignore_index=True))
    assert len(out) == 4 * 5 and np.isfinite(out.yhat).all()
    assert (out.groupby("unique_id").ds.min() > frame.ds.max()).all()
    # a FOMC day in the horizon is an input: flipping it changes the forecast (the feature is wired, not ignored)
    flipped = forecast(nf, pd.concat([frame, fut.assign(fomc_day=1.0 - fut.fomc_day)], ignore_index=True))
    assert not np.allclose(out.yhat, flipped.yhat)
    # saved and loaded (the champion path): identical windows and values to cross-validation
    loaded = load_model(save_model(nf, tmp_path / "nf"), accelerator="cpu")
    split = time_split(frame, h=5, n_windows=3)
    again = loaded_window_predictions(loaded, split)
    cv = trained.predictions[trained.predictions.model == "nhits"]
    both = cv.merge(again, on=["unique_id", "cutoff", "step"], suffixes=("_cv", "_loaded"))
    assert len(both) == len(cv) == len(again)
    assert (both.ds_cv == both.ds_loaded).all()
    np.testing.assert_allclose(both.yhat_cv, both.yhat_loaded, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_ablation_runner_reports_seeds_coverage_and_a_verdict() -> None:
    """The ablation on a real slice (AAPL's 2014 tweets), tiny budget: the document and its report are complete."""
    from models.events.ablation import SCHEMA, EventBenchConfig, run_event_ablation, to_markdown

    news, macro = real_events()
    config = EventBenchConfig(seeds=(1, 2), max_steps=3, n_windows=2, input_size=20, max_series=1,
                              datasets=("stocknet-tweets",), targets=("volatility",), variants=("none", "news"))
    doc = run_event_ablation(equity_bars(n_tickers=4), news, macro, config)
    assert doc["schema"] == SCHEMA and doc["budget"]["seeds"] == [1, 2]
    (entry,) = doc["results"]
    assert entry["n_series"] == 1 and "AAPL" in entry["note"] and entry["coverage"]["frame"]["ticker_news"] > 0.1
    news_variant = entry["variants"]["news"]
    assert [r["seed"] for r in news_variant["seeds"]] == [1, 2] and news_variant["mase_std"] >= 0
    plain = entry["variants"]["none"]
    assert news_variant["d_mase_mean"] == pytest.approx(news_variant["mase_mean"] - plain["mase_mean"])
    markdown = to_markdown(doc)
    assert "## stocknet-tweets · volatility" in markdown and "**Verdict:**" in markdown and "| naive |" in markdown
