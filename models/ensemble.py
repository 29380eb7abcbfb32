"""The ensemble candidate: NHITS combined with the best served baseline, ``w * NHITS + (1 - w) * baseline``.

Chosen before the test part, on validation windows inside the training part, so the gate's test windows judge
it like any challenger:

1. `models.evaluation.validation_split`: the last ``spec.val_size`` steps of the training part, cut into
   windows of ``h`` every ``h`` bars (at least one). NHITS is fitted with ``val_size``: neuralforecast keeps those
   steps out of its training windows, so its validation forecasts are out of sample (early stopping of the full
   profile reads them, as it does for any validation set).
2. `models.evaluation.fit_ensemble`: NHITS and the served baselines (`domain.vocabulary.SERVED_BASELINES`; EWMA
   for volatility only) forecast the same validation windows, the baselines' parameters fitted on data before
   the first validation origin, and :func:`choose` picks:
3. For each baseline the weight ``w`` on :data:`WEIGHTS` with the lowest validation loss (the gate's metric), and
   the (baseline, ``w``) pair with the lowest loss overall; ties prefer the larger ``w`` (less change).
4. :func:`combine` applies it to the test windows: every output of NHITS (``yhat``, and ``lo``/``hi`` of a
   quantile model) becomes ``w * o + (1 - w) * b``, as the served graph does (`serving.graph.EnsembleGraph`).

Only served baselines are candidates, so an ensemble that passes the gate can be served (one ONNX graph)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from domain.vocabulary import BASELINES, ENSEMBLE_KIND, NHITS_KIND, SERVED_BASELINES

WEIGHTS = np.round(np.linspace(0.0, 1.0, 21), 2)  # 0, 0.05, ..., 1
KEYS = ["unique_id", "cutoff", "step"]


@dataclass(frozen=True)
class Ensemble:
    """The chosen combination and how it was chosen (validation losses in the gate's ``metric``)."""

    baseline: str
    weight: float
    metric: str
    validation_loss: float  # of the ensemble
    nhits_validation_loss: float
    baseline_validation_loss: float
    n_windows: int  # validation origins
    n_points: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def improves(self) -> bool:
        """A real mix (``0 < w < 1``): then it beat NHITS alone (``w = 1``) and the baseline alone (``w = 0``) on
        the validation windows (ties go to the larger ``w``). ``w = 1`` is NHITS itself, ``w = 0`` the baseline
        itself: both are judged already, so neither is a new candidate."""
        return 0.0 < self.weight < 1.0


def candidates(target: str | None) -> tuple[str, ...]:
    """The served baselines an ensemble may combine with NHITS for ``target`` (EWMA forecasts a volatility)."""
    return tuple(b for b in SERVED_BASELINES if b in BASELINES or target == "volatility")


def _loss(points: pd.DataFrame, metric: str, scale: pd.Series) -> float:
    from models.losses import mean_loss, point_losses

    return mean_loss(point_losses(points, metric, scale))


def choose(points: pd.DataFrame, metric: str, scale: pd.Series, target: str | None) -> Ensemble:
    """The (baseline, weight) with the lowest ``metric`` on the validation ``points`` (model ``nhits`` and the
    baselines); ValueError without NHITS forecasts or a usable baseline."""
    nhits = points[points["model"] == NHITS_KIND].set_index(KEYS).sort_index()
    if nhits.empty:
        raise ValueError("no nhits forecasts on the validation windows")
    best: tuple[float, float, str] | None = None
    losses: dict[str, float] = {}
    for name in candidates(target):
        other = points[points["model"] == name].set_index(KEYS).reindex(nhits.index)
        if not np.isfinite(other["yhat"].to_numpy(float)).all():
            continue  # a baseline without a forecast for every window cannot be combined
        losses[name] = _loss(other.reset_index(), metric, scale)
        for w in WEIGHTS:
            mixed = nhits.assign(yhat=w * nhits["yhat"] + (1 - w) * other["yhat"]).reset_index()
            loss = _loss(mixed, metric, scale)
            if np.isfinite(loss) and (best is None or (loss, -w) < (best[0], -best[1])):
                best = (loss, float(w), name)
    if best is None:
        raise ValueError(f"no candidate baseline of {list(candidates(target))} forecasts every validation window")
    loss, weight, name = best
    return Ensemble(baseline=name, weight=weight, metric=metric, validation_loss=loss,
                    nhits_validation_loss=_loss(nhits.reset_index(), metric, scale),
                    baseline_validation_loss=losses[name], n_windows=int(nhits.reset_index()["cutoff"].nunique()),
                    n_points=int(len(nhits)))


def combine(predictions: pd.DataFrame, ensemble: Ensemble) -> pd.DataFrame:
    """The ensemble's forecasts (model ``ensemble``) on the windows of ``predictions`` (long: model ``nhits`` and
    the baseline on the same keys): each output of NHITS mixed with the baseline's point forecast."""
    nhits = predictions[predictions["model"] == NHITS_KIND].set_index(KEYS)
    base = predictions[predictions["model"] == ensemble.baseline].set_index(KEYS)["yhat"].reindex(nhits.index)
    if base.isna().any():
        raise ValueError(f"baseline '{ensemble.baseline}' lacks forecasts on {int(base.isna().sum())} of the "
                         "ensemble's points")
    w = ensemble.weight
    out = nhits.copy()
    for col in ("yhat", "lo", "hi"):
        out[col] = w * nhits[col] + (1 - w) * base
    return out.reset_index().assign(model=ENSEMBLE_KIND)[predictions.columns]


def served_params(ensemble: Ensemble, spec: Any, freq: str) -> dict[str, Any]:
    """The ``ensemble`` artifact of a registered ensemble version (`storage.pyfunc`): the weight and the served
    baseline's parameters (`models.served_baselines.BaselineForecaster`)."""
    return {"weight": ensemble.weight, "baseline": {"name": ensemble.baseline, "h": spec.h,
                                                    "input_size": spec.input_size,
                                                    "season_length": spec.season_length, "freq": freq}}
