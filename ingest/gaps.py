"""How long a pause between two consecutive bars is still normal, per asset class and bar frequency: equities and
fx close at weekends and holidays, crypto trades around the clock. The `market_bars` gap check reads it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# the largest gap between consecutive bars that is still normal, per (asset class, freq)
MAX_GAP: dict[tuple[str, str], str] = {
    ("equities", "1d"): "5D", ("equities", "1h"): "4D", ("equities", "1min"): "4D", ("equities", "5min"): "4D",
    ("fx", "1d"): "5D", ("fx", "1h"): "4D", ("fx", "5min"): "4D", ("fx", "1min"): "4D",
    ("crypto", "1d"): "3D", ("crypto", "1h"): "12h", ("crypto", "5min"): "2h", ("crypto", "1min"): "1h",
}
_CRYPTO_GAP_BARS = 12  # crypto at any other frequency: up to 12 bars (at least an hour); equities/fx: 5 days


def max_gap(asset_class: str, freq: str) -> pd.Timedelta:
    """The largest normal gap between consecutive bars of `asset_class` at bar frequency `freq` (a Timedelta)."""
    import pandas as pd

    from ingest.catalog import freq_step

    if (asset_class, freq) in MAX_GAP:
        return pd.Timedelta(MAX_GAP[asset_class, freq])
    if asset_class == "crypto":
        return max(_CRYPTO_GAP_BARS * freq_step(freq), pd.Timedelta("1h"))
    return pd.Timedelta("5D")
