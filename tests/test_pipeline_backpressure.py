"""The pipeline's real back-pressure and the `stats` it publishes (no stand-in queue class).

A slow analyzer and N live sources overload the node on purpose: the oldest pending window of each
stream must be dropped and counted, every stream must keep getting fresh windows, memory (windows
waiting or in flight) must stay bounded, and the published `stats` must report the drops per stream
and validate against streams/schemas/stats.json. A file read as fast as possible must wait instead.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict

import pytest
from affectstream.engine.config import load_settings
from affectstream.engine.executor.process import ProcessExecutor
from affectstream.engine.executor.thread import ThreadExecutor
from affectstream.engine.pipeline import Pipeline
from affectstream.streams.contract import validate
from pipeline_helpers import CaptureSink, SlowAnalyzer, SlowFactory, SyntheticSource

N_STREAMS = 6
SECONDS = 5.0
HOP = 0.25
SLOW_S = 0.08  # per window: capacity 12.5 windows/s against a demand of N_STREAMS / HOP = 24/s


def _settings(**kw: object):
    base = {
        "window.length": 0.5,
        "window.hop": HOP,
        "window.max_pending": 2,
        "mqtt.stats_interval": 0.5,
        "executor.stagger": False,  # aligned windows: the worst case for the scheduler
        "progress": False,
    }
    base.update(kw)
    return load_settings(None, base)


async def _overload(executor_kind: str) -> None:
    settings = _settings()
    sink = CaptureSink()
    if executor_kind == "thread":
        pipe = Pipeline(settings, SlowAnalyzer(SLOW_S), [sink], node_id="t")
    else:
        ex = ProcessExecutor(SlowFactory(SLOW_S * 2), settings=settings.executor, workers=2)
        pipe = Pipeline(settings, None, [sink], node_id="t", executor=ex)
    sources = [SyntheticSource(f"cam{i}", SECONDS, live=True) for i in range(N_STREAMS)]
    peak = {"pending": 0, "in_flight": 0}

    async def watch() -> None:
        while True:
            for st in pipe.streams.values():
                peak["pending"] = max(peak["pending"], len(st.pending))
                assert st.in_flight <= 1  # one window per live stream in flight
            peak["in_flight"] = max(peak["in_flight"], pipe._in_flight)
            await asyncio.sleep(0.005)

    w = asyncio.create_task(watch())
    t_end = None
    try:
        await pipe.run(sources)
        t_end = time.monotonic()
    finally:
        w.cancel()
        if executor_kind == "process":
            await ex.close()
    assert t_end is not None

    # memory bounded: never more than max_pending waiting per stream, never more than capacity in flight
    assert peak["pending"] <= settings.window.max_pending
    assert peak["in_flight"] <= min(N_STREAMS, pipe.executor.capacity)

    published: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for t, r in sink.windows:
        published[r.stream].append((t, r.window.index))
    for sid, st in pipe.streams.items():
        idx = [i for _, i in published[sid]]
        # every window is accounted for: published or dropped, nothing lost silently
        assert st.windows_analyzed + st.windows_dropped == st.windows_emitted, sid
        assert len(idx) == st.windows_analyzed
        # overloaded: every stream lost windows, and they were counted
        assert st.windows_dropped > 0, (sid, st.windows_emitted)
        # published in order, and the dropped ones are old ones (each has a newer published window)
        assert idx == sorted(idx) and len(set(idx)) == len(idx)
        dropped = set(range(st.windows_emitted)) - set(idx)
        assert len(dropped) == st.windows_dropped
        assert all(d < max(idx) for d in dropped)
        assert max(idx) == st.windows_emitted - 1  # the newest window is never the one dropped
        # fresh windows keep coming for every stream until the end (no stream starves)
        last_t = max(t for t, _ in published[sid])
        assert last_t > t_end - 1.5, (sid, t_end - last_t)
        gaps = [b - a for (a, _), (b, _) in zip(published[sid], published[sid][1:], strict=False)]
        assert max(gaps) < 1.5, (sid, max(gaps))
    counts = [st.windows_analyzed for st in pipe.streams.values()]
    assert min(counts) >= 0.6 * max(counts), counts  # fair shares

    # `stats` as published: schema-valid, and it reports the drops per stream
    assert len(sink.stats_payloads) >= 3
    for p in sink.stats_payloads:
        validate("stats", p)
    final = sink.stats_payloads[-1]
    for sid, st in pipe.streams.items():
        assert final["streams"][sid]["windows_dropped"] == st.windows_dropped
        assert final["streams"][sid]["windows"] == st.windows_emitted
        assert final["streams"][sid]["latency_ms"]["fast_path"]["p95"] > 0
    assert final["executor"]["backend"] == executor_kind
    mid = [p for p in sink.stats_payloads[1:-1] if sum(s["windows_dropped"] for s in p["streams"].values())]
    assert mid, "drops must show up in stats while the overload is going on"


async def test_overload_drops_oldest_per_stream_thread_backend() -> None:
    await _overload("thread")


@pytest.mark.timeout(120)
async def test_overload_drops_oldest_per_stream_process_backend() -> None:
    await _overload("process")


async def test_file_sources_wait_instead_of_dropping() -> None:
    settings = _settings()
    sink = CaptureSink()
    pipe = Pipeline(settings, SlowAnalyzer(0.01), [sink], node_id="t")
    sources = [SyntheticSource(f"file{i}", 3.0, live=False) for i in range(3)]
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max([peak] + [len(st.pending) for st in pipe.streams.values()])
            await asyncio.sleep(0.001)

    w = asyncio.create_task(watch())
    try:
        await pipe.run(sources)
    finally:
        w.cancel()
    assert peak <= settings.window.max_pending
    for sid, st in pipe.streams.items():
        idx = [r.window.index for _, r in sink.windows if r.stream == sid]
        assert st.windows_dropped == 0 and st.windows_emitted > 8
        assert idx == list(range(st.windows_emitted)), sid  # every window, in order
    validate("stats", sink.stats_payloads[-1])


async def test_stagger_spreads_window_close_times() -> None:
    """Live streams started together get window grids hop/N apart (executor.stagger, default on)."""
    settings = _settings(**{"executor.stagger": True})
    sink = CaptureSink()
    ex = ThreadExecutor(SlowAnalyzer(0.0), settings=settings.executor)
    pipe = Pipeline(settings, None, [sink], node_id="t", executor=ex)
    await pipe.run([SyntheticSource(f"cam{i}", 2.0, live=True) for i in range(4)])
    await ex.close()
    phases = sorted(st.phase for st in pipe.streams.values() if st.phase is not None)
    assert len(phases) == 4
    gaps = [b - a for a, b in itertools.pairwise(phases)] + [HOP - phases[-1] + phases[0]]
    assert min(gaps) > HOP / 4 * 0.7, phases
    starts = {round(r.window.start % HOP, 3) for _, r in sink.windows}
    assert len(starts) >= 3  # the window grids really differ
