"""The promotion gate as plain code (`models.promotion`): verdicts on evaluation tables, the champion's score on
the challenger's windows, the bootstrap baseline, and a stored NHITS re-scored to its own evaluation."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest

from models.promotion import (
    BOOTSTRAP,
    PROMOTED,
    REFUSED,
    Windows,
    best_baseline,
    bootstrap_champion,
    champion_mase,
    decide,
    rescore,
    windows_of,
)


@dataclasses.dataclass(frozen=True)
class Champ:  # the registry's view of a version (storage.versions.ModelVersion has these fields)
    version: str
    kind: str
    baseline: str | None = None


def evaluation(nhits: float, naive: float = 1.0, seasonal_naive: float = 1.2, window_mean: float = 0.9,
               h: int = 5, n_windows: int = 4, step: int = 5) -> pd.DataFrame:
    rows = {"nhits": nhits, "naive": naive, "seasonal_naive": seasonal_naive, "window_mean": window_mean}
    return pd.DataFrame([{"model": m, "mase": v, "mae": v / 10, "mse": v / 100, "h": h, "n_windows": n_windows,
                          "step": step} for m, v in rows.items()])


def no_rescore(windows):
    raise AssertionError("a baseline champion is scored from the evaluation, not re-forecast")


def test_a_challenger_that_beats_the_best_baseline_without_champion_is_promoted():
    d = decide("3", evaluation(0.8), None, None)
    assert (d.passed, d.verdict, d.headline) == (True, PROMOTED, "promoted")
    assert (d.best_baseline, d.best_baseline_mase, d.challenger_mase) == ("window_mean", 0.9, 0.8)
    assert d.reason == "MASE 0.8000 beats baseline 'window_mean' (0.9000)"
    assert (d.champion_version, d.champion_kind, d.champion_mase) == (None, None, None)


@pytest.mark.parametrize("nhits", [0.95, 0.9, float("nan")])  # worse, a tie, no score: never promoted
def test_a_challenger_that_does_not_beat_the_best_baseline_is_refused(nhits):
    d = decide("3", evaluation(nhits), None, None)
    assert (d.passed, d.verdict, d.headline) == (False, REFUSED, "refused: champion stays")
    assert "does not beat baseline 'window_mean' (0.9000)" in d.reason


def test_a_challenger_must_beat_the_champion_too():
    champ = Champ("2", "nhits")
    refused = decide("3", evaluation(0.8), champ, 0.75)
    assert not refused.passed and refused.reason == "MASE 0.8000 does not beat champion v2 (0.7500)"
    assert (refused.champion_version, refused.champion_kind, refused.champion_mase) == ("2", "nhits", 0.75)
    promoted = decide("3", evaluation(0.7), champ, 0.75)
    assert promoted.passed and promoted.reason.endswith("and champion v2 (0.7500)")
    both = decide("3", evaluation(0.95), champ, 0.75)
    assert both.reason.count("does not beat") == 2


def test_a_nan_champion_score_refuses_as_before():
    assert not decide("3", evaluation(0.5), Champ("2", "nhits"), float("nan")).passed


def test_a_baseline_champion_is_scored_from_the_same_evaluation():
    ev = evaluation(0.8, naive=0.85)
    assert champion_mase(Champ("1", "baseline", "naive"), ev, no_rescore) == 0.85
    with pytest.raises(ValueError, match="without a known name"):
        champion_mase(Champ("1", "baseline", None), ev, no_rescore)


def test_an_nhits_champion_is_rescored_on_the_challengers_windows():
    seen = []
    score = champion_mase(Champ("2", "nhits"), evaluation(0.8, h=12, n_windows=36, step=12),
                          lambda w: seen.append(w) or 0.77)
    assert score == 0.77 and seen == [Windows(h=12, n_windows=36, step=12)]


def test_an_evaluation_without_every_model_is_refused_by_name():
    ev = evaluation(0.8)
    with pytest.raises(ValueError, match=r"lacks model\(s\) \['seasonal_naive'\]"):
        decide("3", ev[ev.model != "seasonal_naive"], None, None)
    nan_baselines = evaluation(0.8, naive=float("nan"), seasonal_naive=float("nan"), window_mean=float("nan"))
    with pytest.raises(ValueError, match="every baseline's MASE is NaN"):
        best_baseline(nan_baselines)
    assert best_baseline(evaluation(0.8, naive=float("nan"))) == ("window_mean", 0.9)


def test_the_bootstrap_champion_is_the_best_baseline_with_its_parameters():
    chosen = bootstrap_champion(evaluation(0.8, seasonal_naive=0.5), h=12, input_size=288, season_length=288,
                                freq="5min")
    assert chosen.name == "seasonal_naive"
    assert chosen.params == {"name": "seasonal_naive", "h": 12, "input_size": 288, "season_length": 288,
                             "freq": "5min"}
    assert chosen.metrics == {"mase": 0.5, "mae": 0.05, "mse": 0.005}
    assert chosen.decision.passed and chosen.decision.reason.startswith("no champion yet: baseline 'seasonal_naive'")
    assert BOOTSTRAP == "bootstrap"


@pytest.mark.slow
def test_a_stored_nhits_rescored_on_its_own_windows_reproduces_its_evaluation(tmp_path, fx_daily):
    """The champion path of the gate: save, reload and re-score a trained NHITS on the windows of its evaluation
    rows; the MASE equals the one the evaluation recorded (same windows, same scale)."""
    from models.configs import spec_for
    from models.evaluation import train_and_evaluate
    from models.forecasting import load_model, save_model
    from models.frames import to_training_frame

    frame = to_training_frame(fx_daily, "fx", "close", min_length=1)
    frame = frame[frame.unique_id.isin(sorted(frame.unique_id.unique())[:3])].reset_index(drop=True)
    spec = spec_for("fx", "quick", h=5, input_size=30, n_windows=3, max_steps=5, val_size=0, val_check_steps=5)
    result = train_and_evaluate(frame, spec, accelerator="cpu")
    ev = result.evaluation.assign(h=spec.h, step=spec.step)
    loaded = load_model(save_model(result.nf, tmp_path / "nf"), accelerator="cpu")
    score = rescore(loaded, frame, windows_of(ev))
    recorded = float(ev.set_index("model").loc["nhits", "mase"])
    assert math.isfinite(score) and score == pytest.approx(recorded, rel=1e-4)
