"""`tradecast quality`: the forecast-quality benchmark. Trains every (asset class, target) through Dagster
(`train_job`: NHITS, every baseline on the same rolling-origin windows, the DM-tested gate) and writes, from the
warehouse, `<out>/quality-<cpu|cuda>.json` (schema tradecast.quality/1) and `.md`: per partition every model's
MASE, QLIKE (volatility), CRPS and 80% coverage (probabilistic models), the windows and points, and the gate's
decision with its Diebold-Mariano p-values."""

from __future__ import annotations

import json
from pathlib import Path

import click

from domain.vocabulary import ASSET_CLASSES, TARGETS
from pipelines.cli.runner import ensure_bars, run_job

COLUMNS = ["model", "model_family", "mase", "qlike", "mae", "crps", "coverage_80", "interval_width", "n_series",
           "n_windows", "n_points", "p_vs_best_baseline"]


def p_values(query, scores):
    """``scores`` with ``p_vs_best_baseline``: for NHITS and the ensemble, the one-sided DM p-value (HLN) of their
    loss (QLIKE for volatility, MASE for close) against the best baseline's on the same windows, from the stored
    per-point forecasts (NaN for baselines, or with too few windows)."""
    import pandas as pd

    from models.promotion import GateRule, best_baseline
    from models.significance import dm_on_windows
    from storage.queries import evaluation_forecasts_of

    out = []
    for (name, version), part in scores.groupby(["model_name", "version"], sort=False):
        points, scale = evaluation_forecasts_of(query, name, version)
        metric = GateRule.for_target(part["target"].iloc[0]).metric
        best = points[points["model"] == best_baseline(points, metric, scale)[0]]
        first = part.iloc[0]
        p = {}
        for model in ("nhits", "ensemble"):
            mine = points[points["model"] == model]
            if len(mine):
                try:
                    p[model] = dm_on_windows(mine, best, metric=metric, h=int(first.h), step=int(first.step),
                                             scale=scale).p_value
                except ValueError:  # too few windows for the test
                    p[model] = float("nan")
        out.append(part.assign(p_vs_best_baseline=part["model"].map(p).astype(float)))
    return pd.concat(out, ignore_index=True) if out else scores.assign(p_vs_best_baseline=float("nan"))


def quality_tables(query) -> tuple:
    """(scores, decisions) of the newest evaluation and gate decision of every registered model."""
    scores = query("""
        WITH latest AS (SELECT model_name, max(evaluated_at) AS at FROM model_evaluations GROUP BY ALL)
        SELECT e.* FROM model_evaluations e JOIN latest l ON e.model_name = l.model_name AND e.evaluated_at = l.at
        ORDER BY e.asset_class, e.target, CASE WHEN e.target = 'volatility' THEN e.qlike ELSE e.mase END""", [])
    decisions = query("""
        SELECT asset_class, target, version, decision, metric, alpha, challenger_score, best_baseline,
               best_baseline_score, p_value_baseline, champion_version, champion_score, p_value_champion, n_windows,
               n_points, reason FROM model_promotions WHERE decision IN ('promoted', 'refused')
        QUALIFY row_number() OVER (PARTITION BY model_name ORDER BY decided_at DESC) = 1
        ORDER BY asset_class, target""", [])
    return scores, decisions


def to_markdown(scores, decisions, title: str) -> str:
    lines = [f"# {title}", ""]
    for (asset_class, target), part in scores.groupby(["asset_class", "target"], sort=False):
        gate = decisions[(decisions.asset_class == asset_class) & (decisions.target == target)]
        lines += [f"## {asset_class} | {target}", "", part[COLUMNS].round(4).to_markdown(index=False), ""]
        if len(gate):
            g = gate.iloc[0]
            lines += [f"Gate ({g.metric}, alpha {g.alpha}): **{g.decision}** v{g.version}: {g.reason}", ""]
    return "\n".join(lines)


@click.command()
@click.option("--profile", type=click.Choice(["quick", "full"]), default="quick", show_default=True,
              help="NHITS training budget (with --report-only: the profile the stored models were trained with, "
                   "for the file name).")
@click.option("--asset-class", "asset_classes", multiple=True, type=click.Choice(ASSET_CLASSES),
              help="Only these asset classes (default: all).")
@click.option("--out", type=click.Path(file_okay=False), default="benchmarks/results", show_default=True)
@click.option("--report-only", is_flag=True, help="Write the report from the warehouse as it is (e.g. after "
                                                   "`make run`), without training.")
def quality(profile: str, asset_classes: tuple[str, ...], out: str, report_only: bool) -> None:
    """Train and judge every (asset class, target); write the quality report."""
    import dagster as dg
    import pandas as pd
    import torch

    from resources import Settings, Warehouse

    wh = Warehouse(settings=Settings())
    for asset_class in () if report_only else asset_classes or ASSET_CLASSES:
        ensure_bars(wh, asset_class)
        for target in TARGETS:  # close first: GARCH on the volatility target reads the close frame's returns
            key = dg.MultiPartitionKey({"asset_class": asset_class, "target": target})
            click.echo(f"train_job [{asset_class}|{target}] ({profile}) ...")
            run_job("train_job", key, {"ops": {"nhits_model": {"config": {"profile": profile}}}})
    scores, decisions = quality_tables(wh.query)
    scores = p_values(wh.query, scores)
    # make quality (full) -> quality-<cpu|cuda>; the quick profile of make run -> quality-<cpu|cuda>-quick
    name = f"quality-{'cuda' if torch.cuda.is_available() else 'cpu'}{'' if profile == 'full' else '-quick'}"
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"schema": "tradecast.quality/1", "profile": profile, "report_only": report_only,
           "scores": json.loads(scores.to_json(orient="records", date_format="iso")),
           "decisions": json.loads(decisions.to_json(orient="records", date_format="iso"))}
    (folder / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    source = "the warehouse as stored (`tradecast quality --report-only`)" if report_only else (
        f"`tradecast quality --profile {profile}`")
    markdown = to_markdown(scores, decisions, "Forecast quality: every model on the same windows") + (
        f"\n\nWritten from {source} on {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC, "
        f"{'CUDA' if torch.cuda.is_available() else 'CPU'}. Gate: one-sided Diebold-Mariano test (HLN correction) of "
        "the challenger (NHITS, or its ensemble when that won on validation windows) against the best baseline and "
        "the champion on the per-origin mean loss; `p_vs_best_baseline`: the same test for NHITS and the ensemble.")
    (folder / f"{name}.md").write_text(markdown + "\n")
    click.echo(markdown)
    click.echo(f"\nwrote {folder / f'{name}.json'} and {folder / f'{name}.md'}")
