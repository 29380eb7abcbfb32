"""The promotion gate as plain code (`models.promotion`): verdicts from per-point forecasts on identical windows,
the Diebold-Mariano test behind every "better", the champion compared on the same keys, the bootstrap baseline, and
a stored NHITS re-scored on its own windows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from models.promotion import (
    PROMOTED,
    REFUSED,
    GateRule,
    Windows,
    best_baseline,
    bootstrap_champion,
    decide,
    rescore,
    scores,
)

WINDOWS = Windows(h=2, n_windows=60, step=2)
BASE = ("naive", "seasonal_naive", "window_mean", "har")


@dataclasses.dataclass(frozen=True)
class Champ:  # the registry's view of a version (storage.versions.ModelVersion has these fields)
    version: str
    kind: str
    baseline: str | None = None


def points(errors: dict[str, float], *, seed: int = 0, n_series: int = 3, noise: float = 0.0) -> pd.DataFrame:
    """Per-point forecasts of several models on the same 60 windows x 2 steps x 3 series: model m's forecast is
    y + errors[m] * (a common error) + ``noise`` * its own independent error."""
    rng = np.random.default_rng(seed)
    cutoffs = pd.date_range("2024-01-01", periods=WINDOWS.n_windows, freq="2D")
    keys = pd.MultiIndex.from_product([[f"s{i}" for i in range(n_series)], cutoffs, [1, 2]],
                                      names=["unique_id", "cutoff", "step"]).to_frame(index=False)
    keys["ds"] = keys["cutoff"] + pd.to_timedelta(keys["step"], "D")
    keys["y"] = 1.0 + rng.random(len(keys))
    common = rng.standard_normal(len(keys))
    rows = []
    for model, size in errors.items():
        own = rng.standard_normal(len(keys))
        rows.append(keys.assign(model=model, yhat=keys["y"] + size * common + noise * own, lo=np.nan, hi=np.nan))
    return pd.concat(rows, ignore_index=True)


SCALE = pd.Series({"s0": 1.0, "s1": 1.0, "s2": 1.0})
MAE = GateRule(metric="mae", alpha=0.05)


def test_a_clearly_better_challenger_without_champion_is_promoted_with_its_p_value():
    d = decide("3", points({"nhits": 0.1, "naive": 1.0, "seasonal_naive": 1.2, "window_mean": 0.9, "har": 0.8},
                           noise=0.05), SCALE, WINDOWS, MAE)
    assert (d.passed, d.verdict, d.headline) == (True, PROMOTED, "promoted")
    assert d.best_baseline == "har" and d.p_value_baseline < 1e-6 and d.metric == "mae"
    assert (d.n_windows, d.n_points) == (60, 360)
    assert d.reason.startswith(f"MAE {d.challenger_score:.4g} beats baseline 'har'") and "60 windows" in d.reason
    assert (d.champion_version, d.champion_score, d.p_value_champion) == (None, None, None)


def test_a_challenger_that_loses_to_the_best_baseline_is_refused():
    d = decide("3", points({"nhits": 1.0, "naive": 0.9, "seasonal_naive": 1.2, "window_mean": 0.5, "har": 0.8}),
               SCALE, WINDOWS, MAE)
    assert (d.passed, d.verdict, d.headline) == (False, REFUSED, "refused: champion stays")
    assert "does not beat baseline 'window_mean'" in d.reason


def test_a_challenger_equal_to_the_champion_plus_noise_is_not_significantly_better():
    """The (baseline) champion's forecasts with their error scaled by 1 + noise per window (mean -0.5%): by luck
    the challenger's loss is often a little lower; the DM test refuses every time."""
    looked_better = 0
    for seed in range(8):
        pts = points({"naive": 0.5, "seasonal_naive": 1.2, "window_mean": 0.9, "har": 0.8}, seed=seed)
        champ = pts[pts.model == "naive"]
        rng = np.random.default_rng(100 + seed)
        factor = champ["cutoff"].map(dict(zip(champ.cutoff.unique(), 1 + rng.normal(-0.005, 0.05, WINDOWS.n_windows),
                                              strict=True)))
        nhits = champ.assign(model="nhits", yhat=champ.y + (champ.yhat - champ.y) * factor)
        d = decide("3", pd.concat([pts, nhits]), SCALE, WINDOWS, MAE, Champ("1", "baseline", "naive"))
        assert not d.passed, d.reason
        if d.challenger_score < d.best_baseline_score:  # it looked better: significance is why it is refused
            looked_better += 1
            assert d.headline.startswith("not significantly better (p = ") and d.headline.endswith("champion stays")
            assert d.p_value_baseline >= 0.05 and "DM p =" in d.reason and d.not_significant
    assert looked_better >= 3


