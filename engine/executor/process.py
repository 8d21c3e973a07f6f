"""The process backend: a pool of warm worker processes, each with its own analyzer (its own ONNX
Runtime sessions), fed through shared memory.

Why processes: on a few cores the in-process analyzer shares one GIL with decoding, windowing and
publishing, and analyses aligned windows of all streams as one batch behind one thread. Worker
processes analyse in parallel (one intra-op thread each, one worker per core by default), and the
parent only copies frames into shared memory and routes small messages.

Scheduling:
- **sticky streams**: a stream always goes to the same worker (the analyzer keeps per-stream state:
  face tracks, streaming VAD, the frame cache), which also gives per-stream result order for free
  (each worker is FIFO); a new stream goes to the worker with the fewest active streams;
- **deadline-aware batches**: a free worker takes at once what is queued for it, cut by a
  `BatchPlanner` so the oldest window still meets the latency target;
- **failure**: a worker that dies is replaced (same slot, models reloaded); the batch it was running
  is retried once on the replacement, then failed (a window that kills workers is not retried forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from affectstream.engine.executor.base import AnalyzerFactoryFn, BatchPlanner, default_workers, set_analyze_ms
from affectstream.engine.executor.shm import Segment, SegmentPool, encode, window_nbytes
from affectstream.engine.executor.worker import PIN_ENV
from affectstream.engine.types import Window, WindowResult

log = logging.getLogger("affectstream.executor")
ACTIVE_S = 10.0  # a stream that submitted within this many seconds counts towards its worker's load
MAX_STREAMS = 4096  # remembered stream → worker assignments (bounded)
_env_lock = threading.Lock()


EARLY_QUEUE = 8  # early-frame messages waiting per worker; older ones are dropped (the window redoes them)
EARLY_BATCH = 1  # early-frame messages sent in one go (a window arriving meanwhile waits for them)


class WorkerFailed(RuntimeError):
    """The worker running a window died (twice) or could not be started."""


@dataclass(slots=True)
class _Job:
    window: Window
    future: asyncio.Future[WindowResult]
    segment: Segment
    desc: dict[str, Any]
    tries: int = 0


@dataclass(slots=True)
class _Early:
    """Frames of one stream to analyse before their windows close (best effort, never retried)."""

    segment: Segment
    desc: dict[str, Any]
    frames: int


@dataclass
class _Slot:
    index: int
    planner: BatchPlanner
    proc: Any = None
    requests: Any = None  # parent → worker connection (send end)
    replies: Any = None  # worker → parent connection (recv end)
    generation: int = 0
    ready: bool = False
    broken: str | None = None  # why the slot could not be restarted
    queue: deque[_Job] = field(default_factory=deque)
    busy: list[_Job] | None = None
    early: deque[_Early] = field(default_factory=deque)  # waits behind every window of the slot
    busy_early: list[_Early] | None = None
    batch_id: int = 0
    reader_fd: int | None = None
    sent_at: float = 0.0
    completed: int = 0
    batches: int = 0
    restarts: int = 0


class ProcessExecutor:
    """Pool of `workers` spawned processes, each building its analyzer once from `factory`."""

    name = "process"

    def __init__(
        self, factory: AnalyzerFactoryFn, *, settings: Any = None, workers: int | None = None
    ) -> None:
        import multiprocessing

        self.factory = factory
        n = workers or getattr(settings, "workers", None) or default_workers()
        self.n_workers = max(1, int(n))
        self._capacity = int(getattr(settings, "capacity", 16))
        self._target_ms = float(getattr(settings, "latency_target_ms", 150.0))
        self._max_batch = int(getattr(settings, "max_batch", 8))
        self._threads = int(getattr(settings, "threads_per_worker", 1))
        self._start_timeout = float(getattr(settings, "start_timeout", 120.0))
        method = getattr(settings, "start_method", "spawn")
        if method not in ("spawn", "forkserver"):
            raise ValueError(f"worker start method must be spawn or forkserver, not {method!r}")
        self._ctx = multiprocessing.get_context(method)
        self._slots = [
            _Slot(i, BatchPlanner(self._target_ms, self._max_batch)) for i in range(self.n_workers)
        ]
        self._pool = SegmentPool()
        self._assign: OrderedDict[str, tuple[int, float]] = OrderedDict()  # stream → (slot, last use)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closing = False
        self._respawns: set[asyncio.Task[None]] = set()
        self.completed = 0
        self.failed = 0
        self.retried = 0
        self.early_frames = 0  # frames analysed before their window closed
        self.early_dropped = 0  # early frames not analysed in time (their windows did the work)

    # ------------------------------------------------------------------ interface
    @property
    def capacity(self) -> int:
        return self._capacity

    async def start(self) -> None:
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._started = True
        results = await asyncio.gather(
            *(asyncio.to_thread(self._spawn, s) for s in self._slots), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if len(errors) == len(self._slots):
            await self.close()
            raise WorkerFailed(f"no analysis worker could start: {errors[0]}")
        for s, r in zip(self._slots, results, strict=True):
            if isinstance(r, BaseException):
                s.broken = str(r)
                log.warning("analysis worker %d failed to start: %s", s.index, r)
            else:
                self._start_reader(s)

    def submit(self, window: Window) -> asyncio.Future[WindowResult]:
        if not self._started or self._loop is None or self._closing:
            raise RuntimeError("executor not started")
        fut: asyncio.Future[WindowResult] = self._loop.create_future()
        slot = self._slot_for(window.stream_id)
        seg, desc = self._copy_in(window)
        slot.queue.append(_Job(window, fut, seg, desc))
        self._kick(slot)
        return fut

    def _copy_in(self, window: Window) -> tuple[Segment, dict[str, Any]]:
        """A pooled shared-memory segment holding `window`'s frames and audio, and its descriptor."""
        seg = self._pool.acquire(window_nbytes(window))
        try:
            return seg, encode(window, seg)
        except Exception:
            self._pool.release(seg)
            raise

    def prefetch(self, stream_id: str, frames: list[Any]) -> bool:
        """Send frames that coming windows of `stream_id` will hold to its worker, to analyse when it
        has nothing else to do (`LiteAnalyzer.prefetch`: faces and expressions land in the worker's
        frame cache, so the windows' close finds them done).

        Best effort by design: windows always go first; at most `EARLY_QUEUE` messages wait per worker
        and older ones are dropped (counted: the window then analyses those frames itself). Returns
        whether the frames were queued."""
        if not self._started or self._closing or not frames:
            return False
        slot = self._slot_for(stream_id)
        if slot.broken is not None or not slot.ready:
            return False
        carrier = Window(stream_id, -1, frames[0].ts, frames[-1].ts, list(frames), np.zeros(0, np.float32))
        seg, desc = self._copy_in(carrier)
        slot.early.append(_Early(seg, desc, len(frames)))
        while len(slot.early) > EARLY_QUEUE:
            old = slot.early.popleft()
            self._pool.release(old.segment)
            self.early_dropped += old.frames
        self._kick(slot)
        return True

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        per = []
        for s in self._slots:
            pid = s.proc.pid if s.proc is not None else None
            per.append(
                {
                    "slot": s.index,
                    "pid": pid,
                    "ready": s.ready,
                    "broken": s.broken,
                    "streams": sum(
                        1 for i, t in self._assign.values() if i == s.index and now - t < ACTIVE_S
                    ),
                    "queued": len(s.queue),
                    "running": len(s.busy or ()),
                    "completed": s.completed,
                    "batches": s.batches,
                    "restarts": s.restarts,
                    "per_window_ms": round(s.planner.per_window_s * 1000, 2),
                    "rss_mb": _rss_mb(pid) if s.ready else None,
                }
            )
        return {
            "backend": self.name,
            "workers": self.n_workers,
            "capacity": self._capacity,
            "in_flight": sum(len(s.queue) + len(s.busy or ()) for s in self._slots),
            "completed": self.completed,
            "failed": self.failed,
            "retried": self.retried,
            "early_frames": self.early_frames,
            "early_dropped": self.early_dropped,
            "restarts": sum(s.restarts for s in self._slots),
            "shm_segments": len(self._pool),
            "shm_mb": round(self._pool.bytes / 2**20, 1),
            "per_worker": per,
        }

    async def close(self) -> None:
        self._closing = True
        for t in list(self._respawns):
            t.cancel()
        for s in self._slots:
            for job in list(s.queue) + list(s.busy or ()):
                if not job.future.done():
                    job.future.cancel()
            s.queue.clear()
            s.busy = None
            self._drop_early(s)
            self._stop_reader(s)
        await asyncio.gather(*(asyncio.to_thread(self._stop, s) for s in self._slots), return_exceptions=True)
        self._pool.close()

    # ------------------------------------------------------------------ processes
    def _spawn(self, slot: _Slot) -> None:
        """Start the slot's worker and wait (blocking, in a thread) until its models are loaded."""
        from affectstream.engine.executor.worker import main

        req_recv, req_send = self._ctx.Pipe(duplex=False)
        rep_recv, rep_send = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=main,
            args=(req_recv, rep_send, self.factory, self._threads),
            name=f"affectstream-worker-{slot.index}",
            daemon=True,
        )
        with _env_lock:  # the child inherits these before it imports numpy / ONNX Runtime
            saved = {k: os.environ.get(k) for k in PIN_ENV}
            os.environ.update({k: str(self._threads) for k in PIN_ENV})
            try:
                proc.start()
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        req_recv.close()  # the child's ends: closed here so a dead child reads as EOF
        rep_send.close()
        try:
            if not rep_recv.poll(self._start_timeout):
                raise WorkerFailed(
                    f"worker {slot.index} did not load its analyzer in {self._start_timeout:.0f} s"
                )
            msg = rep_recv.recv()
        except (EOFError, OSError) as e:
            msg = ("failed", f"worker exited during start-up (exit code {proc.exitcode}): {e}")
        except WorkerFailed:
            proc.kill()
            raise
        if msg[0] != "ready":
            proc.join(5)
            raise WorkerFailed(f"worker {slot.index}: {msg[1]}")
        slot.proc, slot.requests, slot.replies = proc, req_send, rep_recv
        slot.generation += 1
        slot.ready = True
        slot.broken = None

    def _start_reader(self, slot: _Slot) -> None:
        """Read the worker's replies on the event loop itself (no reader thread): one wake-up less per
        window, which matters on a busy machine where every wake-up waits for a core."""
        assert self._loop is not None
        slot.reader_fd = slot.replies.fileno()
        self._loop.add_reader(slot.reader_fd, self._readable, slot, slot.generation)

    def _stop_reader(self, slot: _Slot) -> None:
        if slot.reader_fd is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(slot.reader_fd)
        slot.reader_fd = None

    def _readable(self, slot: _Slot, gen: int) -> None:
        conn = slot.replies
        try:
            while gen == slot.generation and conn.poll():
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    raise
                except Exception as e:  # an unpicklable result: treat like an analysis error
                    msg = ("error", slot.batch_id, f"{type(e).__name__}: {e}", "")
                self._on_reply(slot, gen, msg)
        except (EOFError, OSError):  # the worker is gone
            self._stop_reader(slot)
            self._on_death(slot, gen)

    def _stop(self, slot: _Slot) -> None:
        proc = slot.proc
        slot.ready = False
        if proc is None:
            return
        with contextlib.suppress(Exception):
            slot.requests.send(("stop",))
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        for c in (slot.requests, slot.replies):
            with contextlib.suppress(Exception):
                c.close()

    # ------------------------------------------------------------------ scheduling
    def _slot_for(self, stream_id: str) -> _Slot:
        now = time.monotonic()
        hit = self._assign.get(stream_id)
        if hit is not None and self._slots[hit[0]].broken is None:
            self._assign[stream_id] = (hit[0], now)
            self._assign.move_to_end(stream_id)
            return self._slots[hit[0]]
        usable = [s for s in self._slots if s.broken is None] or self._slots
        load = {s.index: 0 for s in usable}
        for i, t in self._assign.values():
            if i in load and now - t < ACTIVE_S:
                load[i] += 1
        best = min(usable, key=lambda s: (load[s.index], len(s.queue) + len(s.busy or ()), s.index))
        self._assign[stream_id] = (best.index, now)
        self._assign.move_to_end(stream_id)
        while len(self._assign) > MAX_STREAMS:
            self._assign.popitem(last=False)
        return best

    def _kick(self, slot: _Slot) -> None:
        """Send the slot's next batch if it is idle: windows first, early frames only when none wait."""
        idle = slot.busy is None and slot.busy_early is None and slot.ready and not self._closing
        if idle and not slot.queue and slot.early:
            early = [slot.early.popleft() for _ in range(min(EARLY_BATCH, len(slot.early)))]
            slot.batch_id += 1
            slot.busy_early = early
            with contextlib.suppress(OSError, ValueError):
                slot.requests.send(("early", slot.batch_id, [e.desc for e in early]))
            return
        if not idle or not slot.queue:
            if slot.broken is not None:
                self._fail(list(slot.queue), WorkerFailed(f"worker {slot.index} unavailable: {slot.broken}"))
                slot.queue.clear()
                self._drop_early(slot)
            return
        batch = slot.planner.take(slot.queue, lambda j: j.window.closed_at)
        slot.batch_id += 1
        slot.busy = batch
        slot.sent_at = time.perf_counter()
        # a worker that died between two messages fails the send; its reader thread reports the death
        with contextlib.suppress(OSError, ValueError):
            slot.requests.send(("batch", slot.batch_id, [j.desc for j in batch]))

    def _drop_early(self, slot: _Slot) -> None:
        """Release every early-frame segment of the slot (queued or in the worker's hands)."""
        for e in list(slot.early) + list(slot.busy_early or ()):
            self._pool.release(e.segment)
        slot.early.clear()
        slot.busy_early = None

    def _on_reply(self, slot: _Slot, gen: int, msg: tuple[Any, ...]) -> None:
        if gen != slot.generation or msg[1] != slot.batch_id:
            return
        if slot.busy_early is not None:
            early, slot.busy_early = slot.busy_early, None
            for e in early:
                self._pool.release(e.segment)
            if msg[0] == "early":
                self.early_frames += int(msg[2])
            else:
                log.warning("early frames failed in worker %d: %s", slot.index, msg[2])
            self._kick(slot)
            return
        if slot.busy is None:
            return
        batch, slot.busy = slot.busy, None
        if msg[0] == "result":
            results, seconds = msg[2], msg[3]
            slot.planner.observe(len(batch), seconds)
            set_analyze_ms(results, seconds)
            slot.completed += len(batch)
            slot.batches += 1
            self.completed += len(batch)
            for job, res in zip(batch, results, strict=False):
                self._pool.release(job.segment)
                if not job.future.done():
                    job.future.set_result(res)
            if len(results) != len(batch):
                self._fail(batch[len(results) :], RuntimeError("analyzer returned too few results"))
        else:
            log.warning("analysis failed in worker %d: %s", slot.index, msg[2])
            self._fail(batch, RuntimeError(msg[2]))
        self._kick(slot)

    def _fail(self, jobs: list[_Job], err: BaseException) -> None:
        for job in jobs:
            self._pool.release(job.segment)
            if not job.future.done():
                self.failed += 1
                job.future.set_exception(err)

    def _on_death(self, slot: _Slot, gen: int) -> None:
        if gen != slot.generation or self._closing:
            return
        code = slot.proc.exitcode if slot.proc is not None else None
        log.warning(
            "analysis worker %d (pid %s) died (exit code %s); replacing it",
            slot.index,
            getattr(slot.proc, "pid", None),
            code,
        )
        slot.ready = False
        slot.restarts += 1
        batch, slot.busy = slot.busy or [], None
        self._drop_early(slot)
        retry = [j for j in batch if j.tries < 1]
        self._fail(
            [j for j in batch if j.tries >= 1], WorkerFailed(f"worker {slot.index} died twice on this window")
        )
        for j in reversed(retry):  # back at the head of the queue, in order
            j.tries += 1
            self.retried += 1
            slot.queue.appendleft(j)
        self._stop_reader(slot)
        for c in (slot.requests, slot.replies):
            with contextlib.suppress(Exception):
                c.close()
        task = asyncio.get_running_loop().create_task(self._respawn(slot))
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _respawn(self, slot: _Slot) -> None:
        try:
            await asyncio.to_thread(self._spawn, slot)
        except Exception as e:
            slot.broken = str(e)
            log.warning("analysis worker %d could not be replaced: %s", slot.index, e)
            self._fail(list(slot.queue), WorkerFailed(f"worker {slot.index} could not be replaced: {e}"))
            slot.queue.clear()
            return
        if self._closing:
            self._stop(slot)
            return
        self._start_reader(slot)
        self._kick(slot)


def _rss_mb(pid: int | None) -> float | None:
    """Resident memory of a worker (Linux /proc), for `stats` and the capacity bench."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/statm") as f:
            pages = int(f.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None
