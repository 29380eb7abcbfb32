"""A benchmark's results in two short forms: the flat metrics an MLflow run records, and the one-line answer to
"does NHITS beat the last value?"."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

RUN_METRICS = ("mse", "mae", "mase")


def run_metrics(results: pd.DataFrame) -> dict[str, float]:
    """``<dataset>.<model>.<metric>`` for MSE, MAE and MASE of every row, and ``.train_seconds`` of the neural ones."""
    metrics = {f"{r.dataset}.{r.model}.{m}": getattr(r, m) for r in results.itertuples() for m in RUN_METRICS}
    metrics |= {f"{r.dataset}.{r.model}.train_seconds": r.train_seconds for r in results.itertuples()
                if r.kind == "neural"}
    return metrics


def nhits_wins(results: pd.DataFrame) -> str:
    """On how many data sets NHITS's MASE is below the naive forecast's on the same windows."""
    nhits = results[results["model"] == "nhits"]
    won = int((nhits["mase"] < nhits["naive_mase_same_windows"]).sum())
    return f"{won} of {len(nhits)} data sets (MASE below the last value's)"
