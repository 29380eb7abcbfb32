"""The promotion gate, plain and typed: a challenger replaces the champion only if, on the same test windows, its
MASE beats the best naive baseline's and the champion's. Works on evaluation tables (`model_evaluations` rows: one
per model, nhits and the baselines, scored on the challenger's windows) and on the champion as the registry
describes it; `champion_model` reads them, calls `decide` and records the decision.

Until an NHITS version passes, the best baseline holds the alias (`bootstrap_champion`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import pandas as pd

from domain.vocabulary import BASELINE_KIND, BASELINES, NHITS_KIND

PROMOTED, REFUSED, BOOTSTRAP = "promoted", "refused", "bootstrap"  # model_promotions.decision


class Version(Protocol):
    """What the gate needs of a registered version (`storage.versions.ModelVersion` is one)."""

    version: str
    kind: str
    baseline: str | None


@dataclasses.dataclass(frozen=True)
class Windows:
    """The rolling-origin test windows a challenger was evaluated on."""

    h: int
    n_windows: int
    step: int


@dataclasses.dataclass(frozen=True)
class Decision:
    """The gate's verdict on one challenger; the fields are the `model_promotions` columns."""

    passed: bool
    reason: str
    version: str
    challenger_mase: float
    champion_version: str | None
    champion_kind: str | None
    champion_mase: float | None
    best_baseline: str
    best_baseline_mase: float

    @property
    def verdict(self) -> str:
        """``promoted`` or ``refused`` (`model_promotions.decision`, MLflow tag ``promotion``)."""
        return PROMOTED if self.passed else REFUSED

    @property
    def headline(self) -> str:
        """The verdict as the asset page and `tradecast run` say it: a refusal is a normal outcome."""
        return "promoted" if self.passed else "refused: champion stays"


@dataclasses.dataclass(frozen=True)
class BaselineChampion:
    """The baseline that holds `champion` until an NHITS version passes the gate."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    decision: Decision


def _scores(evaluation: pd.DataFrame) -> pd.DataFrame:
    table = evaluation.set_index("model")
    missing = [m for m in (NHITS_KIND, *BASELINES) if m not in table.index]
    if missing:
        raise ValueError(f"the evaluation lacks model(s) {missing}: it has {sorted(table.index)}")
    return table


def best_baseline(evaluation: pd.DataFrame) -> tuple[str, float]:
    """The baseline with the lowest MASE on the evaluation's windows (a NaN score never wins)."""
    mase = _scores(evaluation).loc[list(BASELINES), "mase"].astype(float)
    if mase.isna().all():
        raise ValueError("every baseline's MASE is NaN on these windows: nothing to judge against")
    best = mase.idxmin()
    return str(best), float(mase[best])


def windows_of(evaluation: pd.DataFrame) -> Windows:
    """The windows the evaluation rows were scored on."""
    first = evaluation.iloc[0]
    return Windows(h=int(first.h), n_windows=int(first.n_windows), step=int(first.step))


def champion_mase(champion: Version, evaluation: pd.DataFrame, rescore: Callable[[Windows], float]) -> float:
    """The champion's MASE on the challenger's windows: a baseline champion's score is in the evaluation already
    (same windows, same scale); an NHITS champion is scored by ``rescore`` (it forecasts those windows)."""
    if champion.kind == BASELINE_KIND:
        if champion.baseline not in BASELINES:
            raise ValueError(f"champion v{champion.version} is a baseline without a known name ({champion.baseline!r})")
        return float(_scores(evaluation).loc[champion.baseline, "mase"])
    return float(rescore(windows_of(evaluation)))


def rescore(nf: Any, frame: pd.DataFrame, windows: Windows) -> float:
    """MASE of a stored NHITS (``nf``) on ``windows`` of ``frame`` (scaled by the naive MAE of the training part,
    as the challenger's evaluation is)."""
    from models.evaluation import loaded_window_predictions, time_split
    from models.metrics import naive_scale, score_predictions

    split = time_split(frame, h=windows.h, n_windows=windows.n_windows, step_size=windows.step)
    preds = loaded_window_predictions(nf, split)
    return float(score_predictions(preds, naive_scale(split.train, seasonality=1)).mase.iloc[0])


def decide(challenger_version: str, evaluation: pd.DataFrame, champion: Version | None,
           champion_score: float | None) -> Decision:
    """The verdict on a challenger from its evaluation rows and the champion's score on the same windows (None:
    no champion, or the challenger is the champion). Passing needs a MASE strictly below the best baseline's and
    the champion's; a NaN score on either side never passes."""
    table = _scores(evaluation)
    mase = float(table.loc[NHITS_KIND, "mase"])
    best, best_mase = best_baseline(evaluation)
    failures = []
    if not mase < best_mase:  # NaN on either side: not better
        failures.append(f"MASE {mase:.4f} does not beat baseline '{best}' ({best_mase:.4f})")
    if champion_score is not None and not mase < champion_score:
        failures.append(f"MASE {mase:.4f} does not beat champion v{champion.version} ({champion_score:.4f})")
    reason = "; ".join(failures) or (f"MASE {mase:.4f} beats baseline '{best}' ({best_mase:.4f})"
                                      + (f" and champion v{champion.version} ({champion_score:.4f})"
                                         if champion_score is not None else ""))
    return Decision(not failures, reason, str(challenger_version), mase,
                    str(champion.version) if champion else None, champion.kind if champion else None,
                    champion_score, best, best_mase)


def bootstrap_champion(evaluation: pd.DataFrame, *, h: int, input_size: int, season_length: int,
                       freq: str) -> BaselineChampion:
    """The best baseline on the first challenger's windows, as the champion to register while there is none."""
    best, best_mase = best_baseline(evaluation)
    row = _scores(evaluation).loc[best]
    params = {"name": best, "h": h, "input_size": input_size, "season_length": season_length, "freq": freq}
    reason = f"no champion yet: baseline '{best}' (MASE {best_mase:.4f}) holds the alias"
    decision = Decision(True, reason, "", best_mase, None, None, None, best, best_mase)
    return BaselineChampion(best, params, {m: float(row[m]) for m in ("mase", "mae", "mse")}, decision)
