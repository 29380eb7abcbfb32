"""One summary of latency samples for the serving benchmarks: the same p50 / p99 definition (numpy's linear
interpolation) in every results file, so figures from different benchmarks compare."""

from __future__ import annotations

from typing import Any

import numpy as np


def latency_summary(samples_ms: list[float], **extra: Any) -> dict[str, Any]:
    """``n``, ``p50_ms``, ``p99_ms``, ``max_ms`` of ``samples_ms`` (milliseconds), plus ``extra``."""
    arr = np.asarray(samples_ms, dtype=float)
    if arr.size == 0:
        raise ValueError("no latency samples: nothing was measured")
    return {"n": int(arr.size), "p50_ms": float(np.median(arr)), "p99_ms": float(np.percentile(arr, 99)),
            "max_ms": float(arr.max()), **extra}
