"""The orchestrator: sources → windower → analyzer (fast path) → smoother → sinks, plus the slow path.

One asyncio loop runs everything that waits (sources, MQTT, timers); everything that computes runs
elsewhere so a slow model never stalls I/O: the fast path in an *executor* (engine/executor/: a worker
thread, a pool of worker processes, or a Ray cluster), the LLM in its own threads. Each stream is
isolated: a source that fails is reported in one line and the others keep running.

Scheduling: windows wait in a bounded queue per stream and are handed to the executor round-robin
across streams (no stream starves another), at most one window per live stream in flight and never
more than the executor's `capacity`; new live streams get their window grid offset so that streams
started together do not close their windows at the same instant (`executor.stagger`).

Back-pressure differs by source kind, on purpose: a *live* source (camera, mic, RTSP, WebRTC, or a file
with --realtime) cannot wait, so when the analyzer falls behind the oldest pending window is dropped and
counted; a file read as fast as possible waits instead, so no window of a recording is ever lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from affectstream.engine.analyzer import Analyzer
from affectstream.engine.config import Settings
from affectstream.engine.executor.base import Executor
from affectstream.engine.executor.thread import ThreadExecutor
from affectstream.engine.metrics import LatencySeries, RateCounter
from affectstream.engine.types import AudioChunk, ReasoningResult, VideoFrame, Window, WindowResult
from affectstream.streams.contract import stats_payload
from affectstream.streams.sinks.base import Sink
from affectstream.streams.sources.base import Source, SourceError

log = logging.getLogger("affectstream.engine")


class SlowPath(Protocol):
    """The reasoning scheduler as the engine sees it (see engine/llm/scheduler.py)."""

    def offer(self, result: WindowResult) -> bool: ...

    def stats(self) -> dict[str, Any]: ...


@dataclass
class StreamState:
    source: Source
    windower: Any
    live: bool
    max_pending: int
    pending: deque[Window] = field(default_factory=deque)
    in_flight: int = 0  # handed to the executor, not yet published
    phase: float | None = None  # wall-clock phase (mod hop) at which this live stream's windows close
    status: str = "running"  # running | finished | failed | stopped
    error: str | None = None
    windows_emitted: int = 0
    windows_dropped: int = 0
    windows_analyzed: int = 0
    last_ts: float = 0.0
    frames_in: RateCounter = field(default_factory=RateCounter)
    processed: RateCounter = field(default_factory=RateCounter)
    latency: LatencySeries = field(default_factory=LatencySeries)


class Pipeline:
    """The orchestrator (named Pipeline so "engine" means only the package). Runs a set of sources
    through one executor and a set of sinks until they end or `stop()`.

    Pass an `analyzer` (run in a worker thread of this process, the default) or an `executor`
    (engine/executor: e.g. a process pool); an executor passed in is started here if needed but closed
    by its owner, one built here around `analyzer` is closed here (the analyzer itself is not).
    """

    def __init__(
        self,
        settings: Settings,
        analyzer: Analyzer | None,
        sinks: list[Sink],
        *,
        slow_path: SlowPath | None = None,
        smoother: Any = None,
        node_id: str = "node",
        on_result: Callable[[WindowResult], None] | None = None,
        executor: Executor | None = None,
    ) -> None:
        if analyzer is None and executor is None:
            raise ValueError("Pipeline needs an analyzer or an executor")
        self.settings = settings
        self.analyzer = analyzer
        self._owns_executor = executor is None
        self.executor: Executor = (
            executor
            if executor is not None
            else ThreadExecutor(analyzer, settings=getattr(settings, "executor", None))
        )
        self._in_flight = 0
        self._rr = 0  # round-robin start position over streams
        self._done: asyncio.Queue[tuple[StreamState, Window, asyncio.Future[WindowResult]]] = asyncio.Queue()
        self.sinks = sinks
        self.slow_path = slow_path
        self.smoother = smoother  # engine/smoother.Smoother: state + events for every stream
        # analyzers whose generation yields the reasoning too (r1-omni) expose `reasoning(window)`
        self._inline_reasoning = (
            getattr(analyzer, "reasoning", None) if callable(getattr(analyzer, "reasoning", None)) else None
        )
        self.node_id = node_id
        self.on_result = on_result
        self.streams: dict[str, StreamState] = {}
        self._work = asyncio.Event()
        self._space = asyncio.Event()
        self._stopping = asyncio.Event()
        self._dynamic: set[asyncio.Task[None]] = set()  # pumps attached with add_source
        self.fast_latency = LatencySeries()  # window close → published, ms
        self.analyze_latency = LatencySeries()  # analyzer call per window, ms
        self.windows_processed = RateCounter()
        self.sink_errors = 0
        self._started = time.monotonic()

    # ------------------------------------------------------------------ public API
    def stop(self) -> None:
        """Ask every source to end; pending windows are still analyzed and flushed.

        Each source is told directly (`Source.stop`), so a stream that is opening, retrying or waiting
        for data ends now instead of at its next item, which may never come.
        """
        self._stopping.set()
        self._work.set()
        for st in list(self.streams.values()):
            with contextlib.suppress(Exception):
                st.source.stop()

    async def add_source(self, source: Source, *, live: bool | None = None) -> asyncio.Task[None]:
        """Attach a stream while running (used by the WebRTC server for each caller)."""
        st = self._make_state(source, live)
        task = asyncio.create_task(self._pump(st), name=f"pump:{source.stream_id}")
        self._dynamic.add(task)
        task.add_done_callback(self._dynamic.discard)
        return task

    def remove_stream(self, stream_id: str) -> bool:
        """Forget a stream whose source has ended, so its id can be reused and the table stays bounded.

        Returns False (and keeps it) while the stream is still running or has windows in flight.
        """
        st = self.streams.get(stream_id)
        if st is None:
            return False
        busy = (
            st.status == "running"
            or st.pending
            or st.in_flight
            or (st.windows_analyzed + st.windows_dropped < st.windows_emitted)
        )
        if busy:
            return False
        del self.streams[stream_id]
        return True

    async def run(self, sources: list[Source], *, until_stopped: bool = False) -> dict[str, StreamState]:
        """Run until every source ends, or with `until_stopped` until `stop()` (a server adding streams
        with `add_source` as callers come and go); returns each stream's final state."""
        for s in self.sinks:
            await self._safe(s.start())
        try:
            await self.executor.start()
        except BaseException:
            for s in self.sinks:
                await self._safe(s.close())
            raise
        states = [self._make_state(src, None) for src in sources]
        analyzer_task = asyncio.create_task(self._dispatch_loop(), name="dispatch")
        publish_task = asyncio.create_task(self._publish_loop(), name="publish")
        stats_task = asyncio.create_task(self._stats_loop(), name="stats")
        pumps = [asyncio.create_task(self._pump(st), name=f"pump:{st.source.stream_id}") for st in states]
        progress = asyncio.create_task(self._progress_loop(states), name="progress")
        try:
            await asyncio.gather(*pumps)
            if until_stopped:
                await self._stopping.wait()
            if self._dynamic:
                await asyncio.gather(*list(self._dynamic), return_exceptions=True)
            await self._drain()
        finally:
            for t in (analyzer_task, publish_task, stats_task, progress):
                t.cancel()
            for t in (analyzer_task, publish_task, stats_task, progress):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            if self._owns_executor:
                with contextlib.suppress(Exception):
                    await self.executor.close()
            if self.slow_path is not None and hasattr(self.slow_path, "drain"):
                with contextlib.suppress(Exception):
                    await self.slow_path.drain()  # type: ignore[attr-defined]
            await self._safe(self._publish_stats())
            for s in self.sinks:
                await self._safe(s.close())
        return self.streams

    # ------------------------------------------------------------------ internals
    def _make_state(self, source: Source, live: bool | None) -> StreamState:
        is_live = bool(source.live or self.settings.realtime) if live is None else live
        st = StreamState(
            source=source, windower=None, live=is_live, max_pending=self.settings.window.max_pending
        )
        if source.stream_id in self.streams:
            raise ValueError(f"duplicate stream id {source.stream_id!r}: name sources with name=SOURCE")
        if not self._stagger(st):
            st.windower = self._windower(st, 0.0)
        self.streams[source.stream_id] = st
        return st

    def _windower(self, st: StreamState, origin: float) -> Any:
        from affectstream.streams.windower import Windower

        w = self.settings.window
        # a live stream cannot wait long for a lagging modality; a file can (loose A/V interleaving)
        return Windower(
            st.source.stream_id,
            length=w.length,
            hop=w.hop,
            n_frames=w.frames,
            max_skew=1.0 if st.live else 10.0,
            origin=origin,
            track_settled=self._early_frames(st),
        )

    def _early_frames(self, st: StreamState) -> bool:
        """Whether this stream's chosen frames go to the executor before their windows close.

        Live streams only: a file's windows follow its frames at once, so analysing frames early would
        only add a copy. And only where the executor offers it (the process backend: the frames' results
        wait in the worker that will analyse the stream's windows)."""
        ex = getattr(self.settings, "executor", None)
        return bool(
            st.live
            and ex is not None
            and getattr(ex, "early_frames", False)
            and callable(getattr(self.executor, "prefetch", None))
        )

    def _stagger(self, st: StreamState) -> bool:
        """Whether this stream's window grid is placed at its first item (live, stagger on, not alone)."""
        ex = getattr(self.settings, "executor", None)
        return bool(st.live and ex is not None and ex.stagger)

    def _place_grid(self, st: StreamState, item: VideoFrame | AudioChunk) -> None:
        """Build a staggered live stream's windower at its first item.

        Window k closes when the stream's clock passes origin + k·hop + length, i.e. at wall time
        offset + origin + k·hop + length (offset: wall clock minus stream clock, known once the first
        item arrives). The first live stream keeps origin 0; each next one gets the phase (mod hop)
        farthest from the phases of the live streams already running, so N streams started together
        close their windows hop/N apart instead of all at once.
        """
        hop, length = self.settings.window.hop, self.settings.window.length
        now = time.monotonic()
        offset = now - (item.end if isinstance(item, AudioChunk) else item.ts)
        taken = [
            o.phase
            for o in self.streams.values()
            if o is not st and o.live and o.phase is not None and o.status == "running"
        ]
        if not taken:
            origin = 0.0
        else:
            cands = [hop * i / 64 for i in range(64)]

            def gap(p: float) -> float:
                return min(min(abs(p - q) % hop, hop - abs(p - q) % hop) for q in taken)

            best = max(cands, key=gap)
            # the grid point at or just before the first item, so no data falls before window 0
            origin = item.ts - ((item.ts - (best - offset - length)) % hop)
        st.phase = (offset + origin + length) % hop
        st.windower = self._windower(st, origin)

    async def _pump(self, st: StreamState) -> None:
        src = st.source
        try:
            async for item in src:
                if self._stopping.is_set():
                    st.status = "stopped"
                    break
                if st.windower is None:
                    self._place_grid(st, item)
                if isinstance(item, VideoFrame):
                    st.frames_in.add()
                    st.last_ts = max(st.last_ts, item.ts)
                elif isinstance(item, AudioChunk):
                    st.last_ts = max(st.last_ts, item.end)
                for win in st.windower.push(item):
                    await self._enqueue(st, win)
                if isinstance(item, VideoFrame) and st.windower.tracks_settled:
                    early = st.windower.take_settled()
                    if early:
                        self._prefetch(st, early)
            for win in st.windower.flush() if st.windower is not None else ():
                await self._enqueue(st, win)
            if st.status == "running":
                st.status = "stopped" if self._stopping.is_set() else "finished"
            await self._finish_stream(st)
        except SourceError as e:
            st.status, st.error = "failed", str(e)
            print(f"affectstream: {src.stream_id}: {e}", file=sys.stderr)
        except Exception as e:  # a bug or an unexpected library error: still isolate the stream
            st.status, st.error = "failed", f"{type(e).__name__}: {e}"
            log.exception("stream %s failed", src.stream_id)
            print(f"affectstream: {src.stream_id}: failed: {type(e).__name__}: {e}", file=sys.stderr)
        finally:
            with contextlib.suppress(Exception):
                await src.close()

    def _prefetch(self, st: StreamState, frames: list[VideoFrame]) -> None:
        """Hand frames chosen for coming windows to the executor early (best effort: it may drop them
        when busy, and the window then analyses them itself; a failure here never touches the stream)."""
        try:
            self.executor.prefetch(st.source.stream_id, frames)  # type: ignore[attr-defined]
        except Exception as e:
            log.debug("early frames of %s not taken: %s", st.source.stream_id, e)

    async def _finish_stream(self, st: StreamState) -> None:
        """Close the stream's open event (`end`) once its last window has been published."""
        if self.smoother is None:
            return
        while st.pending:
            await asyncio.sleep(0.01)
        while st.windows_analyzed + st.windows_dropped < st.windows_emitted:
            await asyncio.sleep(0.01)
        for ev in self.smoother.finish(st.source.stream_id):
            for s in self.sinks:
                await self._safe(s.publish_event(ev))

    async def _enqueue(self, st: StreamState, win: Window) -> None:
        st.windows_emitted += 1
        if st.live:
            while len(st.pending) >= st.max_pending:
                st.pending.popleft()
                st.windows_dropped += 1
        else:
            while len(st.pending) >= st.max_pending:
                self._space.clear()
                await self._space.wait()
        st.pending.append(win)
        self._work.set()

    def _fill(self) -> None:
        """Hand pending windows to the executor: round-robin over streams, one window per stream per
        round, at most one in flight per live stream (two per file, to hide the hand-over), never more
        than the executor's capacity in total."""
        cap = self.executor.capacity
        streams = list(self.streams.values())
        if not streams:
            return
        took = False
        while self._in_flight < cap:
            progressed = False
            n = len(streams)
            for i in range(n):
                st = streams[(self._rr + i) % n]
                if self._in_flight >= cap:
                    break
                if st.pending and st.in_flight < (1 if st.live else 2):
                    self._submit(st, st.pending.popleft())
                    progressed = took = True
            self._rr = (self._rr + 1) % n
            if not progressed:
                break
        if took:
            self._space.set()

    def _submit(self, st: StreamState, win: Window) -> None:
        try:
            fut = self.executor.submit(win)
        except Exception as e:  # e.g. a window that cannot be copied to the workers
            log.warning("could not submit %s/%d: %s: %s", win.stream_id, win.index, type(e).__name__, e)
            st.windows_dropped += 1
            return
        st.in_flight += 1
        self._in_flight += 1

        def done(f: asyncio.Future[WindowResult]) -> None:
            st.in_flight -= 1
            self._in_flight -= 1
            self._done.put_nowait((st, win, f))
            self._work.set()

        fut.add_done_callback(done)

    async def _dispatch_loop(self) -> None:
        while True:
            self._work.clear()
            self._fill()
            await self._work.wait()

    async def _publish_loop(self) -> None:
        """Publish results in completion order (per stream that is submission order, see executor)."""
        while True:
            st, win, fut = await self._done.get()
            try:
                if fut.cancelled():
                    raise asyncio.CancelledError
                exc = fut.exception()
                if exc is not None:
                    raise exc
                res = fut.result()
            except BaseException as e:
                st.windows_dropped += 1
                print(
                    f"affectstream: {win.stream_id}: window {win.index} not analysed "
                    f"({type(e).__name__}: {e}); skipped",
                    file=sys.stderr,
                )
                continue
            self.analyze_latency.add(res.latency_ms.get("analyze", 0.0))
            try:
                await self._publish(win, res)
            except Exception:  # a faulty on_result/slow path must not stop publishing
                log.exception("publishing %s/%d failed", win.stream_id, win.index)

    async def _publish(self, win: Window, res: WindowResult) -> None:
        st = self.streams.get(win.stream_id)
        if st is not None:
            st.windows_analyzed += 1
        res.latency_ms["publish_delay"] = (time.monotonic() - win.closed_at) * 1000
        for s in self.sinks:
            await self._safe(s.publish_window(res))
        if self.smoother is not None:
            upd = self.smoother.update(res)
            for s in self.sinks:
                await self._safe(s.publish_state(win.stream_id, upd.state))
                for ev in upd.events:
                    await self._safe(s.publish_event(ev))
        delay = (time.monotonic() - win.closed_at) * 1000
        self.fast_latency.add(delay)
        if st is not None:
            st.latency.add(delay)
            st.processed.add()
        self.windows_processed.add()
        if self.on_result is not None:
            self.on_result(res)
        if self.slow_path is not None:
            self.slow_path.offer(res)
        if self._inline_reasoning is not None:
            # r1-omni writes its reasoning in the same generation as the label: publish it right away.
            try:
                r = await asyncio.to_thread(self._inline_reasoning, win)
            except Exception as e:
                log.warning("reasoning for %s/%d unavailable: %s", win.stream_id, win.index, e)
            else:
                await self.publish_reasoning(r)

    async def publish_reasoning(self, r: ReasoningResult) -> None:
        """Called by the slow path when a generation finishes."""
        for s in self.sinks:
            await self._safe(s.publish_reasoning(r))

    async def _drain(self) -> None:
        """Wait until every emitted window has been analyzed and published."""
        while any(st.pending for st in self.streams.values()):
            self._work.set()
            await asyncio.sleep(0.01)
        # the windows in flight, if any
        while (
            self._in_flight
            or not self._done.empty()
            or sum(st.windows_analyzed + st.windows_dropped for st in self.streams.values())
            < sum(st.windows_emitted for st in self.streams.values())
        ):
            await asyncio.sleep(0.01)

    def stats_payload(self) -> dict[str, Any]:
        """The `stats` message (schema affectstream.stats/1)."""
        streams: dict[str, Any] = {}
        for sid, st in self.streams.items():
            row: dict[str, Any] = {
                "status": st.status,
                "error": st.error,
                "fps_in": st.frames_in.rate(),
                "fps_processed": st.processed.rate(),
                "windows": st.windows_emitted,
                "windows_analyzed": st.windows_analyzed,
                "windows_dropped": st.windows_dropped,
                "windows_pending": len(st.pending),
                "windows_in_flight": st.in_flight,
                "source": st.source.stats.to_dict(),
            }
            lat = st.latency.percentiles()
            if lat["n"]:
                row["latency_ms"] = {"fast_path": {"p50": lat["p50"], "p95": lat["p95"]}}
            wst = getattr(st.windower, "stats", None)
            if wst is not None:
                row["windower"] = wst.to_dict() if hasattr(wst, "to_dict") else dict(vars(wst))
            streams[sid] = row
        payload = stats_payload(
            self.node_id,
            streams,
            {type(s).__name__: s.stats() for s in self.sinks},
            time.monotonic() - self._started,
            profile=self.settings.profile,
            windows_per_s=self.windows_processed.rate(),
            windows_total=self.windows_processed.total,
            latency_ms={
                "fast_path": self.fast_latency.percentiles(),
                "analyze": self.analyze_latency.percentiles(),
            },
            sink_errors=self.sink_errors,
        )
        with contextlib.suppress(Exception):
            payload["executor"] = self.executor.stats()
        rt = getattr(self.analyzer, "runtime_info", None)
        if callable(rt):
            with contextlib.suppress(Exception):
                payload["runtime"] = rt()
        if self.slow_path is not None:
            payload["reasoning"] = self.slow_path.stats()
        return payload

    async def _publish_stats(self) -> None:
        p = self.stats_payload()
        for s in self.sinks:
            await self._safe(s.publish_stats(p))

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.mqtt.stats_interval)
            await self._safe(self._publish_stats())

    async def _progress_loop(self, states: list[StreamState]) -> None:
        files = [st for st in states if st.source.duration and not st.live]
        if not files or not self.settings.progress or not sys.stderr.isatty():
            return
        from tqdm import tqdm

        bars = [
            tqdm(total=round(st.source.duration or 0, 1), desc=st.source.stream_id, unit="s", leave=True)
            for st in files
        ]
        try:
            while True:
                for bar, st in zip(bars, files, strict=True):
                    bar.n = round(min(st.last_ts, bar.total), 1)
                    bar.refresh()
                if all(st.status != "running" for st in files):
                    return
                await asyncio.sleep(0.5)
        finally:
            for bar in bars:
                bar.close()

    async def _safe(self, coro: Any) -> None:
        """A sink must never take the engine down: errors are counted and logged once per kind."""
        try:
            await coro
        except Exception as e:
            self.sink_errors += 1
            log.warning("sink error: %s: %s", type(e).__name__, e)
