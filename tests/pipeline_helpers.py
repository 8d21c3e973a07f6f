"""Helpers for the pipeline/executor tests: synthetic sources, a slow analyzer, capturing sinks.

Module-level and picklable on purpose: the process backend builds analyzers in spawned workers from a
factory, so the factories here must be importable by name (`pipeline_helpers.SlowFactory`).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from affectstream.engine.analyzer import AnalyzerBase
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.types import AudioChunk, VideoFrame, Window, WindowRef, WindowResult
from affectstream.streams.sinks.base import Sink
from affectstream.streams.sources.base import Source


class SyntheticSource(Source):
    """A camera+mic stand-in: small frames at `fps` and 100 ms audio chunks for `seconds`.

    `live=True` paces items at their timestamps (like a camera: it cannot wait); `live=False` yields
    them as fast as the consumer takes them (like a file read as fast as possible).
    """

    def __init__(
        self, stream_id: str, seconds: float, *, live: bool, fps: float = 10.0, size: int = 32
    ) -> None:
        super().__init__(stream_id)
        self.live = live
        self.seconds = seconds
        self.fps = fps
        self.size = size

    async def __aiter__(self) -> Any:
        t0 = time.monotonic()
        rng = np.random.default_rng(abs(hash(self.stream_id)) % 2**32)
        items: list[tuple[float, Any]] = []
        n_frames = int(self.seconds * self.fps)
        for i in range(n_frames):
            img = rng.integers(0, 255, (self.size, self.size, 3), dtype=np.uint8)
            items.append((i / self.fps, VideoFrame(i / self.fps, img, i)))
        for j in range(int(self.seconds * 10)):
            chunk = AudioChunk(j / 10, (rng.standard_normal(1600) * 0.01).astype(np.float32))
            items.append((chunk.end, chunk))
        items.sort(key=lambda x: x[0])
        for k, (due, item) in enumerate(items):
            if self.live:
                delay = t0 + due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif k % 16 == 0:
                await asyncio.sleep(0)
            if isinstance(item, VideoFrame):
                self.stats.frames += 1
            else:
                self.stats.audio_chunks += 1
            yield item


def fake_result(w: Window, label: str = "neutral") -> WindowResult:
    scores = {e: (1.0 if e == label else 0.0) for e in EMOTIONS}
    return WindowResult(w.stream_id, WindowRef(w.index, w.start, w.end), label, 1.0, scores)


class SlowAnalyzer(AnalyzerBase):
    """Takes `seconds` per window (sleeping, like a model running outside the GIL).

    It also checks what it was given, so transport bugs fail the tests: the frame pixels must have
    the checksum the result reports, and a stream named `poison…` kills its process (a crashing
    native library), which is how the worker-replacement test makes a worker die on demand.
    """

    profile = "lite"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    def analyze(self, window: Window) -> WindowResult:
        if window.stream_id.startswith("poison"):
            os._exit(3)
        self.calls += 1
        time.sleep(self.seconds)
        r = fake_result(window)
        r.extra["checksum"] = int(sum(int(np.asarray(f.image, dtype=np.int64).sum()) for f in window.frames))
        r.extra["audio_sum"] = float(np.asarray(window.audio, dtype=np.float64).sum())
        r.extra["pid"] = os.getpid()
        return r


@dataclass(frozen=True)
class SlowFactory:
    seconds: float

    def __call__(self) -> SlowAnalyzer:
        return SlowAnalyzer(self.seconds)


class CaptureSink(Sink):
    """Keeps what the pipeline really publishes (windows with their publish time, stats payloads)."""

    def __init__(self) -> None:
        self.windows: list[tuple[float, WindowResult]] = []
        self.stats_payloads: list[dict[str, Any]] = []

    async def publish_window(self, result: WindowResult) -> None:
        self.windows.append((time.monotonic(), result))

    async def publish_stats(self, payload: dict[str, Any]) -> None:
        self.stats_payloads.append(payload)


def assert_same_windows(ref: dict[Any, WindowResult], got: dict[Any, WindowResult], tol: float = 1e-5) -> int:
    """Two runs gave the same window results (labels, scores within `tol`, face boxes); returns how many
    faces were compared, so a caller can insist the comparison was not over empty results."""
    assert got.keys() == ref.keys() and len(ref) >= 10
    faces = 0
    for k, a in ref.items():
        b = got[k]
        assert b.label == a.label, k
        for e, v in a.scores.items():
            assert abs(b.scores[e] - v) <= tol, (k, e, b.scores[e], v)
        assert [f.box for f in b.faces] == [f.box for f in a.faces], k
        faces += len(a.faces)
    return faces
