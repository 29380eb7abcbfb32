"""The walk-forward backtest: PnL of target positions after costs, and its statistics.

The portfolio holds every symbol of a class in an equal sleeve (1/N of capital), rebalanced to the target position
at each bar's close: the return of bar t is ``sum_i w_i,t r_i,t / N``; trading from ``w_i,t-1`` to ``w_i,t`` costs
``(commission + slippage) x |w_i,t - w_i,t-1| / N`` (turnover in units of capital), so costs reduce a bar's return
by exactly turnover x bps. The book starts flat, so the first bar pays for entering. A position may exceed 1
(leverage up to the strategy's cap: borrowed at no charge here, stated as a limit).

The statistics are empyrical's (empyrical-reloaded, the maintained standard of zipline / pyfolio): annualised return
and volatility, Sharpe (no risk-free rate), Sortino, max drawdown; plus turnover per year, hit rate (share of held
symbol-bars that earned a positive return) and the annual return the costs took.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

KEY = ["unique_id", "ds"]


@dataclasses.dataclass(frozen=True)
class Pnl:
    """Per bar: gross and net portfolio return, turnover, cost, and the per-symbol held returns for the hit rate."""

    bars: pd.DataFrame  # index ds: gross, cost, net, turnover, exposure
    held: np.ndarray  # w_i,t * r_i,t of the symbol-bars with a position (hit rate)

    @property
    def net(self) -> pd.Series:
        return self.bars["net"]


def portfolio_pnl(positions: pd.DataFrame, returns: pd.DataFrame, cost_rate: float) -> Pnl:
    """PnL of ``positions`` (``unique_id, ds, position``: held over bar ds) on ``returns`` (``unique_id, ds, ret``)
    at ``cost_rate`` per unit turnover. Bars are those of the positions; a symbol without a return there earns 0."""
    w = positions.pivot(index="ds", columns="unique_id", values="position").sort_index().fillna(0.0)
    r = returns.pivot(index="ds", columns="unique_id", values="ret").reindex(index=w.index, columns=w.columns)
    r = r.fillna(0.0)
    n = w.shape[1]
    trades = w.diff().fillna(w).abs()  # from flat into the first bar's position
    gross = (w * r).sum(axis=1) / n
    turnover = trades.sum(axis=1) / n
    cost = cost_rate * turnover
    bars = pd.DataFrame({"gross": gross, "cost": cost, "net": gross - cost, "turnover": turnover,
                         "exposure": w.abs().sum(axis=1) / n})
    held = (w * r).to_numpy()[w.to_numpy() != 0]
    return Pnl(bars=bars, held=held)


def statistics(pnl: Pnl, bars_per_year: int) -> dict[str, float]:
    """The backtest table's row of one strategy: annualised figures at ``bars_per_year``."""
    import empyrical as ep

    net, gross = pnl.net, pnl.bars["gross"]
    flat = bool((net == 0).all())
    return {
        "ann_return": float(ep.annual_return(net, annualization=bars_per_year)),
        "ann_vol": float(ep.annual_volatility(net, annualization=bars_per_year)),
        "sharpe": float("nan") if flat else float(ep.sharpe_ratio(net, annualization=bars_per_year)),
        "sortino": float("nan") if flat else float(ep.sortino_ratio(net, annualization=bars_per_year)),
        "max_drawdown": float(ep.max_drawdown(net)),
        "turnover": float(pnl.bars["turnover"].mean() * bars_per_year),
        "hit_rate": float((pnl.held > 0).mean()) if pnl.held.size else float("nan"),
        "total_return": float(ep.cum_returns_final(net)),
        "cost_drag": float(ep.annual_return(gross, annualization=bars_per_year)
                           - ep.annual_return(net, annualization=bars_per_year)),
        "n_bars": len(net),
    }


def equity_curve(pnl: Pnl) -> pd.Series:
    """Growth of 1 after costs, bar by bar."""
    return (1.0 + pnl.net).cumprod()


def drawdown(pnl: Pnl) -> pd.Series:
    """Distance below the running peak of the equity curve (0 at a new high, negative below it)."""
    curve = equity_curve(pnl)
    return curve / curve.cummax() - 1.0
