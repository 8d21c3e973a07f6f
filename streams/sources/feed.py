"""Hand-off from a blocking decode thread to the event loop, bounded.

PyAV, OpenCV and pyaudio all block, so each source decodes in its own daemon thread and the event loop
only ever awaits. Two policies, because the right one depends on who sets the pace:
- files (not live): the decoder waits when the consumer is behind (`block`), so nothing is lost and
  memory stays bounded at `maxsize` items;
- cameras, mics, network streams (live): the decoder never waits, since the world does not pause; when
  `maxsize` items are pending the oldest *video frame* is dropped (audio is small and a hole in it hurts
  more), counted in `SourceStats.dropped_frames`; audio is only dropped beyond `AUDIO_CAP_FACTOR`
  times that (a consumer stalled for seconds), counted the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable

from affectstream.engine.types import MediaItem, VideoFrame
from affectstream.streams.sources.base import SourceError, SourceStats

_END = object()
AUDIO_CAP_FACTOR = 16
THREAD_PREFIX = "source:"  # every decode thread's name starts with this


def blocked_decoders() -> int:
    """Decode threads still alive, e.g. stuck in a blocking FFmpeg open after their source was stopped.

    The process entry point asks this at exit: interpreter shutdown with a thread inside C code can
    crash, so it exits at once instead when any remain (everything else is closed by then)."""
    return sum(1 for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive())


class Stopped(Exception):
    """Raised inside the producer thread by `emit` once the consumer has gone away."""


class Emitter:
    """What the producer thread calls: `emit(item)` and `stopped`."""

    def __init__(self, feed: ThreadFeed) -> None:
        self._feed = feed

    @property
    def stopped(self) -> bool:
        return self._feed._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early when stopped; returns True if stopped."""
        return self._feed._stop.wait(seconds)

    def __call__(self, item: MediaItem) -> None:
        self._feed._put(item)


class ThreadFeed:
    """Runs `produce(emit)` in a daemon thread; iterate it from the event loop to get the items.

    `produce` returns at end of stream, or raises (a `SourceError` is re-raised in the consumer as is;
    anything else is wrapped into a `SourceError` naming `what`).
    """

    def __init__(
        self,
        produce: Callable[[Emitter], None],
        *,
        what: str,
        stats: SourceStats,
        live: bool,
        maxsize: int = 8,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._produce = produce
        self._what = what
        self._stats = stats
        self._live = live
        self._maxsize = maxsize
        self._items: deque[object] = deque()
        self._space = threading.Semaphore(maxsize)
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ended = False  # stop(end=True) was called: iteration ends at once

    # ---- producer side (thread) ----------------------------------------------------------------
    def _put(self, item: object) -> None:
        if self._stop.is_set():
            raise Stopped
        loop = self._loop
        assert loop is not None
        if not self._live:
            while not self._space.acquire(timeout=0.1):
                if self._stop.is_set() or loop.is_closed():  # consumer gone without closing us
                    raise Stopped
        try:
            loop.call_soon_threadsafe(self._deliver, item)
        except RuntimeError as e:  # loop closed under us
            raise Stopped from e

    def _run(self) -> None:
        try:
            self._produce(Emitter(self))
        except Stopped:
            pass
        except SourceError as e:
            self._final(e)
            return
        except Exception as e:
            self._final(SourceError(f"{self._what}: {type(e).__name__}: {e}"))
            return
        self._final(_END)

    def _final(self, item: object) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._deliver, item, True)

    # ---- consumer side (event loop) ------------------------------------------------------------
    def _deliver(self, item: object, final: bool = False) -> None:
        if self._live and not final and len(self._items) >= self._maxsize:
            self._drop_one()
        self._items.append(item)
        assert self._event is not None
        self._event.set()

    def _drop_one(self) -> None:
        for i, old in enumerate(self._items):
            if isinstance(old, VideoFrame):
                del self._items[i]
                self._stats.dropped_frames += 1
                return
        if len(self._items) >= self._maxsize * AUDIO_CAP_FACTOR:
            self._items.popleft()
            self._stats.dropped_frames += 1

    def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name=f"{THREAD_PREFIX}{self._what}", daemon=True)
        self._thread.start()

    async def items(self) -> AsyncIterator[MediaItem]:
        """The items, in order; raises the producer's `SourceError`, ends at end of stream."""
        if self._ended:
            return
        self.start()
        assert self._event is not None
        try:
            while True:
                while not self._items:
                    self._event.clear()
                    await self._event.wait()
                item = self._items.popleft()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                if not self._live:
                    self._space.release()
                yield item  # type: ignore[misc]
        finally:
            self.stop()

    def stop(self, *, end: bool = False) -> None:
        """Ask the producer to stop; it notices at its next item or wait (never blocks the loop).

        With `end`, the consumer's iteration also ends now, without waiting for a producer that is stuck
        in a blocking open or read (FFmpeg honours its own timeout; the daemon thread exits after it).
        """
        self._stop.set()
        if not end or self._ended:
            return
        self._ended = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not started: `items()` sees `_ended` and returns at once
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._end_now)

    def _end_now(self) -> None:
        self._items.appendleft(_END)
        if self._event is not None:
            self._event.set()

    async def join(self, timeout: float = 2.0) -> bool:
        """Stop and wait (off the loop) for the producer thread; False if it is still blocked."""
        self.stop()
        t = self._thread
        if t is None:
            return True
        await asyncio.to_thread(t.join, timeout)
        return not t.is_alive()
