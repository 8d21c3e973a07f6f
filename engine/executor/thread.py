"""The in-process backend: one analyzer, one worker thread, fed from the event loop.

The default for one stream, for files and for tests: no start-up cost and no extra memory. The
analyzer releases the GIL inside ONNX Runtime, but its Python parts (tracking, prosody, fusion) share
the GIL with decoding and publishing — which is why several live streams want the process backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from affectstream.engine.analyzer import Analyzer
from affectstream.engine.executor.base import AnalyzerFactoryFn, BatchPlanner, set_analyze_ms
from affectstream.engine.types import Window, WindowResult

log = logging.getLogger("affectstream.executor")


class ThreadExecutor:
    """Runs `analyzer.analyze_batch` in a worker thread; batches are cut by a `BatchPlanner`.

    Give it an analyzer (the caller owns and closes it) or a factory (built in `start()`, closed here).
    """

    name = "thread"

    def __init__(
        self,
        analyzer: Analyzer | None = None,
        *,
        factory: AnalyzerFactoryFn | None = None,
        settings: Any = None,
    ) -> None:
        if analyzer is None and factory is None:
            raise ValueError("ThreadExecutor needs an analyzer or a factory")
        self.analyzer = analyzer
        self._factory = factory
        self._owns = analyzer is None
        self._capacity = int(getattr(settings, "capacity", 16))
        self.planner = BatchPlanner(
            getattr(settings, "latency_target_ms", 150.0), getattr(settings, "max_batch", 8)
        )
        self._queue: deque[tuple[Window, asyncio.Future[WindowResult]]] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = 0
        self.completed = 0
        self.failed = 0
        self.batches = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    async def start(self) -> None:
        if self._task is not None:
            return
        if self.analyzer is None:
            assert self._factory is not None
            self.analyzer = await asyncio.to_thread(self._factory)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="executor:thread")

    def submit(self, window: Window) -> asyncio.Future[WindowResult]:
        if self._task is None or self._wake is None:
            raise RuntimeError("executor not started")
        fut: asyncio.Future[WindowResult] = asyncio.get_running_loop().create_future()
        self._queue.append((window, fut))
        self._wake.set()
        return fut

    async def _loop(self) -> None:
        assert self._wake is not None and self.analyzer is not None
        analyzer = self.analyzer
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            items = self.planner.take(self._queue, lambda it: it[0].closed_at)
            windows = [w for w, _ in items]
            self._running = len(items)
            t0 = time.perf_counter()
            try:
                results = await asyncio.to_thread(analyzer.analyze_batch, windows)
                if len(results) != len(windows):
                    raise RuntimeError(f"analyzer returned {len(results)} results for {len(windows)} windows")
            except Exception as e:
                log.warning(
                    "analyzer failed on a batch of %d windows: %s: %s", len(items), type(e).__name__, e
                )
                self.failed += len(items)
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            finally:
                self._running = 0
            dt = time.perf_counter() - t0
            self.planner.observe(len(items), dt)
            set_analyze_ms(results, dt)
            self.batches += 1
            self.completed += len(items)
            for (_, fut), res in zip(items, results, strict=True):
                if not fut.done():
                    fut.set_result(res)

    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "workers": 1,
            "capacity": self._capacity,
            "queued": len(self._queue),
            "in_flight": len(self._queue) + self._running,
            "completed": self.completed,
            "failed": self.failed,
            "retried": 0,
            "batches": self.batches,
            "per_window_ms": round(self.planner.per_window_s * 1000, 2),
        }

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        while self._queue:
            _, fut = self._queue.popleft()
            fut.cancel()
        if self._owns and self.analyzer is not None:
            with contextlib.suppress(Exception):
                self.analyzer.close()
            self.analyzer = None
