"""From forecasts to target positions: volatility targeting and a direction signal with a no-trade band.

One rule serves the backtest and the live service: :func:`step_positions` maps one bar's forecasts of many symbols
(the volatility forecast of the bar ahead and the close model's expected return over it) and the current positions
to the target positions. The backtest (:func:`position_paths`) walks it bar by bar over the test period, the forecast
service calls it once per tick for every symbol at once.

* ``vol_target``: long-only, position = target annualised vol / forecast annualised vol, capped at the leverage cap
  (Moreira & Muir 2017, "Volatility-Managed Portfolios");
* ``vol_target_directional``: the same size, long until the close model's expected return clears the no-trade band
  downwards (then short, until it clears it upwards): a close model with no view (the last value) leaves it long;
* ``direction``: +1 / -1 by the sign of the expected return, only when it clears the no-trade band (a round trip's
  cost times ``band_multiple``); inside the band the position keeps its sign (no trade on noise).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from domain.vocabulary import DIRECTION, STRATEGIES, VOL_TARGET, VOL_TARGET_DIRECTIONAL, check_member


@dataclasses.dataclass(frozen=True)
class SignalParams:
    """Strategy parameters (the `signals` asset's SignalConfig and the service's decisions read the same)."""

    target_vol: float = 0.10  # annualised
    leverage_cap: float = 2.0  # largest |position| (1 = fully invested, no borrowing)
    cost_bps: float = 1.0  # commission per unit of turnover (|change of position|), in basis points
    slippage_bps: float = 1.0  # half-spread and impact per unit of turnover, in basis points
    band_multiple: float = 1.0  # the no-trade band, in round trips' costs: |expected return| must exceed it

    def __post_init__(self) -> None:
        for name in ("target_vol", "leverage_cap"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number (got {value!r})")
        for name in ("cost_bps", "slippage_bps", "band_multiple"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0 (got {value!r})")

    @property
    def cost_rate(self) -> float:
        """Cost per unit of turnover as a fraction: (commission + slippage) bps / 10^4."""
        return (self.cost_bps + self.slippage_bps) / 1e4

    @property
    def band(self) -> float:
        """The no-trade band on the expected return of the bar ahead: ``band_multiple`` round trips' costs."""
        return 2.0 * self.cost_rate * self.band_multiple


def vol_target_size(vol_hat: np.ndarray, bars_per_year: int, params: SignalParams) -> np.ndarray:
    """|position| that targets ``params.target_vol``: target / (per-bar vol forecast x sqrt(bars per year)), capped;
    0 where the forecast is missing or not positive (no forecast, no position)."""
    vol = np.asarray(vol_hat, dtype=float) * math.sqrt(bars_per_year)
    ok = np.isfinite(vol) & (vol > 0)
    return np.where(ok, np.minimum(params.target_vol / np.where(ok, vol, 1.0), params.leverage_cap), 0.0)


def direction_sign(mu: np.ndarray, previous: np.ndarray, params: SignalParams) -> np.ndarray:
    """+1 / -1 by the sign of the expected return ``mu`` where it clears the band, else the sign of ``previous``."""
    mu = np.asarray(mu, dtype=float)
    held = np.sign(np.nan_to_num(np.asarray(previous, dtype=float)))
    return np.where(np.isfinite(mu) & (np.abs(mu) > params.band), np.sign(np.nan_to_num(mu)), held)


def step_positions(strategy: str, vol_hat: np.ndarray, mu: np.ndarray, previous: np.ndarray, *,
                   bars_per_year: int, params: SignalParams) -> np.ndarray:
    """Target positions of many symbols for the bar ahead (arrays aligned by symbol)."""
    check_member("strategy", strategy, STRATEGIES)
    if strategy == VOL_TARGET:
        return vol_target_size(vol_hat, bars_per_year, params)
    if strategy == VOL_TARGET_DIRECTIONAL:
        held = np.asarray(previous, dtype=float)
        held = np.where(np.nan_to_num(held) == 0, 1.0, held)  # flat (the first bar) counts as long
        return direction_sign(mu, held, params) * vol_target_size(vol_hat, bars_per_year, params)
    sign = direction_sign(mu, previous, params)
    assert strategy == DIRECTION
    return sign


def position_paths(inputs: pd.DataFrame, strategy: str, *, bars_per_year: int, params: SignalParams) -> pd.DataFrame:
    """Target positions per symbol and bar from the walk-forward ``inputs`` (``unique_id, ds, vol_hat, mu``: the
    forecasts of bar ``ds`` made at an origin before it), bar by bar with :func:`step_positions` (the first
    bar starts flat). Returns ``unique_id, ds, position``."""
    vol = inputs.pivot(index="ds", columns="unique_id", values="vol_hat").sort_index()
    mu = inputs.pivot(index="ds", columns="unique_id", values="mu").reindex(index=vol.index, columns=vol.columns)
    out = np.zeros(vol.shape)
    previous = np.zeros(vol.shape[1])
    for i in range(len(vol)):
        previous = step_positions(strategy, vol.to_numpy()[i], mu.to_numpy()[i], previous,
                                  bars_per_year=bars_per_year, params=params)
        out[i] = previous
    frame = pd.DataFrame(out, index=vol.index, columns=vol.columns)
    return frame.rename_axis(columns="unique_id").stack().rename("position").reset_index()[
        ["unique_id", "ds", "position"]]
