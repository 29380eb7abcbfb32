"""The promotion gate, plain and typed. A challenger replaces the champion only if, on the SAME rolling-origin
windows (identical ``(unique_id, cutoff, step)`` keys and actuals), its loss is lower than the best baseline's and
the champion's AND a Diebold-Mariano test (Harvey-Leybourne-Newbold correction, `models.significance`) says so with
p below ``alpha``. The loss is the target's (`GateRule`: QLIKE for volatility, MASE for close by default).

It works on per-point forecasts (`evaluation_forecasts` rows: the challenger ``nhits`` and every baseline, scored
on the challenger's windows) and on the champion as the registry describes it (`Version`); `champion_model` reads
them, calls `decide` and records the decision. Until an NHITS version passes, the best servable baseline holds the
alias (`bootstrap_champion`)."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import numpy as np
import pandas as pd

from domain.vocabulary import (
    BASELINE_KIND,
    BASELINES,
    NHITS_KIND,
    PRICE_BASELINES,
    SERVED_BASELINES,
    VOLATILITY_BASELINES,
)

PROMOTED, REFUSED, BOOTSTRAP = "promoted", "refused", "bootstrap"  # model_promotions.decision
ALL_BASELINES = (*BASELINES, *VOLATILITY_BASELINES, *PRICE_BASELINES)
METRIC_NAMES = {"mase": "MASE", "qlike": "QLIKE", "mae": "MAE", "mse": "MSE", "mse_var": "MSE(var)", "crps": "CRPS"}


class Version(Protocol):
    """What the gate needs of a registered version (`storage.versions.ModelVersion` is one)."""

    version: str
    kind: str
    baseline: str | None


@dataclasses.dataclass(frozen=True)
class GateRule:
    """How the gate judges: the loss (lower is better) and the significance level of the DM tests."""

    metric: str = "mase"
    alpha: float = 0.05

    @classmethod
    def for_target(cls, target: str, *, close: str = "mase", volatility: str = "qlike", alpha: float = 0.05):
        return cls(metric=volatility if target == "volatility" else close, alpha=alpha)

    @property
    def label(self) -> str:
        return METRIC_NAMES.get(self.metric, self.metric)


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
    metric: str = "mase"
    alpha: float = 0.05
    challenger_score: float = float("nan")
    best_baseline_score: float = float("nan")
    champion_score: float | None = None
    p_value_baseline: float | None = None
    p_value_champion: float | None = None
    n_windows: int = 0
    n_points: int = 0
    not_significant: bool = dataclasses.field(default=False, compare=False)

    @property
    def verdict(self) -> str:
        """``promoted`` or ``refused`` (`model_promotions.decision`, MLflow tag ``promotion``)."""
        return PROMOTED if self.passed else REFUSED

    @property
    def headline(self) -> str:
        """The verdict as the asset page and `tradecast run` say it: a refusal is a normal outcome."""
        if self.passed:
            return "promoted"
        if self.not_significant:
            ps = [v for v in (self.p_value_baseline, self.p_value_champion) if v is not None and v == v]
            return (f"not significantly better (p = {max(ps):.3g}): champion stays" if ps else
                    "not significantly better (too few windows for the test): champion stays")
        return "refused: champion stays"

    def record(self) -> dict[str, Any]:
        """The `model_promotions` columns."""
        row = dataclasses.asdict(self)
        row.pop("not_significant")
        return row


@dataclasses.dataclass(frozen=True)
class BaselineChampion:
    """The baseline that holds `champion` until an NHITS version passes the gate."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    decision: Decision


def windows_of(evaluation: pd.DataFrame) -> Windows:
    """The windows the evaluation rows were scored on."""
    first = evaluation.iloc[0]
    return Windows(h=int(first.h), n_windows=int(first.n_windows), step=int(first.step))


def scores(points: pd.DataFrame, metric: str, scale: pd.Series) -> pd.Series:
    """Mean ``metric`` per model of a long per-point frame (``model, unique_id, cutoff, step, y, yhat``)."""
    from models.losses import mean_loss, point_losses

    return pd.Series({m: mean_loss(point_losses(p, metric, scale)) for m, p in points.groupby("model", sort=False)})


