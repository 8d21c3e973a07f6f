"""Small bounded statistics for the `stats` message, the benches and the tests: rates and percentiles.

One definition of a percentile for the whole project (`percentile`): the **nearest-rank** value, i.e.
the smallest sample that at least q % of the samples are less than or equal to. It is always a latency
that was really observed (no interpolation between two windows), it is what the README and
bench/RESULTS.md mean by p50/p95, and `stats`, every bench and every test use this function so the
figures are comparable.

Everything here is O(1) memory per series (fixed-size reservoirs), because an engine that runs for
weeks must not grow with time.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank q-th percentile (0 < q <= 100) of `values`; None when there are none."""
    if not 0 < q <= 100:
        raise ValueError(f"percentile q must be in (0, 100], got {q}")
    v = sorted(float(x) for x in values)
    if not v:
        return None
    return v[min(len(v) - 1, max(0, math.ceil(q / 100 * len(v)) - 1))]


def summarize(values: Iterable[float], digits: int = 2) -> dict[str, float | int | None]:
    """p50, p95, max and n of latency samples (ms) — the shape `stats` and the benches report."""
    v = [float(x) for x in values]

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, digits)

    return {
        "p50": r(percentile(v, 50)),
        "p95": r(percentile(v, 95)),
        "max": r(max(v)) if v else None,
        "n": len(v),
    }


class LatencySeries:
    """The last `maxlen` samples (ms); percentiles over them."""

    def __init__(self, maxlen: int = 512) -> None:
        self._v: deque[float] = deque(maxlen=maxlen)

    def add(self, ms: float) -> None:
        self._v.append(float(ms))

    def __len__(self) -> int:
        return len(self._v)

    def values(self) -> list[float]:
        return list(self._v)

    def percentiles(self) -> dict[str, float | int | None]:
        """{"p50", "p95", "n"} of the kept samples (nearest rank; None when empty)."""
        s = summarize(self._v)
        return {"p50": s["p50"], "p95": s["p95"], "n": s["n"]}


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
