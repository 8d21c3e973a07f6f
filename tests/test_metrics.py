"""The project's one percentile definition (nearest rank), used by `stats`, the benches and the tests."""

from __future__ import annotations

import pytest
from affectstream.engine.metrics import LatencySeries, percentile, summarize


def test_percentile_is_nearest_rank() -> None:
    assert percentile(range(1, 101), 50) == 50.0
    assert percentile(range(1, 101), 95) == 95.0
    assert percentile(range(1, 101), 100) == 100.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 95) is None
    # always an observed sample, never an interpolation between two (numpy's default gives 9.5 here)
    assert percentile([1.0, 10.0], 95) == 10.0 and percentile([1.0, 10.0], 50) == 1.0
    with pytest.raises(ValueError):
        percentile([1.0], 0)


def test_series_is_bounded_and_summarised() -> None:
    s = LatencySeries(maxlen=100)
    for v in range(1000):
        s.add(v)
    assert len(s) == 100  # weeks of uptime must not grow memory
    assert s.percentiles() == {"p50": 949.0, "p95": 994.0, "n": 100}
    assert summarize([]) == {"p50": None, "p95": None, "max": None, "n": 0}
    assert summarize([5.0, 1.0, 3.0]) == {"p50": 3.0, "p95": 5.0, "max": 5.0, "n": 3}
