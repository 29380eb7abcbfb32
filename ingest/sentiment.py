"""Headline sentiment in [-1, 1]: VADER's compound score (a kept, lexicon-based library)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def score(texts: pd.Series) -> pd.Series:
    """Compound sentiment per text; missing text scores NaN (and fails validation)."""
    import pandas as pd

    polarity = _analyzer().polarity_scores
    return pd.Series([polarity(t)["compound"] if isinstance(t, str) else float("nan") for t in texts],
                     index=texts.index, dtype="float64")
