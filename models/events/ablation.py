"""Does news help? Plain NHITS against event-aware NHITS on the same windows, budget and seeds.

Ablation (:data:`models.events.spec.GROUPS`): ``none`` (plain NHITS), ``news`` (ticker + market-wide headline
features), ``fomc`` (policy surprise + scheduled meeting day), ``all``. Every variant of a data set trains the
same architecture for the same steps on the same training part with the same seeds, and is scored on the same
rolling test windows (:func:`models.evaluation.train_and_evaluate`), beside the naive baselines. Reported per
variant: MSE, MAE, MASE as mean and standard deviation over the seeds, and the paired change of MASE against
plain NHITS (same seed) with its spread; the news coverage of the data set (whole frame and test windows)
stands beside it. Data sets where news coverage is real: stocknet-88 tickers with their tweets (2014-2015),
DJIA with the r/worldnews headlines (market-wide, 2013-07..2016-07), S&P tickers with analyst-rating headlines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.configs import spec_for
from models.events.features import attach, event_features
from models.events.spec import FEATURE_COLUMNS, GROUPS, exog_columns
from models.frames import to_training_frame

SCHEMA = "tradecast.events-benchmark/1"
VARIANTS = ("none", "news", "fomc", "all")
METRICS = ("mse", "mae", "mase")


@dataclass(frozen=True)
class EventBenchConfig:
    seeds: tuple[int, ...] = (1, 2, 3)
    max_steps: int = 150
    h: int = 5  # a trading week
    input_size: int = 60
    n_windows: int = 12  # 12 windows of 5 days: the last 60 trading days
    mlp_units: tuple[tuple[int, ...], ...] = ((256, 256),) * 3
    learning_rate: float = 1e-3
    max_series: int = 6
    targets: tuple[str, ...] = ("volatility", "close")
    datasets: tuple[str, ...] = ("stocknet-tweets", "djia-reddit", "sp500-analyst")
    variants: tuple[str, ...] = VARIANTS


def _period(frame: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    return frame[(frame.ds >= pd.Timestamp(start)) & (frame.ds <= pd.Timestamp(end))]


def _common(frame: pd.DataFrame) -> pd.DataFrame:
    """Only the timestamps every series has (one grid: same windows for every series)."""
    n = frame.unique_id.nunique()
    keep = frame.groupby("ds").unique_id.transform("size") == n
    return frame[keep].sort_values(["unique_id", "ds"], ignore_index=True)


def _most_covered(bars: pd.DataFrame, news: pd.DataFrame, source: str, start: str, end: str, n: int) -> list[str]:
    """The ``n`` tickers with the most headlines of ``source`` in the period that have bars over all of it."""
    ev = news[(news.source == source) & news.symbol.notna()]
    ts = pd.to_datetime(ev.ts, utc=True)
    counts = ev[(ts >= pd.Timestamp(start, tz="UTC")) & (ts <= pd.Timestamp(end, tz="UTC"))].symbol.value_counts()
    daily = bars[(bars.freq == "1d") & bars.symbol.isin(counts.index)]
    span = daily.groupby("symbol").ts.agg(["min", "max"])
    full = span[(span["min"] <= pd.Timestamp(start, tz="UTC") + pd.Timedelta("7D"))
                & (span["max"] >= pd.Timestamp(end, tz="UTC") - pd.Timedelta("7D"))].index
    return [s for s in counts.index if s in set(full)][:n]


def planted_signal(macro: pd.DataFrame, n_series: int = 6, length: int = 500, seed: int = 0):
    """Positive control ``(frame, news)``: on 30 % of the bars one headline (15:00 UTC, sentiment U(-1, 1)); the
    next bar's y rises by 0.8 |sentiment| (and by 1.0 on scheduled FOMC days), over noise of sd 0.1. An
    event-aware model that can use its inputs must beat plain NHITS here."""
    from models.events.features import clean_macro, fomc_day

    rng = np.random.default_rng(seed)
    ds = pd.bdate_range("2014-01-01", periods=length)
    days = clean_macro(macro)[0]
    frames, events = [], []
    for i in range(n_series):
        hit = rng.random(length) < 0.3
        sent = np.where(hit, rng.uniform(-1, 1, length), 0.0)
        y = 1 + 0.1 * rng.standard_normal(length) + 0.8 * np.abs(np.roll(sent, 1)) + fomc_day(ds, days)
        frames.append(pd.DataFrame({"unique_id": f"P{i}", "ds": ds, "y": y}))
        events.append(pd.DataFrame({"ts": (ds[hit] + pd.Timedelta("15h")).tz_localize("UTC"), "symbol": f"P{i}",
                                    "sentiment": sent[hit], "source": "planted"}))
    return pd.concat(frames, ignore_index=True), pd.concat(events, ignore_index=True)


def dataset_frames(name: str, bars: pd.DataFrame, news: pd.DataFrame, target: str,
                   max_series: int) -> tuple[pd.DataFrame, str]:
    """``(frame, description)``: the long frame of one data set and target, on a common daily grid."""
    if name == "stocknet-tweets":
        start, end = "2014-01-01", "2015-12-31"
        symbols = _most_covered(bars, news, "stocknet_tweets", start, end, max_series)
        note = f"stocknet tickers with the most tweets ({', '.join(symbols)}), {start}..{end}"
    elif name == "djia-reddit":
        start, end, symbols = "2013-07-01", "2016-07-01", ["DJIA"]
        note = f"DJIA index with the daily r/worldnews headlines (market-wide), {start}..{end}"
    elif name == "sp500-analyst":
        start, end = "2013-02-08", "2018-02-07"
        symbols = _most_covered(bars, news, "analyst_ratings", start, end, max_series)
        note = f"S&P tickers with analyst-rating headlines ({', '.join(symbols)}), {start}..{end}"
    else:
        raise ValueError(f"unknown event data set {name!r}; known: {list(EventBenchConfig.datasets)}")
    if not symbols:
        raise ValueError(f"{name}: no symbol has bars and news in {start}..{end}: load equities and news first")
    part = bars[bars.symbol.isin(symbols) & (bars.asset_class == "equities")]
    frame = _common(_period(to_training_frame(part, "equities", target, min_length=1), start, end))
    frame.attrs["freq"] = "B"
    return frame, note


def coverage(frame: pd.DataFrame, since=None) -> dict[str, float]:
    part = frame if since is None else frame[frame.ds > since]
    ticker, market = part.news_logn_short > 0, part.mkt_logn_short > 0
    return {"ticker_news": round(float(ticker.mean()), 4), "market_news": round(float(market.mean()), 4),
            "any_news": round(float((ticker | market).mean()), 4),
            "fomc_days": int(part.ds[part.fomc_day > 0].nunique())}


def _summary(rows: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {"seeds": rows}
    for m in (*METRICS, "train_seconds"):
        vals = np.array([r[m] for r in rows], float)
        out[f"{m}_mean"] = float(vals.mean())
        out[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    return out


def run_event_ablation(bars: pd.DataFrame, news: pd.DataFrame, macro: pd.DataFrame,
                       config: EventBenchConfig = EventBenchConfig(), *, accelerator: str = "cpu",
                       log: Callable[[str], Any] = lambda _m: None) -> dict[str, Any]:
    """The whole ablation as a JSON-ready document (schema ``tradecast.events-benchmark/1``)."""
    from models.benchmark.runner import device_name, device_of
    from models.evaluation import train_and_evaluate

    for v in config.variants:
        exog_columns(v)
    hist_all, futr_all = GROUPS["all"]
    base = spec_for("equities", "quick", h=config.h, input_size=config.input_size, n_windows=config.n_windows,
                    max_steps=config.max_steps, val_size=0, val_check_steps=config.max_steps,
                    mlp_units=config.mlp_units, learning_rate=config.learning_rate)
    started, results = time.perf_counter(), []
    for name in config.datasets:
        for target in config.targets:
            events = news
            if name == "planted-signal":
                (frame, events), note = planted_signal(macro), "positive control: synthetic y driven by its news"
            else:
                frame, note = dataset_frames(name, bars, news, target, config.max_series)
            feats = event_features(frame, events, macro, "B").rename(columns={"unique_id": "symbol"})
            frame = attach(frame, feats, hist_all + futr_all)
            entry: dict[str, Any] = {"dataset": name, "note": note,
                                     "target": "synthetic y" if name == "planted-signal" else target,
                                     "n_series": int(frame.unique_id.nunique()),
                                     "first": str(frame.ds.min().date()), "last": str(frame.ds.max().date()),
                                     "variants": {}}
            for variant in config.variants:
                hist, futr = exog_columns(variant)
                rows = []
                for seed in config.seeds:
                    res = train_and_evaluate(frame, base.replace(seed=seed, hist_exog=hist, futr_exog=futr),
                                             accelerator=accelerator)
                    table = res.evaluation.set_index("model")
                    rows.append({"seed": seed, **{m: float(table.loc["nhits", m]) for m in METRICS},
                                 "train_seconds": round(res.train_seconds, 2)})
                    if "baselines" not in entry:
                        entry["baselines"] = {b: {m: float(table.loc[b, m]) for m in METRICS}
                                              for b in ("naive", "seasonal_naive", "window_mean")}
                        entry.update(train_end=str(res.train_end.date()),
                                     n_windows=int(table.loc["nhits", "n_windows"]),
                                     coverage={"frame": coverage(frame), "test": coverage(frame, res.train_end)})
                    log(f"{name} {target} {variant} seed {seed}: MASE {rows[-1]['mase']:.4f}")
                entry["variants"][variant] = _summary(rows)
            _paired(entry, config.seeds)
            results.append(entry)
    device = device_of(accelerator)
    return {"schema": SCHEMA, "created_at": pd.Timestamp.now(tz="UTC").isoformat(), "device": device,
            "device_name": device_name(device), "seconds": round(time.perf_counter() - started, 1),
            "budget": {"seeds": list(config.seeds), "max_steps": config.max_steps, "h": config.h,
                       "input_size": config.input_size, "n_windows": config.n_windows, "step_size": config.h,
                       "mlp_units": [list(u) for u in config.mlp_units], "learning_rate": config.learning_rate,
                       "loss": "mae", "windows_per_step": base.batch_size, "max_series": config.max_series},
            "features": {"hist": {v: list(GROUPS[v][0]) for v in config.variants},
                         "futr": {v: list(GROUPS[v][1]) for v in config.variants}, "all": FEATURE_COLUMNS},
            "results": results}


def _paired(entry: dict, seeds) -> None:
    """Per variant: MASE change against plain NHITS with the same seed (mean, std, relative %)."""
    plain = {r["seed"]: r["mase"] for r in entry["variants"].get("none", {}).get("seeds", [])}
    for variant, summ in entry["variants"].items():
        if variant == "none" or not plain:
            continue
        diffs = np.array([r["mase"] - plain[r["seed"]] for r in summ["seeds"]])
        summ["d_mase_mean"] = float(diffs.mean())
        summ["d_mase_std"] = float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0
        summ["d_mase_pct"] = float(100 * diffs.mean() / entry["variants"]["none"]["mase_mean"])
        summ["better_in_seeds"] = int((diffs < 0).sum())


def verdict(entry: dict) -> str:
    """One honest sentence per data set and target."""
    best = min((v for v in entry["variants"] if v != "none"), key=lambda v: entry["variants"][v]["mase_mean"],
               default=None)
    if best is None:
        return "plain NHITS only"
    s = entry["variants"][best]
    noise = 2 * s["d_mase_std"] / np.sqrt(len(s["seeds"]))
    if s["d_mase_mean"] < 0 and -s["d_mase_mean"] > noise and s["better_in_seeds"] == len(s["seeds"]):
        return f"'{best}' helps: MASE {s['d_mase_pct']:+.1f} % vs plain, better in every seed"
    if s["d_mase_mean"] < 0:
        return f"no clear gain: best '{best}' {s['d_mase_pct']:+.1f} % vs plain, within seed noise"
    return f"news/events do not help: every variant is worse than plain NHITS (best '{best}' {s['d_mase_pct']:+.1f} %)"


def to_markdown(doc: dict) -> str:
    b = doc["budget"]
    lines = [f"# Event-aware NHITS vs plain NHITS ({doc['device']}, {doc['device_name']})", "",
             f"{len(b['seeds'])} seeds {b['seeds']}, {b['max_steps']} steps, h={b['h']}, input {b['input_size']}, "
             f"{b['n_windows']} test windows (step {b['step_size']}), MLP {b['mlp_units'][0]} x3, lr "
             f"{b['learning_rate']}, MAE loss; whole run {doc['seconds']:.0f} s. Mean ± std over seeds; "
             "ΔMASE = paired change vs plain NHITS (same seed). Coverage = share of bars with news in the short "
             "window (whole frame / test windows).", ""]
    for e in doc["results"]:
        c, t = e["coverage"]["frame"], e["coverage"]["test"]
        lines += [f"## {e['dataset']} · {e['target']}", "",
                  f"{e['note']}; {e['n_series']} series, train to {e['train_end']}, {e['n_windows']} windows. "
                  f"Coverage: ticker news {c['ticker_news']:.0%} / {t['ticker_news']:.0%}, market-wide "
                  f"{c['market_news']:.0%} / {t['market_news']:.0%}, FOMC days in test {t['fomc_days']}.", "",
                  "| variant | MASE | MAE | MSE | ΔMASE vs plain | better in seeds |",
                  "|---|---:|---:|---:|---:|---:|"]
        for v, s in e["variants"].items():
            d = (f"{s['d_mase_mean']:+.4f} ± {s['d_mase_std']:.4f} ({s['d_mase_pct']:+.1f} %)"
                 if "d_mase_mean" in s else "")
            better = f"{s['better_in_seeds']}/{len(s['seeds'])}" if "better_in_seeds" in s else ""
            lines.append(f"| {v} | {s['mase_mean']:.4f} ± {s['mase_std']:.4f} | {s['mae_mean']:.5g} ± "
                         f"{s['mae_std']:.2g} | {s['mse_mean']:.5g} ± {s['mse_std']:.2g} | {d} | {better} |")
        for name, m in e["baselines"].items():
            lines.append(f"| {name} | {m['mase']:.4f} | {m['mae']:.5g} | {m['mse']:.5g} | | |")
        lines += ["", f"**Verdict:** {verdict(e)}.", ""]
    return "\n".join(lines)