def test_an_nhits_champion_is_compared_on_identical_windows_or_the_gate_says_why():
    pts = points({"nhits": 0.3, "naive": 1.0, "seasonal_naive": 1.2, "window_mean": 0.9, "har": 0.8}, noise=0.02)
    good = pts[pts.model == "nhits"].assign(model="nhits", yhat=lambda f: f.y + 0.6 * (f.yhat - f.y))
    d = decide("3", pts, SCALE, WINDOWS, MAE, Champ("2", "nhits"), good)
    assert not d.passed and f"does not beat champion v2 ({d.champion_score:.4g})" in d.reason
    assert d.champion_score < d.challenger_score and d.p_value_champion is not None
    fewer = good[good.cutoff < good.cutoff.max()]
    mismatch = decide("3", pts, SCALE, WINDOWS, MAE, Champ("2", "nhits"), fewer)
    assert not mismatch.passed and "cannot compare with champion v2 on the same windows" in mismatch.reason
    late = decide("3", pts, SCALE, WINDOWS, MAE, Champ("2", "nhits"), good,
                  champion_trained_until=pts.cutoff.max())
    assert not late.passed and "scored on its own training data" in late.reason
    worse = good.assign(yhat=lambda f: f.y + 3 * (f.yhat - f.y))
    assert decide("3", pts, SCALE, WINDOWS, MAE, Champ("2", "nhits"), worse).passed


def test_the_gate_loss_follows_the_target_and_is_recorded():
    assert GateRule.for_target("volatility") == GateRule("qlike", 0.05)
    assert GateRule.for_target("close", alpha=0.01) == GateRule("mase", 0.01)
    pts = points({"nhits": 0.1, "naive": 1.0, "seasonal_naive": 1.2, "window_mean": 0.9, "har": 0.8}, noise=0.05)
    d = decide("3", pts, SCALE, WINDOWS, GateRule("qlike", 0.05))
    row = d.record()
    assert row["metric"] == "qlike" and row["p_value_baseline"] == d.p_value_baseline and "not_significant" not in row
    assert row["challenger_score"] == pytest.approx(float(scores(pts[pts.model == "nhits"], "qlike", SCALE).iloc[0]))


def test_best_baseline_ignores_nan_scores_and_an_empty_field_is_an_error():
    pts = points({"naive": 1.0, "har": 0.5, "window_mean": 0.9})
    pts.loc[pts.model == "har", "yhat"] = np.nan
    assert best_baseline(pts, "mae", SCALE)[0] == "window_mean"
    with pytest.raises(ValueError, match="no baseline"):
        best_baseline(pts[pts.model == "har"], "mae", SCALE)
    with pytest.raises(ValueError, match="no nhits forecasts"):
        decide("3", pts, SCALE, WINDOWS, MAE)


