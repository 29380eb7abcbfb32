"""Time-based split and rolling-origin evaluation of NHITS against baselines.

Protocol (never shuffled):

1. :func:`time_split` takes the global timestamp grid of the frame; the test
   part is the last ``test_size = h + step * (n_windows - 1)`` timestamps, so
   the forecast origins (cutoffs) are ``grid[-test_size - 1 + k * step]``.
   Only series that have *every* test timestamp are evaluated, which makes the
   positional windows of neuralforecast coincide with calendar windows.
2. NHITS is fitted on rows with ``ds <= train_end`` (the first cutoff) only;
   its early-stopping validation set is the last ``spec.val_size`` steps of
   that training part.
3. The fitted model forecasts every test window from the data up to its cutoff
   (``cross_validation(use_fitted=True, refit=False)``: no refit, the input of
   each window ends at its cutoff). The baselines forecast exactly the same
   ``(unique_id, cutoff, step)`` windows from history ``<= cutoff``.
4. Metrics per model; MASE is scaled by the naive MAE of the training part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from domain.vocabulary import (
    BASELINES,
    PRICE_BASELINES,
    RANDOM_WALK_BASELINES,
    STATISTICAL_BASELINES,
    VOLATILITY_BASELINES,
)
from models.baselines import baseline_forecasts
from models.configs import NHITSSpec
from models.metrics import naive_scale
from models.nf_frames import exog_of, model_columns, tidy_nf_output
from models.nhits import LogFn, best_checkpoint

PRED_COLUMNS = ["model", "unique_id", "cutoff", "ds", "step", "y", "yhat", "lo", "hi"]


@dataclass(frozen=True)
class Split:
    """Result of :func:`time_split`."""

    train: pd.DataFrame  # rows with ds <= train_end, evaluated series only
    full: pd.DataFrame  # all rows of the evaluated series
    cutoffs: tuple[pd.Timestamp, ...]
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    dropped_series: tuple[str, ...]


@dataclass
class TrainResult:
    """What :func:`train_and_evaluate` returns."""

    nf: Any  # fitted neuralforecast.NeuralForecast
    evaluation: pd.DataFrame  # one row per model: mse, mae, mase, coverage_80, n_windows, n_series
    predictions: pd.DataFrame  # long per-window predictions, PRED_COLUMNS
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    train_seconds: float
    eval_seconds: float
    spec: NHITSSpec
    freq: str
    dropped_series: tuple[str, ...] = ()
    train_loss: float | None = None  # last logged training loss
    val_loss: float | None = None  # last validation loss (None without val_size)
    scale: pd.Series | None = None  # per-series MASE scale: naive MAE of the training part
    ensemble: Any = None  # models.ensemble.Ensemble chosen on validation windows (its test forecasts: "ensemble")
    ensemble_note: str = ""  # why there is none, when asked for
    best_checkpoint: dict | None = None  # models.nhits.best_checkpoint: the restored step and its validation loss


def time_split(frame: pd.DataFrame, *, h: int, n_windows: int, step_size: int | None = None) -> Split:
    """Split ``frame`` (``unique_id, ds, y``) by time into training part and test windows."""
    step = step_size or h
    test_size = h + step * (n_windows - 1)
    grid = np.sort(frame["ds"].unique())
    if len(grid) < test_size + 2:
        raise ValueError(f"frame has {len(grid)} timestamps, too few for test_size={test_size}")
    test_stamps = grid[-test_size:]
    train_end = pd.Timestamp(grid[-test_size - 1])
    after = frame[frame["ds"] > train_end]
    n_test = after.groupby("unique_id")["ds"].nunique()
    complete = n_test[n_test == test_size].index
    keep = set(complete) & set(frame.loc[frame["ds"] <= train_end, "unique_id"].unique())
    dropped = tuple(sorted(set(frame["unique_id"].unique()) - keep))
    full = frame[frame["unique_id"].isin(keep)].sort_values(["unique_id", "ds"], ignore_index=True)
    if full.empty:
        raise ValueError("no series covers the whole test period")
    cutoffs = tuple(pd.Timestamp(grid[-test_size - 1 + k * step]) for k in range(n_windows))
    return Split(
        train=full[full["ds"] <= train_end].reset_index(drop=True),
        full=full,
        cutoffs=cutoffs,
        train_end=train_end,
        test_start=pd.Timestamp(test_stamps[0]),
        dropped_series=dropped,
    )


def nhits_window_predictions(nf: Any, split: Split, spec: NHITSSpec, alias: str = "NHITS",
                             model: str = "nhits") -> pd.DataFrame:
    """Predictions of the fitted ``nf`` (any neuralforecast model: ``alias`` is its output column, ``model``
    the name in the result) for every test window of ``split`` (no refit)."""
    from models.nhits import lightning_quiet

    with lightning_quiet():
        cv = nf.cross_validation(df=model_columns(split.full, sum(exog_of(nf), [])), n_windows=spec.n_windows,
                                 step_size=spec.step, use_fitted=True, refit=False)
    got = sorted(pd.Timestamp(c) for c in cv["cutoff"].unique())
    if got != list(split.cutoffs):
        raise RuntimeError(f"neuralforecast cutoffs {got} differ from the split's {list(split.cutoffs)}")
    out = tidy_nf_output(cv, alias).sort_values(["unique_id", "cutoff", "ds"], ignore_index=True)
    out["step"] = out.groupby(["unique_id", "cutoff"]).cumcount() + 1
    out.insert(0, "model", model)
    return out[PRED_COLUMNS]


def loaded_window_predictions(nf: Any, split: Split, alias: str = "NHITS", predict: Any = None,
                              model: str = "nhits") -> pd.DataFrame:
    """Predictions of a saved-and-loaded ``nf`` (no training dataset attached) on the test windows of
    ``split``: one ``predict`` per cutoff on the history up to it, so a champion can be scored on a
    challenger's windows. Steps are matched to the next ``h`` bars positionally, as in cross-validation (a
    holiday inside the horizon is simply absent); a model with exogenous columns reads them from ``split.full``
    (future ones from those next bars, whose values are known in advance). ``predict``: the stored forecaster's
    own (`storage.pyfunc`: an ensemble version mixes in its baseline) instead of ``nf``'s; ``model`` names the rows."""
    from models.forecasting import forecast

    hist, futr = exog_of(nf)
    parts = []
    for cutoff in split.cutoffs:
        history = model_columns(split.full[split.full["ds"] <= cutoff], hist + futr)
        after = split.full[split.full["ds"] > cutoff].groupby("unique_id", sort=False).head(nf.h)
        after = after.assign(step=after.groupby("unique_id").cumcount() + 1)
        model_input = history
        if futr:
            model_input = pd.concat([history, after[["unique_id", "ds", *futr]].assign(y=np.nan)], ignore_index=True)
        fc = (predict(model_input) if predict is not None else forecast(nf, model_input, alias=alias))
        fc = fc.drop(columns="ds").assign(cutoff=cutoff)
        parts.append(fc.merge(after[["unique_id", "step", "ds", "y"]], on=["unique_id", "step"], how="inner"))
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "model", model)
    return out[PRED_COLUMNS]