def best_baseline(points: pd.DataFrame, metric: str, scale: pd.Series,
                  candidates: tuple[str, ...] = ALL_BASELINES) -> tuple[str, float]:
    """The baseline with the lowest mean loss on these windows (a NaN score never wins)."""
    found = scores(points[points["model"].isin(candidates)], metric, scale).dropna()
    if found.empty:
        raise ValueError(f"no baseline of {list(candidates)} has a finite {metric} on these windows")
    best = found.idxmin()
    return str(best), float(found[best])


def _mase(points: pd.DataFrame, scale: pd.Series) -> float:
    return float(scores(points, "mase", scale).iloc[0])


def decide(challenger_version: str, points: pd.DataFrame, scale: pd.Series, windows: Windows, rule: GateRule,
           champion: Version | None = None, champion_points: pd.DataFrame | None = None,
           champion_trained_until: pd.Timestamp | None = None, challenger_model: str = NHITS_KIND) -> Decision:
    """The verdict on a challenger from its per-point forecasts and those of every baseline (``points``, model
    ``challenger_model``: ``nhits``, or ``ensemble`` for an ensemble version, and the baseline names) and, for an
    NHITS or ensemble champion, the champion's on the same windows
    (``champion_points``; a baseline champion's are in ``points`` already). Promoted only when the challenger's
    loss is lower than the best baseline's and the champion's, each with a one-sided DM p-value below ``alpha``.
    A comparison that cannot be made on identical windows is a refusal that says why."""
    from models.significance import WindowMismatch, dm_on_windows

    challenger = points[points["model"] == challenger_model]
    if challenger.empty:
        raise ValueError(f"no {challenger_model} forecasts for v{challenger_version}: the evaluation lacks the "
                         "challenger")
    score = float(scores(challenger, rule.metric, scale).iloc[0])
    best, best_score = best_baseline(points, rule.metric, scale)
    label = rule.label
    base = dict(version=str(challenger_version), challenger_mase=_mase(challenger, scale),
                best_baseline=best, best_baseline_mase=_mase(points[points["model"] == best], scale),
                metric=rule.metric, alpha=rule.alpha, challenger_score=score, best_baseline_score=best_score,
                champion_version=None if champion is None else str(champion.version),
                champion_kind=None if champion is None else champion.kind, champion_mase=None)

    def dm(other: pd.DataFrame):
        """The DM test against ``other``, or None with the reason when the windows are too few for it."""
        try:
            return dm_on_windows(challenger, other, metric=rule.metric, h=windows.h, step=windows.step,
                                 scale=scale), ""
        except WindowMismatch:
            raise
        except ValueError as exc:  # too few windows for the overlap lags: no evidence, so no promotion
            return None, str(exc)

    def p_text(result, why: str) -> str:
        return f"DM p = {result.p_value:.3g} >= {rule.alpha}" if result is not None else f"no DM test: {why}"

    vs_base, why = dm(points[points["model"] == best])
    n_points = int(np.isfinite(challenger["yhat"].to_numpy(float)).sum())
    base.update(p_value_baseline=None if vs_base is None else vs_base.p_value,
                n_windows=int(challenger["cutoff"].nunique()) if vs_base is None else vs_base.n_windows,
                n_points=n_points if vs_base is None else vs_base.n_points)
    failures, weak = [], []
    if not score < best_score:
        failures.append(f"{label} {score:.4g} does not beat baseline '{best}' ({best_score:.4g})")
    elif vs_base is None or not vs_base.p_value < rule.alpha:
        weak.append(f"not significantly better than baseline '{best}' ({label} {score:.4g} vs {best_score:.4g}, "
                    f"{p_text(vs_base, why)})")
    won = [f"baseline '{best}' ({best_score:.4g}, p = {base['p_value_baseline'] or float('nan'):.3g})"]
    if champion is not None and str(champion.version) != str(challenger_version):
        if champion.kind == BASELINE_KIND:
            champion_points = points[points["model"] == champion.baseline]
        first_cutoff = pd.Timestamp(challenger["cutoff"].min())
        if champion_trained_until is not None and pd.Timestamp(champion_trained_until) > first_cutoff:
            failures.append(f"cannot compare with champion v{champion.version} on these windows: it was trained on "
                            f"data up to {champion_trained_until}, after the first test cutoff {first_cutoff} (it "
                            "would be scored on its own training data)")
        elif champion_points is None or champion_points.empty:
            failures.append(f"champion v{champion.version} has no forecasts on these windows")
        else:
            try:
                vs_champ, why = dm(champion_points.assign(model="champion"))
            except WindowMismatch as exc:
                failures.append(f"cannot compare with champion v{champion.version} on the same windows: {exc}")
            else:
                champ_score = float(scores(champion_points, rule.metric, scale).iloc[0])
                p_champ = None if vs_champ is None else vs_champ.p_value
                base.update(champion_score=champ_score, p_value_champion=p_champ,
                            champion_mase=_mase(champion_points, scale))
                if not score < champ_score:
                    failures.append(f"{label} {score:.4g} does not beat champion v{champion.version} "
                                    f"({champ_score:.4g})")
                elif vs_champ is None or not p_champ < rule.alpha:
                    weak.append(f"not significantly better than champion v{champion.version} ({label} "
                                f"{score:.4g} vs {champ_score:.4g}, {p_text(vs_champ, why)})")
                won.append(f"champion v{champion.version} ({champ_score:.4g}, p = {p_champ or float('nan'):.3g})")
    where = f" on {base['n_windows']} windows ({base['n_points']} points)"
    reason = "; ".join(failures + weak) + where if failures or weak else (
        f"{label} {score:.4g} beats " + " and ".join(won) + where)
    return Decision(passed=not failures and not weak, reason=reason, not_significant=bool(weak and not failures),
                    **base)


