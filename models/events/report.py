"""How much of a bar grid the news actually covers (overall, per source, per symbol), and a plot of it.

A bar is *covered* when its short window (:mod:`models.events.features`) holds at least one headline: its own symbol's
(ticker news) or a market-wide one. Coverage is reported beside every event-aware result: a feature that is
0 on 99 % of the bars cannot help much, whatever the model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.events.features import clean_news, to_utc_naive, window_bounds
from models.events.spec import calendar_for


def coverage_summary(features: pd.DataFrame) -> dict[str, float | int]:
    """Bars, symbols and the shares of bars with ticker news, market-wide news and any news."""
    ticker, market = features["news_logn_short"] > 0, features["mkt_logn_short"] > 0
    return {"bars": int(len(features)), "symbols": int(features["unique_id"].nunique()),
            "symbols_with_news": int(features.loc[ticker, "unique_id"].nunique()),
            "share_ticker_news": float(ticker.mean()) if len(features) else 0.0,
            "share_market_news": float(market.mean()) if len(features) else 0.0,
            "share_any_news": float((ticker | market).mean()) if len(features) else 0.0}


def coverage_by_source(grid: pd.DataFrame, news: pd.DataFrame, freq: str, *, short: int | None = None,
                       long: int | None = None) -> pd.DataFrame:
    """Per news source: its scope, the grid symbols it covers and the share of the grid's bars it covers."""
    cal = calendar_for(freq, short, long)
    ev = clean_news(news)
    ds = to_utc_naive(grid["ds"], "grid")
    origin, lo_s, _ = window_bounds(ds, cal)
    uid = grid["unique_id"].to_numpy()
    rows = []
    for source, part in ev.groupby("source", sort=True):
        covered = np.zeros(len(grid), bool)
        market = part[part["symbol"].isna()]
        if len(market):
            t = market["t"].to_numpy()
            covered |= np.searchsorted(t, origin) > np.searchsorted(t, lo_s)
        for symbol, own in part[part["symbol"].notna()].groupby("symbol"):
            rows_of = np.flatnonzero(uid == symbol)
            if len(rows_of):
                t = own["t"].to_numpy()
                covered[rows_of] |= np.searchsorted(t, origin[rows_of]) > np.searchsorted(t, lo_s[rows_of])
        symbols = pd.unique(uid[covered])
        of_symbols = np.isin(uid, symbols)
        scope = "market-wide" if len(market) == len(part) else "ticker" if market.empty else "mixed"
        rows.append({"source": source, "scope": scope,
                     "events": len(part), "symbols_covered": len(symbols), "bars_covered": int(covered.sum()),
                     "share_of_all_bars": float(covered.mean()) if len(grid) else 0.0,
                     "share_of_their_symbols_bars": float(covered[of_symbols].mean()) if of_symbols.any() else 0.0})
    return pd.DataFrame(rows, columns=["source", "scope", "events", "symbols_covered", "bars_covered",
                                       "share_of_all_bars", "share_of_their_symbols_bars"])


def coverage_by_symbol(features: pd.DataFrame, top: int = 20) -> pd.DataFrame:
    """Per symbol: bars, bars with its own news in the short window, that share (best covered first)."""
    has = features.assign(news=features["news_logn_short"] > 0)
    table = has.groupby("unique_id").agg(bars=("news", "size"), bars_with_news=("news", "sum"),
                                          first=("ds", "min"), last=("ds", "max")).reset_index()
    table["share"] = (table["bars_with_news"] / table["bars"]).round(4)
    table["first"], table["last"] = table["first"].dt.date.astype(str), table["last"].dt.date.astype(str)
    table = table.sort_values(["share", "unique_id"], ascending=[False, True], kind="stable")
    return table.rename(columns={"unique_id": "symbol"}).head(top).reset_index(drop=True)


def plot_coverage(features: pd.DataFrame, *, title: str = "") -> bytes:
    """PNG: share of bars with ticker news and with market-wide news, per month."""
    from models.plots import _figure, _png

    month = pd.DatetimeIndex(features["ds"]).to_period("M").to_timestamp()
    monthly = pd.DataFrame({"ticker news": features["news_logn_short"].to_numpy() > 0,
                            "market-wide news": features["mkt_logn_short"].to_numpy() > 0,
                            "month": month}).groupby("month").mean()
    fig = _figure(figsize=(9, 3))
    ax = fig.add_subplot(1, 1, 1)
    for col in monthly.columns:
        ax.plot(monthly.index, monthly[col], label=col)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("share of bars")
    ax.set_title(title or "news coverage per month")
    ax.legend(loc="upper left")
    return _png(fig)
