"""What every source is: an async iterator of timestamped frames and audio for one stream.

Decoding runs in a thread (PyAV/OpenCV/pyaudio block), so the event loop keeps serving MQTT and the
other streams. A source that cannot be opened raises `SourceError` with one human-readable line; the
engine prints it (no traceback) and keeps the other streams running.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

from affectstream.engine.types import MediaItem


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

    async def close(self) -> None:
        return None
