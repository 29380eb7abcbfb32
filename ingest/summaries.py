"""What a load of the event tables holds, summarized for the asset pages: news events per source with their
sentiment, and macro events per type. Plain pandas on the accepted rows (`ingest.validate.Split.accepted`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import pandas as pd

NEUTRAL_SENTIMENT = 0.05  # VADER's convention: a compound score within +-0.05 is neutral


class NewsSummary(NamedTuple):
    by_source: pd.DataFrame  # source, events, symbols, first_ts, last_ts, mean_sentiment
    share_positive: float  # of the events, compound > NEUTRAL_SENTIMENT (0.0 without events)
    share_negative: float  # compound < -NEUTRAL_SENTIMENT


def news_summary(accepted: pd.DataFrame) -> NewsSummary:
    """Events, distinct symbols, time span and mean sentiment per source; the shares of positive and negative
    events overall."""
    by_source = (accepted.groupby("source")
                 .agg(events=("headline", "size"), symbols=("symbol", "nunique"), first_ts=("ts", "min"),
                      last_ts=("ts", "max"), mean_sentiment=("sentiment", "mean")).reset_index())
    if not len(accepted):
        return NewsSummary(by_source, 0.0, 0.0)
    return NewsSummary(by_source, float((accepted.sentiment > NEUTRAL_SENTIMENT).mean()),
                       float((accepted.sentiment < -NEUTRAL_SENTIMENT).mean()))


def macro_by_type(accepted: pd.DataFrame) -> pd.DataFrame:
    """Per event type: events, first and last, and how many have a known policy surprise."""
    return (accepted.groupby("event_type")
            .agg(events=("ts", "size"), first=("ts", "min"), last=("ts", "max"),
                 with_surprise=("policy_surprise", "count")).reset_index())
