"""A/B traffic split between the champion and the challenger.

``mode='symbol'``: a symbol always goes to the same arm (a stable hash of seed and symbol, the same in every
process), so each arm's live error is measured on whole series. ``mode='request'``: each request draws.
``challenger_share=0`` sends everything to the champion.
"""

from __future__ import annotations

import hashlib
import random


class ABRouter:
    def __init__(self, challenger_share: float = 0.0, mode: str = "symbol", seed: int = 0) -> None:
        if not 0.0 <= challenger_share <= 1.0:
            raise ValueError(f"challenger_share must be in [0, 1] (got {challenger_share})")
        if mode not in ("symbol", "request"):
            raise ValueError(f"mode must be 'symbol' or 'request' (got {mode!r})")
        self.challenger_share, self.mode, self.seed = challenger_share, mode, seed
        self._rng = random.Random(seed)
        self._by_symbol: dict[str, str] = {}

    def _draw(self, symbol: str) -> float:
        digest = hashlib.blake2b(f"{self.seed}:{symbol}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def arm(self, symbol: str) -> str:
        if self.challenger_share <= 0.0:
            return "champion"
        if self.mode == "request":
            return "challenger" if self._rng.random() < self.challenger_share else "champion"
        found = self._by_symbol.get(symbol)
        if found is None:
            found = self._by_symbol[symbol] = "challenger" if self._draw(symbol) < self.challenger_share else "champion"
        return found
