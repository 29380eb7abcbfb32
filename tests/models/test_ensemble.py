"""The ensemble candidate (`models.ensemble`): the weight is the validation-loss minimiser found by hand, the
combination is applied to every output, only served baselines are candidates, the validation windows lie inside
the training part, and nothing after the first test cutoff changes the choice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.ensemble import WEIGHTS, Ensemble, candidates, choose, combine
from models.evaluation import validation_split

KEYS = ["unique_id", "cutoff", "step"]


def toy_points(seed: int = 0) -> pd.DataFrame:
    """NHITS and two baselines on the same 40 windows x 3 steps x 2 series: independent errors, NHITS's and
    window_mean's of equal size, naive's three times larger."""
    rng = np.random.default_rng(seed)
    idx = pd.MultiIndex.from_product([["a", "b"], pd.date_range("2024-01-01", periods=40), [1, 2, 3]], names=KEYS)
    base = idx.to_frame(index=False)
    y = 10 + rng.normal(size=len(base))
    rows = []
    for model, size in (("nhits", 1.0), ("window_mean", 1.0), ("naive", 3.0)):
        rows.append(base.assign(model=model, ds=base["cutoff"], y=y, yhat=y + size * rng.normal(size=len(base)),
                                lo=np.nan, hi=np.nan))
    return pd.concat(rows, ignore_index=True)


def hand_choice(points: pd.DataFrame, metric: str) -> tuple[str, float, float]:
    """Brute force over baselines and WEIGHTS with numpy: (baseline, weight, loss); ties to the larger weight."""
    nh = points[points.model == "nhits"].sort_values(KEYS)
    best = None
    for name in ("naive", "window_mean", "seasonal_naive"):
        other = points[points.model == name].sort_values(KEYS)
        if other.empty:
            continue
        for w in WEIGHTS:
            err = nh.y.to_numpy() - (w * nh.yhat.to_numpy() + (1 - w) * other.yhat.to_numpy())
            loss = float(np.mean(err**2) if metric == "mse" else np.mean(np.abs(err)))
            if best is None or (loss, -w) < (best[2], -best[1]):
                best = (name, float(w), loss)
    return best


@pytest.mark.parametrize("metric", ["mse", "mae"])
def test_the_chosen_weight_is_the_validation_minimiser_found_by_hand(metric):
    points = toy_points()
    e = choose(points, metric, pd.Series(1.0, index=["a", "b"]), "close")
    name, weight, loss = hand_choice(points, metric)
    assert (e.baseline, e.weight) == (name, weight)
    assert e.validation_loss == pytest.approx(loss, rel=1e-12)
    assert e.baseline == "window_mean" and 0.3 <= e.weight <= 0.7  # two equal independent errors: about half each
    assert e.improves and e.validation_loss < e.nhits_validation_loss
    assert (e.n_windows, e.n_points) == (40, 240)


def test_a_hopeless_side_gets_no_share_and_no_candidate():
    points = toy_points()
    points = points[points.model != "window_mean"]
    points.loc[points.model == "naive", "yhat"] += 50.0  # hopeless
    e = choose(points, "mae", pd.Series(1.0, index=["a", "b"]), "close")
    assert e.weight == 1.0 and not e.improves  # NHITS alone: the ensemble is not a candidate
    only_base = toy_points()
    only_base.loc[only_base.model == "nhits", "yhat"] += 50.0
    e = choose(only_base[only_base.model != "naive"], "mae", pd.Series(1.0, index=["a", "b"]), "close")
    assert e.weight == 0.0 and not e.improves  # the baseline alone: judged already, no new candidate


def test_combine_mixes_every_output_with_the_baseline_point_forecast():
    points = toy_points()
    points.loc[points.model == "nhits", "lo"] = points.loc[points.model == "nhits", "yhat"] - 1
    points.loc[points.model == "nhits", "hi"] = points.loc[points.model == "nhits", "yhat"] + 1
    e = Ensemble("window_mean", 0.25, "mae", 0.0, 0.0, 0.0, 40, 240)
    out = combine(points, e).sort_values(KEYS, ignore_index=True)
    nh = points[points.model == "nhits"].sort_values(KEYS, ignore_index=True)
    b = points[points.model == "window_mean"].sort_values(KEYS, ignore_index=True).yhat
    assert (out.model == "ensemble").all() and list(out.columns) == list(points.columns)
    np.testing.assert_allclose(out.yhat, 0.25 * nh.yhat + 0.75 * b)
    np.testing.assert_allclose(out.lo, 0.25 * nh.lo + 0.75 * b)
    np.testing.assert_allclose(out.hi, 0.25 * nh.hi + 0.75 * b)
    with pytest.raises(ValueError, match="lacks forecasts"):
        combine(points[~((points.model == "window_mean") & (points.unique_id == "b"))], e)


def test_only_served_baselines_are_candidates():
    assert "ewma" in candidates("volatility") and "ewma" not in candidates("close")
    assert "har" not in candidates("volatility")  # judged by the gate, not served: it cannot be combined


def test_validation_windows_lie_inside_the_training_part(fx_daily):
    from models.configs import spec_for
    from models.evaluation import time_split
    from models.frames import to_training_frame

    frame = to_training_frame(fx_daily, "fx", "close", min_length=1)
    spec = spec_for("fx", "quick", h=5, input_size=30, n_windows=6, step_size=2, val_size=15)
    split = time_split(frame, h=spec.h, n_windows=spec.n_windows, step_size=spec.step)
    val = validation_split(split, spec)
    assert len(val.cutoffs) == 3 and val.full["ds"].max() == split.train_end
    grid = np.sort(split.train["ds"].unique())
    assert list(val.cutoffs) == [pd.Timestamp(grid[-16]), pd.Timestamp(grid[-11]), pd.Timestamp(grid[-6])]
    with pytest.raises(ValueError, match="val_size 0 < h 5"):
        validation_split(split, spec.replace(val_size=0))


def test_the_ensemble_is_chosen_before_the_test_part_and_scored_on_its_windows(fx_daily):
    """Trained end to end: the ensemble's test forecasts sit on NHITS's keys, and a planted change of every value
    after the training part (the test windows) changes neither the chosen baseline nor the weight."""
    from models.configs import spec_for
    from models.evaluation import train_and_evaluate
    from models.frames import to_training_frame

    frame = to_training_frame(fx_daily, "fx", "close", min_length=1)
    frame = frame[frame.unique_id.isin(sorted(frame.unique_id.unique())[:3])].reset_index(drop=True)
    spec = spec_for("fx", "quick", h=5, input_size=30, n_windows=6, step_size=2, max_steps=5, val_size=10,
                    val_check_steps=5)
    result = train_and_evaluate(frame, spec, accelerator="cpu", target="close", ensemble_metric="mase")
    e = result.ensemble
    assert e is not None and e.baseline in candidates("close") and 0.0 <= e.weight <= 1.0
    assert e.n_windows == 2 and e.n_points == 3 * 2 * 5
    preds = result.predictions
    ens, nh = (preds[preds.model == m].sort_values(KEYS, ignore_index=True) for m in ("ensemble", "nhits"))
    assert ("ensemble" in set(result.evaluation.model)) == e.improves  # rows only for a real mix (0 < w < 1)
    if e.improves:
        assert ens[KEYS].equals(nh[KEYS])

    planted = frame.copy()
    planted.loc[planted.ds > result.train_end, "y"] *= 10
    again = train_and_evaluate(planted, spec, accelerator="cpu", target="close", ensemble_metric="mase").ensemble
    assert (again.baseline, again.weight) == (e.baseline, e.weight)
    assert again.validation_loss == pytest.approx(e.validation_loss, rel=1e-6)
