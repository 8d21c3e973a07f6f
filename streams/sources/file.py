"""A media file as a stream: PyAV decode in a thread, as fast as possible or paced in real time.

As fast as possible is the default for files (batch analysis of a recording); `realtime=True` replays
it at its own speed so a file can stand in for a camera. Either way the decoder blocks when the consumer
is behind, so no frame of a file is ever dropped and memory stays bounded.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from affectstream.streams.sources.base import SourceError, ThreadedSource
from affectstream.streams.sources.feed import Emitter
from affectstream.streams.sources.pyav_decode import (
    Clock,
    container_duration,
    container_start,
    decode,
    open_input,
    pick_tracks,
)

log = logging.getLogger("affectstream.streams.sources")

# A file whose decoded media ends this much before its declared duration is reported as truncated.
TRUNCATION_SLACK_S = 0.5


def check_file(path: Path) -> None:
    """The checks FFmpeg would report vaguely, with a clear line each."""
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    if path.is_dir():
        raise SourceError(f"{path}: is a directory, not a media file")
    if not os.access(path, os.R_OK):
        raise SourceError(f"{path}: permission denied")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: empty file (0 bytes)")


# FFmpeg demuxers that read a single picture (or a numbered sequence of them), not a stream.
_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif", "gif_pipe"}


def check_not_still_image(container: Any, *, what: str) -> None:
    """A still image has no time axis, so no window can ever close on it: say so instead of ending
    silently with no result. (A GIF with several frames is a stream and passes.)"""
    names = set((container.format.name or "").split(","))
    if not names & _IMAGE_FORMATS and not any(n.endswith("_pipe") for n in names):
        return
    if container.streams.audio:
        return
    v = container.streams.video[0] if container.streams.video else None
    if v is not None and (v.frames or 0) > 1:
        return
    raise SourceError(
        f"{what}: a still image, not a video stream; analysis needs video or audio over time "
        "(give a video file, a camera or a stream URL)"
    )


class FileSource(ThreadedSource):
    """Frames and audio of one file. Raises `SourceError` (one line) for files that cannot be used.

    `open()` probes the file eagerly so the CLI can report a bad file before anything starts; iteration
    opens it if that was not done. A file that ends early (truncated) yields what decodes, then ends,
    with `stats.errors` incremented and a warning logged.
    """

    live = False

    def __init__(
        self, path: str | os.PathLike[str], stream_id: str, *, realtime: bool = False, speed: float = 1.0
    ) -> None:
        super().__init__(stream_id)
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.path = Path(path)
        self.realtime = realtime
        self.speed = speed
        self.has_video = False
        self.has_audio = False
        self.truncated = False
        self.what = str(self.path)
        self._container = None
        self._tracks = None

    def open(self) -> None:
        """Open and probe the file now (idempotent); raises SourceError with one clear line."""
        if self._container is not None:
            return
        check_file(self.path)
        container = open_input(str(self.path), what=str(self.path))
        try:
            check_not_still_image(container, what=str(self.path))
            tracks = pick_tracks(container, what=str(self.path), stats=self.stats)
        except SourceError:
            container.close()
            raise
        self._container, self._tracks = container, tracks
        self.has_video, self.has_audio = tracks.video is not None, tracks.audio is not None
        self.duration = container_duration(container)

    def _produce(self, emit: Emitter) -> None:
        self.open()
        container, tracks = self._container, self._tracks
        assert container is not None and tracks is not None
        pace = None
        if self.realtime:
            t0: float | None = None

            def pace(ts: float) -> None:
                nonlocal t0
                now = time.monotonic()
                if t0 is None:
                    t0 = now - ts / self.speed
                delay = t0 + ts / self.speed - now
                if delay > 0:
                    emit.wait(delay)

        try:
            start = container_start(container)
            res = decode(
                container,
                tracks,
                emit,
                self.stats,
                Clock(base=start, max_back=math.inf),
                what=str(self.path),
                pace=pace,
            )
        finally:
            container.close()
            self._container = None
        if emit.stopped:
            return
        if res.error is not None:
            self.stats.errors += 1
            self.truncated = True
            log.warning("%s: decoding stopped early (%s); truncated or corrupt file", self.path, res.error)
        if self.stats.decode_errors:  # the run's exit summary says it too
            log.info(
                "%s: skipped %d damaged packet(s)/frame(s); the rest was analysed",
                self.path,
                self.stats.decode_errors,
            )
        elif self.duration is not None and res.last_ts < self.duration - TRUNCATION_SLACK_S:
            self.stats.errors += 1
            self.truncated = True
            log.warning(
                "%s: media ends at %.2f s of a declared %.2f s; truncated file",
                self.path,
                max(res.last_ts, 0.0),
                self.duration,
            )
        if res.items == 0:
            raise SourceError(f"{self.path}: no decodable frames or audio (corrupt or truncated file)")

    def _release(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
