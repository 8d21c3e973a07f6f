"""What every source is: an async iterator of timestamped frames and audio for one stream.

Decoding runs in a thread (PyAV/OpenCV/pyaudio block), so the event loop keeps serving MQTT and the
other streams. A source that cannot be opened raises `SourceError` with one human-readable line; the
engine prints it (no traceback) and keeps the other streams running.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from affectstream.engine.types import MediaItem

if TYPE_CHECKING:
    from affectstream.streams.sources.feed import Emitter, ThreadFeed


class SourceError(RuntimeError):
    """A source failed in a way the user must hear about (missing file, refused URL, no device...)."""


@dataclass(slots=True)
class SourceStats:
    frames: int = 0
    audio_chunks: int = 0
    audio_seconds: float = 0.0
    reconnects: int = 0
    dropped_frames: int = 0  # frames dropped because the consumer was behind (live sources)
    errors: int = 0
    decode_errors: int = 0  # damaged packets/frames skipped while the stream went on

    def to_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


class Source(ABC):
    """One stream. `stream_id` names it in topics; `live` says whether it paces itself (camera, mic)."""

    stream_id: str
    live: bool = False
    duration: float | None = None  # seconds, when known (files), for progress bars

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        self.stats = SourceStats()

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[MediaItem]: ...

    def stop(self) -> None:
        """Ask the source to end soon (SIGINT/SIGTERM); safe to call from the event loop at any time."""
        return None

    async def close(self) -> None:
        return None


class ThreadedSource(Source):
    """A source whose media comes from a blocking `_produce(emit)` run in a daemon thread.

    Why one base: the file, URL, camera and microphone sources all decode in a thread and hand items to
    the event loop through a bounded `ThreadFeed`; iteration, stop and close are the same for all four.
    `stop()` ends the iteration at once (the consumer does not wait for a producer stuck in a blocking
    open or read) and wakes every backoff wait of the producer, which then exits at its next check.
    """

    what: str = "source"
    queue_size: int = 8

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self._feed: ThreadFeed | None = None
        self._stop_requested = False

    @abstractmethod
    def _produce(self, emit: Emitter) -> None:
        """Decode until the end of the media (return) or a fatal problem (raise `SourceError`)."""

    def __aiter__(self) -> AsyncIterator[MediaItem]:
        from affectstream.streams.sources.feed import ThreadFeed

        self._feed = ThreadFeed(
            self._produce, what=self.what, stats=self.stats, live=self.live, maxsize=self.queue_size
        )
        if self._stop_requested:
            self._feed.stop(end=True)
        return self._feed.items()

    def stop(self) -> None:
        self._stop_requested = True
        if self._feed is not None:
            self._feed.stop(end=True)

    async def close(self) -> None:
        """Stop the producer and wait for its thread (2 s; 0.5 s after `stop()`, when a prompt exit is
        what was asked for); a thread still blocked in FFmpeg's own open/read timeout is a daemon and
        exits by itself, so closing never hangs the engine."""
        if self._feed is None or await self._feed.join(0.5 if self._stop_requested else 2.0):
            self._release()

    def _release(self) -> None:
        """Free what `open()` may have taken before iteration started (e.g. a probed container)."""
        return None
