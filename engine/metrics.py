"""Small bounded statistics for the `stats` message: rates and latency percentiles.

Everything here is O(1) memory per series (fixed-size reservoirs), because an engine that runs for
weeks must not grow with time.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np


class LatencySeries:
    """The last `maxlen` samples (ms); percentiles over them."""

    def __init__(self, maxlen: int = 512) -> None:
        self._v: deque[float] = deque(maxlen=maxlen)

    def add(self, ms: float) -> None:
        self._v.append(float(ms))

    def __len__(self) -> int:
        return len(self._v)

    def percentiles(self) -> dict[str, float | None]:
        if not self._v:
            return {"p50": None, "p95": None, "n": 0}
        a = np.fromiter(self._v, dtype=np.float64)
        return {
            "p50": round(float(np.percentile(a, 50)), 2),
            "p95": round(float(np.percentile(a, 95)), 2),
            "n": len(a),
        }


class RateCounter:
    """Events per second since the previous `rate()` call."""

    def __init__(self) -> None:
        self.total = 0
        self._last_total = 0
        self._last_t = time.monotonic()

    def add(self, n: int = 1) -> None:
        self.total += n

    def rate(self) -> float:
        now = time.monotonic()
        dt = max(1e-9, now - self._last_t)
        r = (self.total - self._last_total) / dt
        self._last_total, self._last_t = self.total, now
        return round(r, 2)
