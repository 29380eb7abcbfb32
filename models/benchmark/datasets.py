"""The benchmark's data sets: long frames (``unique_id, ds, y``) with their protocol.

* market data sets, from the warehouse bars of one asset class and both targets (``close``,
  ``volatility``): crypto 5-minute (hft config), equities daily (daily config), EURUSD hourly;
* the N-HiTS paper protocol on the exchange-rate file (:func:`paper_protocol`);
* any file read by :mod:`models.benchmark.ltsf`, split by fractions (:func:`split_protocol`).

All series of a data set are cut to their common timestamps, so every model -- including the
multivariate iTransformer, whose one sample holds all series -- sees the same windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from domain.vocabulary import TARGETS
from models.benchmark.specs import MARKET_SPECS, PAPER_SPEC, BenchSpec, Budget
from models.frames import to_training_frame


@dataclass
class BenchData:
    frame: pd.DataFrame  # unique_id, ds, y on a common grid
    spec: BenchSpec


def common_grid(frame: pd.DataFrame, *, max_series: int | None, min_length: int) -> pd.DataFrame:
    """Keep the (at most ``max_series``) longest series and only the timestamps all of them have.

    Series are added longest first while the common part stays at least ``min_length`` long.
    """
    counts = frame.groupby("unique_id")["ds"].size().sort_values(ascending=False, kind="stable")
    chosen: list[str] = []
    stamps: set | None = None
    for uid in counts.index:
        own = set(frame.loc[frame["unique_id"] == uid, "ds"])
        shared = own if stamps is None else stamps & own
        if len(shared) >= min_length:
            chosen.append(uid)
            stamps = shared
        if max_series is not None and len(chosen) >= max_series:
            break
    if not chosen:
        raise ValueError(f"no series has {min_length} observations (input + validation + test windows)")
    out = frame[frame["unique_id"].isin(chosen) & frame["ds"].isin(stamps)]
    return out.sort_values(["unique_id", "ds"], ignore_index=True)


def fit_windows(spec: BenchSpec, budget: Budget, length: int) -> BenchSpec:
    """``spec`` with at most ``budget.max_test_windows`` test windows (evenly spread over the test part), and
    never more than the series' length allows."""
    n, step = spec.n_windows, spec.step_size
    if budget.max_test_windows is not None and n > budget.max_test_windows:
        span = step * (n - 1)
        n = budget.max_test_windows
        step = max(step, span // max(1, n - 1)) if n > 1 else step
    room = length - spec.input_size - spec.val_size - spec.h - 1
    if room < 0:
        raise ValueError(f"{spec.name}: series of {length} steps are too short for input {spec.input_size} + "
                         f"validation {spec.val_size} + horizon {spec.h}")
    n = max(1, min(n, room // step + 1))
    return spec.replace(n_windows=n, step_size=step)


def market_datasets(bars: pd.DataFrame, asset_class: str, budget: Budget) -> list[BenchData]:
    """The asset class's data sets for both targets (plus the paper protocol for fx)."""
    base = MARKET_SPECS[asset_class]
    freq = "1h" if asset_class == "fx" else None
    out = []
    for target in TARGETS:
        spec = base.replace(name=f"{base.name}-{target}", target=target)
        frame = to_training_frame(bars, asset_class, target, freq=freq, min_length=_min_length(spec))
        frame = common_grid(frame, max_series=budget.max_series, min_length=_min_length(spec))
        out.append(BenchData(frame, fit_windows(spec, budget, frame.groupby("unique_id").size().min())))
    if asset_class == "fx":
        daily = to_training_frame(bars, "fx", "close", min_length=_min_length(PAPER_SPEC))
        out.append(paper_protocol(daily, budget))
    return out


def _min_length(spec: BenchSpec) -> int:
    return spec.input_size + spec.val_size + spec.h * 2 + 1


def zscore(frame: pd.DataFrame, train_end: pd.Timestamp) -> pd.DataFrame:
    """Standardise each series with the mean and std of its rows ``ds <= train_end`` only."""
    train = frame[frame["ds"] <= train_end].groupby("unique_id")["y"].agg(["mean", "std"])
    if (train["std"].fillna(0) == 0).any():
        bad = list(train.index[train["std"].fillna(0) == 0])
        raise ValueError(f"series {bad} are constant in the training part: cannot z-score")
    out = frame.copy()
    out["y"] = (out["y"] - out["unique_id"].map(train["mean"])) / out["unique_id"].map(train["std"])
    return out


def split_protocol(frame: pd.DataFrame, spec: BenchSpec, budget: Budget,
                   fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), *, standardise: bool = True) -> BenchData:
    """Train/validation/test by fractions of the common grid (LTSF style), rolling windows of ``spec.step_size``
    over the whole test part, z-scored with training statistics when ``standardise``."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split must be three non-negative fractions summing to 1 (got {fractions})")
    frame = common_grid(frame, max_series=budget.max_series, min_length=spec.input_size + spec.h + 2)
    grid = np.sort(frame["ds"].unique())
    n_train, n_val = int(len(grid) * fractions[0]), int(len(grid) * fractions[1])
    n_test = len(grid) - n_train - n_val
    if n_test < spec.h or n_train < spec.input_size + spec.h:
        raise ValueError(f"{len(grid)} timestamps are too few for h={spec.h}, input_size={spec.input_size} "
                         f"with split {fractions}: train {n_train}, validation {n_val}, test {n_test}")
    if standardise:
        frame = zscore(frame, pd.Timestamp(grid[n_train - 1]))
    step = spec.step_size
    n_windows = (n_test - spec.h) // step + 1
    full = spec.replace(n_windows=n_windows, val_size=n_val)
    return BenchData(frame, fit_windows(full, budget, len(grid)))


def paper_protocol(daily_fx: pd.DataFrame, budget: Budget) -> BenchData:
    """The N-HiTS paper's Exchange set-up: the 8 LSTNet exchange-rate series, z-scored, 70/10/20, h=96."""
    return split_protocol(daily_fx, PAPER_SPEC, budget.replace(max_series=None))
