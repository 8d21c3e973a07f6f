"""The in-process executor and the deadline-aware batch planner shared by the backends."""

from __future__ import annotations

import asyncio
import time
from collections import deque

import numpy as np
from affectstream.engine.config import load_settings
from affectstream.engine.executor.base import BatchPlanner, make_executor
from affectstream.engine.executor.thread import ThreadExecutor
from affectstream.engine.pipeline import Pipeline
from affectstream.engine.types import Window
from pipeline_helpers import CaptureSink, SlowAnalyzer, SyntheticSource


def _win(stream: str, index: int, closed_at: float) -> Window:
    return Window(stream, index, float(index), index + 2.0, [], np.zeros(0, np.float32), closed_at=closed_at)


def test_planner_cuts_batches_at_the_deadline_not_when_full() -> None:
    p = BatchPlanner(target_ms=150, max_batch=8, initial_ms=30)
    now = time.monotonic()
    q = deque(_win(f"s{i}", 0, now) for i in range(8))
    assert len(p.take(q)) == 4  # 2 ms + 4 × 30 ms fits in 150 ms, a fifth window would not
    assert len(q) == 4
    # the oldest window already missed its deadline: only throughput helps now, take a full batch
    late = deque(_win(f"s{i}", 0, now - 1.0) for i in range(10))
    assert len(p.take(late)) == 8
    # cost is learned from finished calls
    for _ in range(30):
        p.observe(2, 0.202)
    assert abs(p.per_window_s - 0.1) < 0.005
    q = deque(_win(f"s{i}", 0, time.monotonic()) for i in range(3))
    assert len(p.take(q)) == 1  # two windows at 100 ms each would break 150 ms
    assert p.take(deque()) == []


async def test_thread_executor_order_and_failures() -> None:
    class Flaky(SlowAnalyzer):
        def analyze_batch(self, windows):  # type: ignore[no-untyped-def]
            if any(w.stream_id == "bad" for w in windows):
                raise RuntimeError("model exploded")
            return super().analyze_batch(windows)

    ex = ThreadExecutor(Flaky(0.001), settings=load_settings(None, {"executor.max_batch": 1}).executor)
    await ex.start()
    try:
        now = time.monotonic()
        futs = [ex.submit(_win(s, i, now)) for i in range(5) for s in ("a", "bad", "b")]
        res = await asyncio.gather(*futs, return_exceptions=True)
        ok = [r for r in res if not isinstance(r, BaseException)]
        bad = [r for r in res if isinstance(r, BaseException)]
        assert len(ok) == 10 and len(bad) == 5 and all("exploded" in str(e) for e in bad)
        for s in ("a", "b"):
            assert [r.window.index for r in ok if r.stream == s] == list(range(5))
        st = ex.stats()
        assert st["completed"] == 10 and st["failed"] == 5 and st["in_flight"] == 0
    finally:
        await ex.close()


async def test_failed_windows_are_counted_and_the_pipeline_goes_on() -> None:
    class FailsOnce(SlowAnalyzer):
        def analyze_batch(self, windows):  # type: ignore[no-untyped-def]
            if any(w.index == 2 for w in windows):
                raise RuntimeError("transient")
            return super().analyze_batch(windows)

    settings = load_settings(
        None, {"window.length": 0.5, "window.hop": 0.25, "progress": False, "executor.max_batch": 1}
    )
    sink = CaptureSink()
    pipe = Pipeline(settings, FailsOnce(0.0), [sink], node_id="t")
    await pipe.run([SyntheticSource("f", 2.0, live=False)])
    st = pipe.streams["f"]
    idx = [r.window.index for _, r in sink.windows]
    assert 2 not in idx and st.windows_dropped == 1 and len(idx) == st.windows_emitted - 1


def test_auto_backend_choice() -> None:
    s = load_settings(None, {})
    a = SlowAnalyzer(0.0)
    assert make_executor(s, analyzer=a, live_streams=1).name == "thread"
    assert make_executor(s, lambda: a, live_streams=3).name == "process"
    forced = load_settings(None, {"executor.backend": "thread"})
    assert make_executor(forced, analyzer=a, live_streams=8).name == "thread"
