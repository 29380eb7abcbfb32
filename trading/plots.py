"""PNG plots of the trading assets: equity curves with drawdowns (backtest_report), positions (signals)."""

from __future__ import annotations

import pandas as pd

from domain.vocabulary import BUY_AND_HOLD, CHAMPION_SOURCE, PERFECT_FORESIGHT
from trading.backtest import Pnl, drawdown, equity_curve


def _shown(key: tuple[str, str]) -> bool:
    """The curves a reader compares: every strategy on the champion, its perfect-foresight bound, buy-and-hold."""
    return key[1] in (CHAMPION_SOURCE, PERFECT_FORESIGHT, BUY_AND_HOLD) and not (
        key[1] == PERFECT_FORESIGHT and key[0] == "direction")  # knowing each bar's return: off any useful scale


def plot_equity(pnls: dict[tuple[str, str], Pnl], *, title: str = "") -> bytes:
    """Growth of 1 after costs (top) and drawdown (bottom) per strategy and source."""
    from models.plots import _figure, _png

    fig = _figure(figsize=(10, 6))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for key, pnl in pnls.items():
        if not _shown(key):
            continue
        label = BUY_AND_HOLD if key[0] == BUY_AND_HOLD else f"{key[0]} ({key[1]})"
        style = {"color": "black", "linewidth": 2} if key[0] == BUY_AND_HOLD else {
            "linestyle": ":" if key[1] == PERFECT_FORESIGHT else "-"}
        top.plot(equity_curve(pnl).index, equity_curve(pnl).to_numpy(), label=label, **style)
        bottom.plot(drawdown(pnl).index, drawdown(pnl).to_numpy(), **style)
    top.set_ylabel("growth of 1, after costs")
    top.legend(fontsize=7, ncol=2)
    top.set_title(title)
    bottom.set_ylabel("drawdown")
    return _png(fig)


def plot_positions(rows: pd.DataFrame, symbols: list[str], *, title: str = "") -> bytes:
    """Target positions over the test bars for a few symbols, one panel per strategy (champion source)."""
    from models.plots import _figure, _png

    strategies = list(dict.fromkeys(rows["strategy"]))
    fig = _figure(figsize=(10, 2.2 * max(len(strategies), 1)))
    axes = fig.subplots(max(len(strategies), 1), 1, sharex=True, squeeze=False)[:, 0]
    for ax, strategy in zip(axes, strategies, strict=False):
        own = rows[(rows.strategy == strategy) & (rows.source == CHAMPION_SOURCE)]
        for symbol in symbols:
            series = own[own.unique_id == symbol].sort_values("ds")
            ax.step(series["ds"], series["position"], where="post", label=symbol)
        ax.set_ylabel(strategy, fontsize=8)
        ax.axhline(0, color="grey", linewidth=0.5)
    axes[0].legend(fontsize=7)
    axes[0].set_title(title)
    return _png(fig)
