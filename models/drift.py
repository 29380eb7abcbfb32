"""Drift statistics (plain pandas / numpy / scipy): has the data moved away from what the champion learned on,
and do the champion's forecasts miss more than its test error promised?

* **Input drift**, per symbol and feature (``returns`` = log returns of the close, ``volatility`` = per-bar
  Garman-Klass volatility): the reference sample is the last ``window`` observations of the champion's
  training period (``ds <= train_end``; without a champion, the ``window`` observations before the recent
  ones), the current sample the most recent ``window`` observations after it. Statistics: the population
  stability index (PSI, deciles of the reference; > 0.25 is the usual "significant shift") and the
  two-sample Kolmogorov-Smirnov statistic (``scipy.stats.ks_2samp``).
* **Performance drift**: the champion's stored forecasts scored against the actuals that arrived since, as
  the ratio of realized MAE to the MAE the champion had on its test windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DRIFT_COLUMNS = ["asset_class", "symbol", "feature", "psi", "ks", "perf_ratio", "n_ref", "n_cur", "ref_end",
                 "drifted", "reason"]


@dataclass(frozen=True)
class Thresholds:
    psi: float = 0.25
    ks: float = 0.2
    perf_ratio: float = 1.5
    window: int = 500  # observations per sample (reference and current)
    min_points: int = 50  # fewer -> not tested
    min_share: float = 0.25  # share of tested (symbol, feature) pairs that must drift for the class to drift


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` on the reference's quantile bins."""
    reference, current = np.asarray(reference, float), np.asarray(current, float)
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 3:  # (nearly) constant reference: compare the share of values equal to it
        edges = np.array([-np.inf, edges[0], np.inf]) if len(edges) else np.array([-np.inf, np.inf])
    edges[0], edges[-1] = -np.inf, np.inf
    ref = np.histogram(reference, edges)[0] / len(reference)
    cur = np.histogram(current, edges)[0] / len(current)
    ref, cur = np.clip(ref, 1e-4, None), np.clip(cur, 1e-4, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def features(close_frame: pd.DataFrame, vol_frame: pd.DataFrame) -> pd.DataFrame:
    """Long ``unique_id, ds, feature, value`` from the close and volatility training frames."""
    close = close_frame.sort_values(["unique_id", "ds"])
    returns = close.assign(value=np.log(close["y"]).groupby(close["unique_id"]).diff()).dropna(subset=["value"])
    parts = [returns.assign(feature="returns")[["unique_id", "ds", "feature", "value"]],
             vol_frame.assign(feature="volatility", value=vol_frame["y"])[["unique_id", "ds", "feature", "value"]]]
    out = pd.concat(parts, ignore_index=True)
    return out[np.isfinite(out["value"])]


def input_drift(feats: pd.DataFrame, asset_class: str, ref_end: pd.Timestamp | None, th: Thresholds) -> pd.DataFrame:
    """One row per (symbol, feature) with PSI, KS and whether it drifted (``DRIFT_COLUMNS``)."""
    from scipy.stats import ks_2samp

    rows = []
    for (uid, feature), part in feats.sort_values("ds").groupby(["unique_id", "feature"], sort=True):
        values, ds = part["value"].to_numpy(), part["ds"].to_numpy()
        if ref_end is not None and (ds > np.datetime64(ref_end)).any():
            split = int(np.searchsorted(ds, np.datetime64(ref_end), side="right"))
            ref, cur = values[max(0, split - th.window):split], values[split:][-th.window:]
        else:  # no champion (or nothing new since it trained): the latest window against the one before it
            cur, ref = values[-th.window:], values[-2 * th.window:-th.window]
        row = {"asset_class": asset_class, "symbol": uid, "feature": feature, "psi": np.nan, "ks": np.nan,
               "perf_ratio": np.nan, "n_ref": len(ref), "n_cur": len(cur), "ref_end": ref_end, "drifted": False}
        if min(len(ref), len(cur)) < th.min_points:
            row["reason"] = f"not tested: {len(ref)} reference / {len(cur)} current points (< {th.min_points})"
        else:
            row["psi"], row["ks"] = psi(ref, cur), float(ks_2samp(ref, cur).statistic)
            row["drifted"] = bool(row["psi"] > th.psi or row["ks"] > th.ks)
            row["reason"] = (f"PSI {row['psi']:.3f} (> {th.psi})" if row["psi"] > th.psi else
                             f"KS {row['ks']:.3f} (> {th.ks})" if row["ks"] > th.ks else "stable")
        rows.append(row)
    return pd.DataFrame(rows, columns=DRIFT_COLUMNS)


def performance_drift(forecasts: pd.DataFrame, actuals: pd.DataFrame, test_mae: float | None, asset_class: str,
                      target: str, th: Thresholds) -> pd.DataFrame:
    """One row: realized MAE of stored forecasts (``symbol, ds, yhat``) on ``actuals`` (``unique_id, ds, y``)
    divided by the champion's test MAE."""
    joined = forecasts.merge(actuals.rename(columns={"unique_id": "symbol"}), on=["symbol", "ds"], how="inner")
    row = {"asset_class": asset_class, "symbol": "*", "feature": f"performance:{target}", "psi": np.nan,
           "ks": np.nan, "perf_ratio": np.nan, "n_ref": 0, "n_cur": len(joined), "ref_end": None, "drifted": False}
    if not test_mae or len(joined) < 1:
        row["reason"] = "not tested: no actuals for the stored forecasts yet" if test_mae else "no test error"
    else:
        row["perf_ratio"] = float(np.mean(np.abs(joined["y"] - joined["yhat"])) / test_mae)
        row["drifted"] = bool(row["perf_ratio"] > th.perf_ratio and len(joined) >= min(th.min_points, 10))
        row["reason"] = f"realized MAE {row['perf_ratio']:.2f}x the test MAE over {len(joined)} points"
    return pd.DataFrame([row], columns=DRIFT_COLUMNS)


def class_verdict(table: pd.DataFrame, th: Thresholds) -> tuple[bool, str]:
    """Whether the asset class drifted, and a sentence saying why (or why not)."""
    tested = table[~table["reason"].str.startswith("not tested")]
    perf = tested[tested["feature"].str.startswith("performance")]
    inputs = tested[~tested["feature"].str.startswith("performance")]
    share = float(inputs["drifted"].mean()) if len(inputs) else 0.0
    if perf["drifted"].any():
        return True, "; ".join(perf.loc[perf["drifted"], "reason"])
    if len(inputs) and share >= th.min_share:
        worst = inputs.sort_values("psi", ascending=False).iloc[0]
        return True, (f"{int(inputs['drifted'].sum())} of {len(inputs)} symbol features drifted "
                      f"(worst {worst['symbol']} {worst['feature']}: PSI {worst['psi']:.3f}, KS {worst['ks']:.3f})")
    if not len(inputs):
        return False, "nothing to test yet (too few points)"
    return False, (f"{int(inputs['drifted'].sum())} of {len(inputs)} symbol features drifted "
                   f"(< {th.min_share:.0%}); max PSI {inputs['psi'].max():.3f}, max KS {inputs['ks'].max():.3f}")
