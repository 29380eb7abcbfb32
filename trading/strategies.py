"""Every strategy of a class on every forecast source, on the same test bars: the `signals` rows and the backtest.

Sources: ``champion`` (the registered champion's own rolling-origin forecasts), the naive baselines scored on the
same windows (``naive``, ``ewma``, ``window_mean``), and ``perfect_foresight`` (the realised values). The source
drives the forecast a strategy sizes or signs with: the volatility forecast of ``vol_target`` and
``vol_target_directional`` (whose sign stays the close champion's direction, so the rows isolate the worth of the
volatility forecast), the expected return of ``direction``. A source a version has no forecasts of (EWMA is a
volatility model) is left out and said so.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from domain.vocabulary import (
    BUY_AND_HOLD,
    CHAMPION_SOURCE,
    DIRECTION,
    PERFECT_FORESIGHT,
    SIGNAL_SOURCES,
    STRATEGIES,
    VOL_TARGET,
)
from trading import walkforward as wf
from trading.backtest import Pnl, portfolio_pnl, statistics
from trading.signals import SignalParams, position_paths, step_positions


@dataclasses.dataclass(frozen=True)
class ChampionForecasts:
    """The rolling-origin forecasts of a class's champions: every model scored on each version's windows
    (``model, unique_id, cutoff, ds, step, y, yhat``), and which model is the champion's own."""

    vol_points: pd.DataFrame
    vol_model: str
    close_points: pd.DataFrame | None = None
    close_model: str | None = None


@dataclasses.dataclass
class SignalSet:
    """Target positions per (strategy, source) and why a combination is missing."""

    rows: pd.DataFrame  # strategy, source, unique_id, ds, cutoff, vol_hat, mu, position
    notes: list[str]


def _model(points: pd.DataFrame, source: str, champion: str) -> pd.DataFrame | None:
    model = champion if source in (CHAMPION_SOURCE, PERFECT_FORESIGHT) else source
    rows = points[points["model"] == model]
    return None if rows.empty else rows


def _vol(fc: ChampionForecasts, source: str) -> pd.DataFrame | None:
    rows = _model(fc.vol_points, source, fc.vol_model)
    if rows is None:
        return None
    return wf.foresight_vol(rows) if source == PERFECT_FORESIGHT else wf.forecast_vol(rows)


def _mu(fc: ChampionForecasts, source: str, closes: pd.DataFrame) -> pd.DataFrame | None:
    if fc.close_points is None:
        return None
    rows = _model(fc.close_points, source, fc.close_model)
    if rows is None:
        return None
    mu = wf.expected_returns(rows, closes)
    return wf.foresight_returns(mu, closes) if source == PERFECT_FORESIGHT else mu


def build_signals(fc: ChampionForecasts, closes: pd.DataFrame, *, bars_per_year: int,
                  params: SignalParams) -> SignalSet:
    """Positions of every strategy on every source over the champions' test bars (``closes``: the class's close
    prices ``unique_id, ds, y``)."""
    frames, notes = [], []
    champion_mu = _mu(fc, CHAMPION_SOURCE, closes)
    for strategy in STRATEGIES:
        if strategy != VOL_TARGET and champion_mu is None:
            notes.append(f"{strategy}: no close champion with rolling-origin forecasts")
            continue
        for source in SIGNAL_SOURCES:
            if strategy == DIRECTION:
                inputs = _mu(fc, source, closes)
                inputs = None if inputs is None else wf.strategy_inputs(None, inputs)
            else:
                vol = _vol(fc, source)
                inputs = None if vol is None else wf.strategy_inputs(vol, None if strategy == VOL_TARGET
                                                                     else champion_mu)
            if inputs is None or inputs.empty:
                notes.append(f"{strategy} on {source}: the version has no {source} forecasts")
                continue
            paths = position_paths(inputs, strategy, bars_per_year=bars_per_year, params=params)
            frames.append(inputs.merge(paths, on=wf.KEY).assign(strategy=strategy, source=source))
    columns = ["strategy", "source", "unique_id", "ds", "cutoff", "vol_hat", "mu", "position"]
    rows = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    return SignalSet(rows=rows, notes=notes)


def next_bar(test_rows: pd.DataFrame, vol_ahead: pd.DataFrame, close_ahead: pd.DataFrame | None,
             closes: pd.DataFrame, *, bars_per_year: int, params: SignalParams) -> pd.DataFrame:
    """The champions' target positions for the bar after the data (from their current forecasts, ``unique_id, ds,
    step, yhat``: step 1 is the next bar), continuing each strategy's test path (its last position is the one held
    now). Same columns as `SignalSet.rows`, source ``champion``."""
    last = closes.sort_values(wf.KEY).groupby("unique_id").tail(1).set_index("unique_id")
    vol = vol_ahead[vol_ahead.step == 1].set_index("unique_id")
    symbols = vol.index.intersection(last.index)
    mu = pd.Series(float("nan"), index=symbols)
    if close_ahead is not None:
        ahead = close_ahead[close_ahead.step == 1].set_index("unique_id")["yhat"]
        mu = (ahead.reindex(symbols) / last.loc[symbols, "y"] - 1.0).astype(float)
    held = test_rows[test_rows.source == CHAMPION_SOURCE].sort_values("ds").groupby(["strategy", "unique_id"]).tail(1)
    frames = []
    for strategy in held.strategy.unique():
        previous = held[held.strategy == strategy].set_index("unique_id")["position"].reindex(symbols).fillna(0.0)
        position = step_positions(strategy, vol.loc[symbols, "yhat"].to_numpy(), mu.to_numpy(), previous.to_numpy(),
                                  bars_per_year=bars_per_year, params=params)
        frames.append(pd.DataFrame({
            "strategy": strategy, "source": CHAMPION_SOURCE, "unique_id": symbols.to_numpy(),
            "ds": vol.loc[symbols, "ds"].to_numpy(), "cutoff": last.loc[symbols, "ds"].to_numpy(),
            "vol_hat": vol.loc[symbols, "yhat"].to_numpy(), "mu": mu.to_numpy(), "position": position}))
    return pd.concat(frames, ignore_index=True) if frames else test_rows.iloc[:0]


def run_backtest(signals: pd.DataFrame, closes: pd.DataFrame, *, bars_per_year: int,
                 params: SignalParams) -> tuple[pd.DataFrame, dict[tuple[str, str], Pnl]]:
    """The backtest table (one row per strategy and source, plus buy-and-hold over the same bars) and each row's
    per-bar PnL."""
    returns = wf.realised_returns(closes)
    pnls: dict[tuple[str, str], Pnl] = {}
    for (strategy, source), rows in signals.groupby(["strategy", "source"], sort=False):
        pnls[(strategy, source)] = portfolio_pnl(rows[["unique_id", "ds", "position"]], returns, params.cost_rate)
    bars = signals[["unique_id", "ds"]].drop_duplicates()
    pnls[(BUY_AND_HOLD, BUY_AND_HOLD)] = portfolio_pnl(bars.assign(position=1.0), returns, params.cost_rate)
    table = pd.DataFrame([
        {"strategy": strategy, "source": source, **statistics(pnl, bars_per_year),
         "start_ds": pnl.bars.index.min(), "end_ds": pnl.bars.index.max(),
         "n_symbols": int(signals[(signals.strategy == strategy) & (signals.source == source)].unique_id.nunique()
                          if strategy != BUY_AND_HOLD else bars.unique_id.nunique())}
        for (strategy, source), pnl in pnls.items()])
    return table, pnls