def rescore(model: Any, frame: pd.DataFrame, windows: Windows) -> pd.DataFrame:
    """A stored NHITS's or ensemble's per-point forecasts on ``windows`` of ``frame`` (``unique_id, cutoff, ds,
    step, y, yhat, lo, hi``): the champion on the challenger's windows. ``model``: the stored forecaster
    (`storage.pyfunc.NHITSModel`: ``.nf`` and its own ``predict``, an ensemble's mix included)."""
    from models.evaluation import loaded_window_predictions, time_split

    split = time_split(frame, h=windows.h, n_windows=windows.n_windows, step_size=windows.step)
    preds = loaded_window_predictions(model.nf, split, predict=model.predict)
    return preds[preds["step"] <= windows.h]


def bootstrap_champion(points: pd.DataFrame, scale: pd.Series, rule: GateRule, *, h: int, input_size: int,
                       season_length: int, freq: str) -> BaselineChampion:
    """The best servable baseline on the first challenger's windows (by the gate's loss), as the champion to
    register while there is none (`SERVED_BASELINES`: the naive three and, for volatility, RiskMetrics EWMA).
    The other field baselines (HAR, fitted EWMA, GARCH, random walk with drift, statsforecast's) are judged, not
    served: a challenger must beat them all, but they do not hold the alias."""
    best, best_score = best_baseline(points, rule.metric, scale, SERVED_BASELINES)
    mine = points[points["model"] == best]
    params = {"name": best, "h": h, "input_size": input_size, "season_length": season_length, "freq": freq}
    reason = (f"no champion yet: baseline '{best}' ({rule.label} {best_score:.4g}) holds the alias (the best "
              f"servable baseline)")
    metrics = {m: float(scores(mine, m, scale).iloc[0]) for m in ("mase", "mae", "mse")}
    decision = Decision(True, reason, "", metrics["mase"], None, None, None, best, metrics["mase"],
                        metric=rule.metric, alpha=rule.alpha, challenger_score=best_score,
                        best_baseline_score=best_score, n_windows=int(mine["cutoff"].nunique()),
                        n_points=int(np.isfinite(mine["yhat"].to_numpy(float)).sum()))
    return BaselineChampion(best, params, metrics, decision)

