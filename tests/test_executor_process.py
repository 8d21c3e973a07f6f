"""The process backend: warm worker processes fed through shared memory.

Checks what the pipeline relies on: results of a stream come back in submission order, frames and
audio arrive intact (checksums computed in the worker), the real `lite` analyzer gives the same
results in worker processes as in-process on the sample clip, and a worker that dies is replaced —
the window it was running is retried once, a window that kills every worker fails alone.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from affectstream.engine.config import load_settings
from affectstream.engine.executor.base import AnalyzerFactory, make_executor
from affectstream.engine.executor.process import ProcessExecutor, WorkerFailed
from affectstream.engine.pipeline import Pipeline
from affectstream.engine.types import VideoFrame, Window
from pipeline_helpers import CaptureSink, SlowFactory, assert_same_windows

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample.mp4"
pytestmark = pytest.mark.timeout(300)


def _window(stream: str, index: int, *, h: int = 480, w: int = 640, seed: int = 0) -> Window:
    rng = np.random.default_rng(seed + index)
    frames = [
        VideoFrame(index + i / 8, rng.integers(0, 255, (h, w, 3), dtype=np.uint8), index * 8 + i)
        for i in range(8)
    ]
    audio = rng.standard_normal(32000).astype(np.float32)
    return Window(stream, index, float(index), index + 2.0, frames, audio)


async def test_order_per_stream_and_intact_frames() -> None:
    ex = ProcessExecutor(SlowFactory(0.003), workers=2, settings=load_settings(None, {}).executor)
    await ex.start()
    try:
        done: list[tuple[str, int]] = []
        futs = []
        wins = []
        for k in range(6):
            for s in ("a", "b", "c", "d", "e"):
                win = _window(s, k, h=120, w=160, seed=ord(s))
                wins.append(win)
                f = ex.submit(win)
                f.add_done_callback(lambda f, s=s, k=k: done.append((s, k)))
                futs.append(f)
        results = await asyncio.wait_for(asyncio.gather(*futs), 60)
        for s in "abcde":
            assert [k for (t, k) in done if t == s] == list(range(6)), s
        for win, r in zip(wins, results, strict=True):
            assert (r.stream, r.window.index) == (win.stream_id, win.index)
            assert r.extra["checksum"] == sum(int(f.image.astype(np.int64).sum()) for f in win.frames)
            assert r.extra["audio_sum"] == pytest.approx(float(win.audio.astype(np.float64).sum()), rel=1e-9)
            assert r.latency_ms["analyze"] > 0
        # sticky: one stream always ran in the same worker process; both workers were used
        pids = {s: {r.extra["pid"] for r in results if r.stream == s} for s in "abcde"}
        assert all(len(p) == 1 for p in pids.values())
        assert len(set().union(*pids.values())) == 2
        assert all(pid != os.getpid() for p in pids.values() for pid in p)
        st = ex.stats()
        assert st["completed"] == 30 and st["failed"] == 0 and st["in_flight"] == 0
        assert st["shm_segments"] <= ex.capacity + 30  # bounded by windows in flight
    finally:
        await ex.close()


async def test_dead_worker_is_replaced_and_its_window_retried() -> None:
    ex = ProcessExecutor(SlowFactory(0.5), workers=1, settings=load_settings(None, {}).executor)
    await ex.start()
    try:
        old_pid = ex.stats()["per_worker"][0]["pid"]
        fut = ex.submit(_window("a", 0))
        await asyncio.sleep(0.2)  # the worker is inside the analyzer now
        os.kill(old_pid, signal.SIGKILL)
        r = await asyncio.wait_for(fut, 120)
        assert r.window.index == 0 and r.extra["pid"] != old_pid
        st = ex.stats()
        assert st["restarts"] == 1 and st["retried"] == 1 and st["per_worker"][0]["pid"] == r.extra["pid"]

        # a window that kills every worker it reaches fails alone, after one retry
        poison = ex.submit(_window("poison", 0))
        with pytest.raises(WorkerFailed):
            await asyncio.wait_for(poison, 120)
        ok = await asyncio.wait_for(ex.submit(_window("a", 1)), 120)
        assert ok.window.index == 1
        st = ex.stats()
        assert st["restarts"] == 3 and st["failed"] == 1 and st["per_worker"][0]["ready"]
    finally:
        await ex.close()


async def test_worker_start_failure_is_one_clear_error(tmp_path: Path) -> None:
    settings = load_settings(None, {"executor.backend": "process", "executor.workers": 1})
    ex = make_executor(settings, AnalyzerFactory.from_settings(settings, profile_dir=str(tmp_path / "none")))
    with pytest.raises(WorkerFailed, match="no analysis worker could start"):
        await ex.start()


async def _run_sample(settings, analyzer, executor, n_streams: int) -> dict[tuple[str, int], object]:
    from affectstream.streams.sources.file import FileSource

    sink = CaptureSink()
    pipe = Pipeline(settings, analyzer, [sink], node_id="t", executor=executor)
    await pipe.run([FileSource(SAMPLE, f"s{i}") for i in range(n_streams)])
    for st in pipe.streams.values():
        assert st.windows_dropped == 0 and st.status == "finished"
        idx = [r.window.index for _, r in sink.windows if r.stream == st.source.stream_id]
        assert idx == sorted(idx) and len(idx) == st.windows_emitted  # in order, all of them
    return {(r.stream, r.window.index): r for _, r in sink.windows}


async def test_process_results_equal_thread_results_on_the_sample(lite_profile: Path) -> None:
    from affectstream.engine.lite import LiteAnalyzer

    settings = load_settings(None, {"progress": False, "executor.workers": 2})
    analyzer = LiteAnalyzer.from_profile(lite_profile, settings.lite)
    try:
        ref = await _run_sample(settings, analyzer, None, 2)
    finally:
        analyzer.close()
    ex = make_executor(
        settings.model_copy(update={"executor": settings.executor.model_copy(update={"backend": "process"})}),
        AnalyzerFactory.from_settings(settings, profile_dir=str(lite_profile), threads=1),
    )
    assert ex.name == "process"
    await ex.start()
    try:
        got = await _run_sample(settings, None, ex, 2)
        pids = {w["pid"] for w in ex.stats()["per_worker"]}
    finally:
        await ex.close()
    assert len(pids) == 2 and os.getpid() not in pids
    assert assert_same_windows(ref, got) > 0  # the sample has a real face: not over empty results
    for k, a in ref.items():
        b = got[k]
        assert [f.track for f in b.faces] == [f.track for f in a.faces]
        assert (a.voice is None) == (b.voice is None)
        if a.voice is not None:
            assert b.voice.speech_ratio == pytest.approx(a.voice.speech_ratio, abs=1e-6)


def test_serve_leaves_a_core_to_the_call_decoding():
    """`serve` decodes every caller's video in the engine process, so its default pool is one worker
    fewer than the cores (at least one); a set `executor.workers` is kept as given."""
    from affectstream.engine.app import serve_executor_settings
    from affectstream.engine.executor.base import default_workers

    cores = default_workers()
    s = serve_executor_settings(load_settings(None, {}))
    assert s.executor.workers == max(1, cores - 1) == default_workers(reserve=1)
    assert default_workers(reserve=cores + 3) == 1
    pinned = load_settings(None, {"executor.workers": 3})
    assert serve_executor_settings(pinned).executor.workers == 3
