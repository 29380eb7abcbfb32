"""models.significance: Diebold-Mariano with the HLN correction against a hand computation, its size and power on
simulated losses, and dm_on_windows' refusal of mismatched windows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from models.losses import point_losses
from models.significance import (
    DMResult,
    WindowMismatch,
    check_same_windows,
    dm_on_windows,
    dm_test,
    hln_factor,
    overlap_lags,
)


def _hand_dm(d: np.ndarray, h: int, weights: np.ndarray | None = None) -> tuple[float, float]:
    """DM written out: mean, autocovariances gamma_k = sum_{t>k} (d_t - m)(d_{t-k} - m) / n, HLN, t(n-1)."""
    n, m = len(d), d.mean()
    gamma = [sum((d[t] - m) * (d[t - k] - m) for t in range(k, n)) / n for k in range(h)]
    w = np.ones(h - 1) if weights is None else weights
    var = (gamma[0] + 2 * sum(w[k - 1] * gamma[k] for k in range(1, h))) / n
    stat = m / math.sqrt(var) * math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    return stat, float(stats.t.cdf(stat, n - 1))


def test_dm_statistic_and_p_value_equal_a_hand_computation() -> None:
    loss_b = np.array([1.2, 0.9, 1.8, 1.3, 0.6, 1.0, 0.9, 1.4, 0.5, 0.8, 1.1, 0.7])
    d = np.array([-0.3, -0.35, -0.2, -0.1, 0.05, 0.1, -0.1, -0.25, -0.4, -0.45, -0.3, -0.15])  # autocorrelated
    loss_a = loss_b + d
    stat, p = _hand_dm(d, h=3)
    res = dm_test(loss_a, loss_b, h=3)
    assert res.kernel == "rectangular"
    assert (res.statistic, res.p_value, res.n, res.h) == (pytest.approx(stat), pytest.approx(p), 12, 3)
    assert res.mean_diff == pytest.approx(d.mean()) and res.mean_diff < 0
    assert 0.01 < res.p_value < 0.05  # a better on 10 of 12, but the lags widen the variance
    assert dm_test(loss_a, loss_b, h=1).p_value < res.p_value  # positive autocorrelation ignored: overconfident
    greater = dm_test(loss_a, loss_b, h=3, alternative="greater")
    two = dm_test(loss_a, loss_b, h=3, alternative="two-sided")
    assert greater.p_value == pytest.approx(1 - p) and two.p_value == pytest.approx(2 * p)


def test_h1_dm_with_hln_is_the_one_sample_t_test() -> None:
    # h=1: DM's variance is gamma_0 / n = s^2 (n-1) / n^2, so raw DM = t * sqrt(n / (n-1)); the HLN factor for h=1 is
    # sqrt((n-1)/n) and cancels it exactly: the corrected statistic is the t statistic, with the same t(n-1) p-value
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.0, 1.0, 40), rng.normal(0.2, 1.0, 40)
    res = dm_test(a, b, h=1)
    tt = stats.ttest_1samp(a - b, 0.0, alternative="less")
    assert hln_factor(40, 1) == pytest.approx(math.sqrt(39 / 40))
    assert res.statistic == pytest.approx(tt.statistic)
    assert res.p_value == pytest.approx(tt.pvalue)


def test_negative_rectangular_variance_falls_back_to_bartlett() -> None:
    d = np.array([1.0, -1.0] * 10) + np.linspace(0, 0.3, 20)  # lag-1 autocorrelation near -1
    m = d.mean()
    assert np.sum((d - m) ** 2) + 2 * np.sum((d[1:] - m) * (d[:-1] - m)) < 0  # the rectangular estimate is < 0
    res = dm_test(d, np.zeros_like(d), h=2, alternative="two-sided")
    assert res.kernel == "bartlett"
    stat, _ = _hand_dm(d, h=2, weights=np.array([0.5]))
    assert res.statistic == pytest.approx(stat)
    assert 0.0 <= res.p_value <= 1.0


def test_identical_and_constant_differentials_and_bad_input() -> None:
    x = np.array([0.3, 0.1, 0.5, 0.2])
    same = dm_test(x, x.copy(), h=1)
    assert (same.statistic, same.p_value, same.mean_diff) == (0.0, 1.0, 0.0)
    better = dm_test(x - 0.1, x, h=1)  # constant up to rounding
    assert better.statistic == -math.inf and better.p_value == 0.0
    rounding = dm_test(x, x * (1 + 1e-15 * np.array([1, -1, 1, 0])), h=1)  # identical up to rounding
    assert (rounding.statistic, rounding.p_value) == (0.0, 1.0)
    # NaN pairs dropped
    assert dm_test([0.1, np.nan, 0.2, 0.5], [0.3, 0.1, np.nan, 0.6], h=1).n == 2
    with pytest.raises(ValueError, match="at least 2"):
        dm_test([np.nan, np.nan, 1.0], [1.0, 2.0, np.nan], h=1)
    with pytest.raises(ValueError, match="at least 2"):
        dm_test([1.0], [2.0], h=1)
    with pytest.raises(ValueError, match="h must be"):
        dm_test(x, x + 1, h=4)
    with pytest.raises(ValueError, match="shapes"):
        dm_test(x, x[:3], h=1)


def test_size_with_ma_losses_needs_the_overlap_lags() -> None:
    # d is MA(2) (3-step windows overlapping by 2) with zero mean: at 5% the test with h=3 rejects about 5% of the
    # time; ignoring the overlap (h=1) understates the variance threefold and rejects far more often
    rng = np.random.default_rng(11)
    u = rng.normal(size=(1000, 202))
    d = u[:, 2:] + u[:, 1:-1] + u[:, :-2]
    zero = np.zeros(200)
    rate = np.mean([dm_test(row, zero, h=3).p_value < 0.05 for row in d])
    naive = np.mean([dm_test(row, zero, h=1).p_value < 0.05 for row in d])
    assert 0.025 < rate < 0.08
    assert naive > 0.12


def _windows(rng: np.random.Generator, n_windows: int = 200, n_series: int = 3, h: int = 4) -> pd.DataFrame:
    cutoffs = pd.date_range("2024-01-01", periods=n_windows, freq="D")
    idx = pd.MultiIndex.from_product([[f"s{i}" for i in range(n_series)], cutoffs, range(1, h + 1)],
                                     names=["unique_id", "cutoff", "step"])
    frame = idx.to_frame(index=False)
    frame["y"] = rng.normal(size=len(frame))
    return frame


def _with_forecast(frame: pd.DataFrame, yhat: np.ndarray, model: str) -> pd.DataFrame:
    return frame.assign(model=model, yhat=yhat)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_champion_plus_small_noise_is_not_significantly_better(seed: int) -> None:
    rng = np.random.default_rng(seed)
    frame = _windows(rng)
    # errors shared within a window (a common shock per series and origin) and independent noise per point
    shock = frame.groupby(["unique_id", "cutoff"])["y"].transform(lambda s: rng.normal(0, 0.5))
    champion = frame["y"].to_numpy() + shock.to_numpy() + rng.normal(0, 0.7, len(frame))
    challenger = champion + rng.normal(0, 0.05, len(frame))
    res = dm_on_windows(_with_forecast(frame, challenger, "c"), _with_forecast(frame, champion, "b"),
                        metric="mse", h=4, step=2)
    assert res.p_value > 0.05
    assert (res.n_windows, res.n_points, res.h, res.n) == (200, 200 * 3 * 4, 2, 200)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clearly_better_challenger_is_significant(seed: int) -> None:
    rng = np.random.default_rng(seed)
    frame = _windows(rng)
    champion = frame["y"].to_numpy() + rng.normal(0, 1.0, len(frame))
    challenger = frame["y"].to_numpy() + rng.normal(0, 0.9, len(frame))
    res = dm_on_windows(_with_forecast(frame, challenger, "c"), _with_forecast(frame, champion, "b"),
                        metric="mae", h=4, step=2)
    assert res.p_value < 0.01 and res.mean_diff < 0
    # volatility target, QLIKE: the challenger's log-error is half the champion's
    vol = np.exp(frame["y"].to_numpy() * 0.3 - 4)
    z = rng.normal(size=len(frame))
    res = dm_on_windows(_with_forecast(frame.assign(y=vol), vol * np.exp(0.2 * z), "c"),
                        _with_forecast(frame.assign(y=vol), vol * np.exp(0.4 * rng.normal(size=len(frame))), "b"),
                        metric="qlike", h=4, step=4)
    assert res.p_value < 0.01 and res.h == 1


def test_dm_on_windows_is_dm_on_per_cutoff_means_of_paired_points() -> None:
    rng = np.random.default_rng(5)
    frame = _windows(rng, n_windows=30, n_series=2, h=3)
    a = _with_forecast(frame, frame["y"] + rng.normal(0, 1, len(frame)), "a")
    b = _with_forecast(frame, frame["y"] + rng.normal(0, 1.1, len(frame)), "b")
    a.loc[7, "yhat"] = np.nan  # dropped from both sides
    shuffled_b = b.sample(frac=1.0, random_state=0)  # row order must not matter
    res = dm_on_windows(a, shuffled_b, metric="mse", h=3, step=1)
    la, lb = point_losses(a, "mse"), point_losses(b, "mse")
    keep = np.isfinite(la)
    per = pd.DataFrame({"t": a["cutoff"], "a": la, "b": lb})[keep].groupby("t").mean()
    expected = dm_test(per["a"].to_numpy(), per["b"].to_numpy(), h=3)
    assert res.statistic == pytest.approx(expected.statistic) and res.p_value == pytest.approx(expected.p_value)
    assert (res.n_windows, res.n_points, res.h, res.horizon, res.step) == (30, len(frame) - 1, 3, 3, 1)
    assert isinstance(res, DMResult) and res.as_dict()["metric"] == "mse"


def test_overlap_lags() -> None:
    assert [overlap_lags(h, s) for h, s in [(1, 1), (5, 1), (5, 2), (4, 2), (4, 4), (4, 10)]] == [1, 5, 3, 2, 1, 1]
    with pytest.raises(ValueError):
        overlap_lags(0, 1)


def test_mismatched_windows_are_refused() -> None:
    rng = np.random.default_rng(9)
    frame = _windows(rng, n_windows=10, n_series=2, h=2)
    a = _with_forecast(frame, frame["y"].to_numpy(), "a")
    b = _with_forecast(frame, frame["y"].to_numpy() + 1, "b")
    missing = b.drop(index=[3, 4])
    with pytest.raises(WindowMismatch, match=r"differ in 2 window keys.*2 only in a, 0 only in b; e\.g\. \('s0'"):
        dm_on_windows(a, missing, metric="mse", h=2, step=1)
    extra = pd.concat([a, a.iloc[[0]].assign(cutoff=pd.Timestamp("2030-01-01"))], ignore_index=True)
    with pytest.raises(WindowMismatch, match="1 only in a"):
        dm_on_windows(extra, b, metric="mse", h=2, step=1)
    with pytest.raises(WindowMismatch, match="repeats 1"):
        check_same_windows(pd.concat([a, a.iloc[[0]]]), b)
    with pytest.raises(WindowMismatch, match="actuals y differ on 1"):
        check_same_windows(a, b.assign(y=np.where(b.index == 5, 99.0, b["y"])))
    assert issubclass(WindowMismatch, ValueError)
    assert len(check_same_windows(a, b)) == len(frame)


def test_a_broken_volatility_model_is_scored_not_crashed_on() -> None:
    # flat bars (zero actuals) and a challenger forecasting zero / negative volatility: finite QLIKE, no promotion
    rng = np.random.default_rng(2)
    frame = _windows(rng, n_windows=40, n_series=2, h=2)
    vol = np.where(np.arange(len(frame)) % 9 == 0, 0.0, np.exp(rng.normal(-4, 0.3, len(frame))))
    frame = frame.assign(y=vol)
    broken = np.where(np.arange(len(frame)) % 2 == 0, 0.0, -0.01)
    res = dm_on_windows(_with_forecast(frame, broken, "c"), _with_forecast(frame, vol * 1.1 + 1e-4, "b"),
                        metric="qlike", h=2, step=1)
    assert np.isfinite(res.statistic) and res.mean_diff > 0 and res.p_value > 0.99