def _long(windows: pd.DataFrame, fc: pd.DataFrame, names) -> pd.DataFrame:
    """Wide forecasts ``fc`` (``unique_id, cutoff, step, <model>...``) on the keys of ``windows``, long."""
    keys = windows[["unique_id", "cutoff", "ds", "step", "y"]]
    merged = keys.merge(fc, on=["unique_id", "cutoff", "step"], how="left", validate="one_to_one")
    long = merged.melt(id_vars=["unique_id", "cutoff", "ds", "step", "y"], value_vars=list(names),
                       var_name="model", value_name="yhat")
    long["lo"] = np.nan
    long["hi"] = np.nan
    return long[PRED_COLUMNS]


def baseline_window_predictions(split: Split, windows: pd.DataFrame, spec: NHITSSpec) -> pd.DataFrame:
    """Naive baseline predictions on the same ``(unique_id, cutoff, step)`` as ``windows``."""
    fc = baseline_forecasts(split.full, windows[["unique_id", "cutoff"]], h=spec.h,
                            input_size=spec.input_size, season_length=spec.season_length)
    return _long(windows, fc, BASELINES)


def field_window_predictions(split: Split, windows: pd.DataFrame, spec: NHITSSpec, freq: str, target: str | None,
                             close: pd.DataFrame | None = None, names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The field's baselines for ``target`` on the same ``(unique_id, cutoff, step)`` as ``windows``, fitted on
    the training part only: HAR, EWMA (RiskMetrics and fitted), GARCH(1,1) for volatility (`models.volatility`;
    GARCH reads the ``close`` frame's returns, skipped without it), the random walk with drift for close
    (`models.random_walk`) and statsforecast's AutoETS, AutoTheta, AutoARIMA (`models.statistical`) for close.
    ``names``: only these of the target's models. Empty for another target."""
    if target == "volatility":
        from models.volatility import volatility_forecasts

        names = names or (VOLATILITY_BASELINES if close is not None else
                          tuple(m for m in VOLATILITY_BASELINES if m != "garch"))
        closes = None if close is None else close[close["unique_id"].isin(split.full["unique_id"].unique())]
        fc = volatility_forecasts(split.full, windows[["unique_id", "cutoff"]].drop_duplicates(), h=spec.h,
                                  freq=freq, train_end=split.train_end, close=closes, models=names)
    elif target == "close":
        from models.random_walk import price_forecasts
        from models.statistical import statistical_forecasts

        names = names or PRICE_BASELINES
        keys = windows[["unique_id", "cutoff"]].drop_duplicates()
        fc = price_forecasts(split.full, keys, h=spec.h, models=tuple(m for m in names if m in RANDOM_WALK_BASELINES))
        statistical = tuple(m for m in names if m in STATISTICAL_BASELINES)
        if statistical:
            fc = fc.merge(statistical_forecasts(split.full, keys, h=spec.h, season_length=spec.season_length,
                                                train_end=split.train_end, models=statistical),
                          on=["unique_id", "cutoff", "step"], how="outer")
    else:
        return pd.DataFrame(columns=PRED_COLUMNS)
    return _long(windows, fc, names)


def validation_split(split: Split, spec: NHITSSpec) -> Split:
    """The ensemble's validation windows: a :class:`Split` of ``split.train`` whose windows cover its last
    ``spec.val_size`` steps (``max(1, val_size // h)`` windows of ``h``, ``h`` apart), out of NHITS's training
    windows (neuralforecast holds ``val_size`` out); ValueError when ``val_size < h``."""
    if spec.val_size < spec.h:
        raise ValueError(f"the ensemble needs validation windows: val_size {spec.val_size} < h {spec.h}")
    return time_split(split.train, h=spec.h, n_windows=max(1, spec.val_size // spec.h), step_size=spec.h)


def fit_ensemble(nf: Any, split: Split, spec: NHITSSpec, freq: str, target: str | None, metric: str) -> Any:
    """The `models.ensemble.Ensemble` of a fitted ``nf``: NHITS and every candidate (served) baseline forecast the
    validation windows of ``split`` (the baselines fitted on data before them), and `models.ensemble.choose`
    picks the baseline and weight with the lowest ``metric`` there."""
    from models.ensemble import candidates, choose

    val = validation_split(split, spec)
    nhits = loaded_window_predictions(nf, val)
    nhits = nhits[nhits["step"] <= spec.h]
    parts = [nhits, baseline_window_predictions(val, nhits, spec)]
    if "ewma" in candidates(target):
        parts.append(field_window_predictions(val, nhits, spec, freq, target, names=("ewma",)))
    return choose(pd.concat(parts, ignore_index=True), metric, naive_scale(val.train, seasonality=1), target)


def evaluate(nf: Any, split: Split, spec: NHITSSpec, *, freq: str | None = None, target: str | None = None,
             close: pd.DataFrame | None = None, ensemble: Any = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(evaluation table, long predictions)`` of a fitted ``nf``, the naive baselines and (with ``target``) the
    field's baselines, all on the windows of ``split``; with an ``ensemble`` (`models.ensemble.Ensemble`) that
    mixes (``0 < w < 1``) also its forecasts (model ``ensemble``)."""
    from models.scores import score_table

    nhits = nhits_window_predictions(nf, split, spec)
    parts = [nhits, baseline_window_predictions(split, nhits, spec)]
    if target is not None:
        parts.append(field_window_predictions(split, nhits, spec, freq or spec.freq, target, close))
    preds = pd.concat(parts, ignore_index=True)
    if ensemble is not None and ensemble.improves:  # a real mix: w = 1 is NHITS, w = 0 the baseline, both here
        from models.ensemble import combine

        preds = pd.concat([preds, combine(preds, ensemble)], ignore_index=True)
    table = score_table(preds, naive_scale(split.train, seasonality=1), target=target)
    return table, preds


def fit_nhits(train: pd.DataFrame, spec: NHITSSpec, freq: str, *, accelerator: str = "auto",
              log_fn: LogFn | None = None, log_every_n_steps: int = 50) -> Any:
    """Fit a fresh ``NeuralForecast([NHITS])`` on ``train`` (val = its last ``spec.val_size`` steps)."""
    from neuralforecast import NeuralForecast

    from models.nhits import build_nhits, lightning_quiet

    model = build_nhits(spec, accelerator=accelerator, log_fn=log_fn, log_every_n_steps=log_every_n_steps)
    nf = NeuralForecast(models=[model], freq=freq)
    with lightning_quiet():
        nf.fit(df=model_columns(train, spec.exog), val_size=spec.val_size)
    return nf


def train_and_evaluate(frame: pd.DataFrame, spec: NHITSSpec, *, accelerator: str = "auto",
                       log_fn: LogFn | None = None, freq: str | None = None,
                       log_every_n_steps: int = 50, target: str | None = None,
                       close: pd.DataFrame | None = None, ensemble_metric: str | None = None) -> TrainResult:
    """Split ``frame`` by time, fit NHITS on the training part, evaluate it and the baselines (with ``target``:
    also the field's baselines for it; ``close``: the close frame of the same series, for GARCH on returns).
    With ``ensemble_metric`` (the gate's loss) also the ensemble candidate chosen by it on validation windows
    before the test part (`models.ensemble`; none when ``spec.val_size < spec.h``, ``ensemble_note`` says so).

    ``freq`` defaults to ``frame.attrs['freq']`` (set by ``to_training_frame``),
    then ``spec.freq``.
    """
    freq = freq or frame.attrs.get("freq") or spec.freq
    split = time_split(frame, h=spec.h, n_windows=spec.n_windows, step_size=spec.step)
    start = time.perf_counter()
    nf = fit_nhits(split.train, spec, freq, accelerator=accelerator, log_fn=log_fn,
                   log_every_n_steps=log_every_n_steps)
    train_seconds = time.perf_counter() - start
    ensemble, note = None, ""
    if ensemble_metric is not None:
        try:
            ensemble = fit_ensemble(nf, split, spec, freq, target, ensemble_metric)
        except ValueError as exc:  # no validation windows, or no baseline covers them: no ensemble, said why
            note = str(exc)
    table, preds = evaluate(nf, split, spec, freq=freq, target=target, close=close, ensemble=ensemble)
    model = nf.models[0]
    train_traj, val_traj = getattr(model, "train_trajectories", []), getattr(model, "valid_trajectories", [])
    return TrainResult(
        nf=nf, evaluation=table, predictions=preds, train_end=split.train_end, test_start=split.test_start,
        train_seconds=train_seconds, eval_seconds=time.perf_counter() - start - train_seconds,
        spec=spec, freq=freq, dropped_series=split.dropped_series, scale=naive_scale(split.train, seasonality=1),
        train_loss=float(train_traj[-1][1]) if train_traj else None,
        val_loss=float(val_traj[-1][1]) if val_traj else None, ensemble=ensemble, ensemble_note=note,
        best_checkpoint=best_checkpoint(nf),
    )