def test_the_bootstrap_champion_is_the_best_servable_baseline():
    pts = points({"naive": 1.0, "seasonal_naive": 0.5, "window_mean": 0.9, "har": 0.1})
    chosen = bootstrap_champion(pts, SCALE, MAE, h=2, input_size=30, season_length=5, freq="B")
    assert chosen.name == "seasonal_naive"  # har forecasts better, but the service cannot run it
    assert chosen.params == {"name": "seasonal_naive", "h": 2, "input_size": 30, "season_length": 5, "freq": "B"}
    assert set(chosen.metrics) == {"mase", "mae", "mse"} and chosen.decision.passed
    assert chosen.decision.reason.startswith("no champion yet: baseline 'seasonal_naive'")
    with_ewma = points({"naive": 1.0, "seasonal_naive": 0.5, "window_mean": 0.9, "har": 0.1, "ewma": 0.2})
    served = bootstrap_champion(with_ewma, SCALE, MAE, h=2, input_size=30, season_length=5, freq="B")
    assert served.name == "ewma"  # RiskMetrics EWMA runs in the service (an ONNX graph): it may hold the alias


def test_an_ensemble_challenger_is_judged_on_its_own_rows():
    """An ensemble version's forecasts are its `ensemble` rows; the `nhits` rows beside them are not its own."""
    pts = points({"nhits": 1.0, "ensemble": 0.3, "naive": 1.0, "seasonal_naive": 1.0, "window_mean": 1.0, "har": 1.0})
    as_nhits = decide("4", pts, SCALE, WINDOWS, MAE)
    as_ensemble = decide("4", pts, SCALE, WINDOWS, MAE, challenger_model="ensemble")
    assert as_ensemble.challenger_score < as_nhits.challenger_score
    assert as_ensemble.best_baseline != "ensemble" and as_nhits.best_baseline != "ensemble"
    with pytest.raises(ValueError, match="no ensemble forecasts"):
        decide("4", pts[pts.model != "ensemble"], SCALE, WINDOWS, MAE, challenger_model="ensemble")


@pytest.mark.slow
def test_a_stored_nhits_rescored_on_its_own_windows_reproduces_its_evaluation(tmp_path, fx_daily):
    """The champion path of the gate: save, reload and re-score a trained NHITS on the windows of its evaluation;
    its per-point forecasts equal those the evaluation recorded (same keys, same values)."""
    from models.configs import spec_for
    from models.evaluation import train_and_evaluate
    from models.forecasting import load_model, save_model
    from models.frames import to_training_frame
    from storage.pyfunc import NHITSModel

    frame = to_training_frame(fx_daily, "fx", "close", min_length=1)
    frame = frame[frame.unique_id.isin(sorted(frame.unique_id.unique())[:3])].reset_index(drop=True)
    spec = spec_for("fx", "quick", h=5, input_size=30, n_windows=6, step_size=2, max_steps=5, val_size=0,
                    val_check_steps=5)
    result = train_and_evaluate(frame, spec, accelerator="cpu")
    loaded = load_model(save_model(result.nf, tmp_path / "nf"), accelerator="cpu")
    again = rescore(NHITSModel(loaded), frame, Windows(h=5, n_windows=6, step=2))
    recorded = result.predictions[result.predictions.model == "nhits"]
    key = ["unique_id", "cutoff", "step"]
    merged = recorded.merge(again, on=key, suffixes=("", "_again"), validate="one_to_one")
    assert len(merged) == len(recorded) == len(again) == 3 * 6 * 5
    np.testing.assert_allclose(merged.yhat_again, merged.yhat, rtol=1e-4, atol=1e-6)


def test_too_few_windows_for_the_dm_test_is_a_refusal_that_says_so_not_a_crash():
    """h=30 daily windows 5 bars apart overlap over 6 lags: 3 windows cannot be tested. Even a much better
    challenger stays a challenger, and the decision names why."""
    pts = points({"nhits": 0.1, "naive": 1.0, "seasonal_naive": 1.2, "window_mean": 0.9, "har": 0.8}, noise=0.05)
    few = pts[pts.cutoff.isin(sorted(pts.cutoff.unique())[:3])]
    d = decide("3", few, SCALE, Windows(h=30, n_windows=3, step=5), MAE)
    assert not d.passed and d.p_value_baseline is None and d.n_windows == 3
    assert d.headline == "not significantly better (too few windows for the test): champion stays"
    assert "no DM test:" in d.reason and "too few for a DM test" in d.reason
