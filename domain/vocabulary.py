"""tradecast's vocabulary: the one place asset classes, targets, frequencies, baseline and model names, model
kinds, registry aliases and the registered-model naming rule are defined. Every room imports them from here.

Plain Python with no third-party import: the serving process, the CLI's option lists and the Dagster code
location all read it at import time."""

from __future__ import annotations

ASSET_CLASSES: tuple[str, ...] = ("equities", "crypto", "fx")
CLOSE, VOLATILITY = "close", "volatility"  # the price path and per-bar volatility: both first-class
TARGETS: tuple[str, ...] = (CLOSE, VOLATILITY)

# neuralforecast's frequency of each class's models: crypto trades 24/7 on a regular 5-minute grid; equities and fx
# have daily bars Monday-Friday only, so 'B' (business day; "30 steps ahead" = 30 trading days, see
# models.frames.class_freq)
CLASS_FREQ: dict[str, str] = {"crypto": "5min", "equities": "B", "fx": "B"}
DAILY_BAR_FREQ = "1d"  # the stored label of daily bars (bars.freq)
CLASS_BAR_FREQ: dict[str, str] = {"crypto": "5min", "equities": DAILY_BAR_FREQ, "fx": DAILY_BAR_FREQ}

# the naive forecasts every model is judged against (models.baselines), in report order
BASELINES: tuple[str, ...] = ("naive", "seasonal_naive", "window_mean")
# the field's baselines per target, judged on the same windows as NHITS: volatility forecasters (models.volatility:
# HAR, EWMA, GARCH) and the random walk with drift for prices (models.random_walk)
VOLATILITY_BASELINES: tuple[str, ...] = ("har", "ewma", "ewma_fitted", "garch")
# Nixtla statsforecast's models (models.statistical), the statistical peer of neuralforecast, for prices
STATISTICAL_BASELINES: tuple[str, ...] = ("auto_ets", "auto_theta", "auto_arima")
RANDOM_WALK_BASELINES: tuple[str, ...] = ("rw_drift",)  # models.random_walk
PRICE_BASELINES: tuple[str, ...] = (*RANDOM_WALK_BASELINES, *STATISTICAL_BASELINES)
# the baselines the forecast service runs as ONNX graphs (serving.graph.BaselineGraph): any of them can be champion
SERVED_BASELINES: tuple[str, ...] = (*BASELINES, "ewma")
# the neural models of the benchmark comparison (models.benchmark)
BENCHMARK_MODELS: tuple[str, ...] = ("nhits", "patchtst", "itransformer", "timesnet", "tide")

# what a registered version holds (MLflow tag `model_kind`)
NHITS_KIND, BASELINE_KIND, ENSEMBLE_KIND = "nhits", "baseline", "ensemble"  # ensemble: NHITS + a served baseline

# registry aliases: the gate moves `champion`; the service's A/B arm is `challenger`, its backup `previous_champion`
CHAMPION, CHALLENGER, PREVIOUS_CHAMPION = "champion", "challenger", "previous_champion"
SERVED_ALIASES: tuple[str, ...] = (CHAMPION, CHALLENGER, PREVIOUS_CHAMPION)


def model_name(asset_class: str, target: str) -> str:
    """The registered MLflow model of one (asset class, target): ``nhits-<asset_class>-<target>``."""
    return f"nhits-{asset_class}-{target}"


def check_member(kind: str, value: str, allowed: tuple[str, ...] | dict) -> str:
    """``value`` if it is one of ``allowed``, else a ValueError naming the field and the allowed values."""
    if value not in allowed:
        raise ValueError(f"{kind} must be one of {sorted(allowed)} (got {value!r})")
    return value


# trading (trading/): the strategies `signals` computes and `backtest_report` judges, from the champion's forecasts
# (volatility targeting, long-only or signed by the close model's direction; the close model's direction alone)
VOL_TARGET, VOL_TARGET_DIRECTIONAL, DIRECTION = "vol_target", "vol_target_directional", "direction"
STRATEGIES: tuple[str, ...] = (VOL_TARGET, VOL_TARGET_DIRECTIONAL, DIRECTION)
# what drives a strategy in the backtest: the champion's rolling-origin forecasts, the same strategy on the naive
# baselines' forecasts of the same windows, and perfect foresight of the realised values (an upper bound)
CHAMPION_SOURCE, PERFECT_FORESIGHT = "champion", "perfect_foresight"
SIGNAL_SOURCES: tuple[str, ...] = (CHAMPION_SOURCE, "naive", "ewma", "window_mean", PERFECT_FORESIGHT)
BUY_AND_HOLD = "buy_and_hold"  # the benchmark every strategy stands beside
# bars per year of each class's model frequency (annualising vol, Sharpe and turnover): crypto trades 24/7 on 5-min
# bars; equities and fx on business days (252 exchange days; fx trades ~260 weekdays)
BARS_PER_YEAR: dict[str, int] = {"crypto": 288 * 365, "equities": 252, "fx": 260}
