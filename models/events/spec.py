"""Names, windows and groups of the event features (pure Python: cheap to import from Dagster and the store).

See :mod:`models.events.features` for what each feature means and the no-look-ahead rule.
"""

from __future__ import annotations

from dataclasses import dataclass

NEWS_COLUMNS = [  # per-ticker headlines and tweets (historical exogenous)
    "news_logn_short", "news_logn_long", "news_sent_mean_short", "news_sent_mean_long",
    "news_sent_min_short", "news_sent_min_long", "news_sent_max_short", "news_sent_max_long", "news_age"]
MARKET_COLUMNS = [  # market-wide headlines, joined to every symbol (historical exogenous)
    "mkt_logn_short", "mkt_logn_long", "mkt_sent_mean_short", "mkt_sent_mean_long"]
FOMC_HIST_COLUMNS = ["fomc_surprise"]  # known only after the statement
FOMC_FUTR_COLUMNS = ["fomc_day"]  # scheduled meetings are known in advance
FEATURE_COLUMNS = [*NEWS_COLUMNS, *MARKET_COLUMNS, *FOMC_HIST_COLUMNS, *FOMC_FUTR_COLUMNS]
# neutral value of each feature (a symbol or bar without any event): 0, and news_age at its cap (scaled to 1)
NEUTRAL = {c: (1.0 if c == "news_age" else 0.0) for c in FEATURE_COLUMNS}

# ablation groups: (historical exogenous, future exogenous)
GROUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "none": ((), ()),
    "news": ((*NEWS_COLUMNS, *MARKET_COLUMNS), ()),
    "fomc": ((*FOMC_HIST_COLUMNS,), (*FOMC_FUTR_COLUMNS,)),
    "all": ((*NEWS_COLUMNS, *MARKET_COLUMNS, *FOMC_HIST_COLUMNS), (*FOMC_FUTR_COLUMNS,)),
}


def exog_columns(group: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(hist_exog, futr_exog)`` of an ablation group: none | news | fomc | all."""
    if group not in GROUPS:
        raise ValueError(f"event group must be one of {sorted(GROUPS)} (got {group!r})")
    return GROUPS[group]


@dataclass(frozen=True)
class Calendar:
    """How bars of one frequency map to time: a bar stamped ``ts`` covers ``[ts, ts + bar)``; windows count
    ``step``s back on the model's calendar ('B' = business days, else a fixed duration)."""

    freq: str
    step: str  # 'B', 'D' or a pandas Timedelta string
    bar: str  # bar length (pandas Timedelta string)
    short: int  # steps in the short window
    long: int  # steps in the long window
    age_cap: int  # news_age is capped at this many bars

    def __post_init__(self) -> None:
        if not (isinstance(self.short, int) and isinstance(self.long, int) and 1 <= self.short <= self.long):
            raise ValueError(f"event windows need 1 <= short <= long (got short={self.short}, long={self.long})")


# per training-frame frequency: (step, bar, short, long, age cap in bars)
_CALENDARS = {
    "B": ("B", "1D", 1, 5, 30),  # equities/fx daily: the day, and the trading week
    "D": ("D", "1D", 1, 7, 30),  # calendar-day bars (crypto daily)
    "h": ("1h", "1h", 1, 24, 24 * 7),  # hourly: the hour, and the day
    "5min": ("5min", "5min", 12, 288, 288 * 7),  # crypto 5-minute: the hour, and the day
    "min": ("1min", "1min", 60, 1440, 1440 * 7),
}
_ALIASES = {"1d": "B", "1h": "h", "H": "h", "1min": "min", "T": "min"}


def calendar_for(freq: str, short: int | None = None, long: int | None = None) -> Calendar:
    """The calendar and default windows for a training-frame frequency ('B', 'D', 'h', '5min', 'min')."""
    key = _ALIASES.get(freq, freq)
    if key not in _CALENDARS:
        raise ValueError(f"no event calendar for freq {freq!r}; known: {sorted(_CALENDARS)}")
    step, bar, short_default, long_default, cap = _CALENDARS[key]
    return Calendar(key, step, bar, short or short_default, long or long_default, cap)
