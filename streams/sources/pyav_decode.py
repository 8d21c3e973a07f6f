"""The PyAV decode loop shared by the file and URL sources.

One job: open a container, pick the first video and first audio track, and turn packets into
`VideoFrame` (BGR uint8) and `AudioChunk` (16 kHz mono float32, via `av.AudioResampler`) with
timestamps on the stream's own clock. FFmpeg's errors are translated into one-line `SourceError`s here,
so every caller reports bad input the same way.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
import av.error
from affectstream.engine.types import SAMPLE_RATE, AudioChunk, VideoFrame
from affectstream.streams.sources.base import SourceError, SourceStats

log = logging.getLogger("affectstream.streams.sources")

# A run of this many undecodable packets in a row means the stream is garbage, not a glitch.
MAX_CONSECUTIVE_DECODE_ERRORS = 50


def open_input(
    url: str,
    *,
    what: str,
    options: dict[str, str] | None = None,
    timeout: float | tuple[float, float] | None = None,
    fmt: str | None = None,
) -> Any:
    """`av.open` for reading, with FFmpeg's exceptions turned into one-line `SourceError`s."""
    try:
        return av.open(url, mode="r", format=fmt, options=options or {}, timeout=timeout)
    except av.error.FileNotFoundError as e:
        raise SourceError(f"{what}: no such file") from e
    except av.error.IsADirectoryError as e:
        raise SourceError(f"{what}: is a directory, not a media file") from e
    except av.error.PermissionError as e:
        raise SourceError(f"{what}: permission denied") from e
    except av.error.ConnectionRefusedError as e:
        raise SourceError(f"{what}: connection refused") from e
    except (av.error.TimeoutError, av.error.ExitError) as e:
        raise SourceError(f"{what}: timed out while opening") from e
    except av.error.InvalidDataError as e:
        raise SourceError(
            f"{what}: not a readable media file (unknown format, or truncated/corrupt before its index)"
        ) from e
    except (av.error.HTTPError, av.error.HTTPClientError) as e:
        raise SourceError(f"{what}: HTTP error ({e.strerror})") from e
    except av.error.FFmpegError as e:
        raise SourceError(f"{what}: cannot open ({e.strerror or type(e).__name__})") from e
    except OSError as e:
        raise SourceError(f"{what}: cannot open ({e.strerror or e})") from e


@dataclass(slots=True)
class Tracks:
    video: Any | None
    audio: Any | None


def pick_tracks(container: Any, *, what: str, stats: SourceStats) -> Tracks:
    """First decodable video and audio track. A track whose codec has no decoder here is skipped with a
    warning (counted) while the other modality still works; if nothing decodable is left, SourceError."""
    problems = []

    def first(streams: Any) -> Any | None:
        for s in streams:
            if s.codec_context is None:
                problems.append(f"{s.type} track #{s.index}")
                continue
            return s
        return None

    video = first(container.streams.video)
    audio = first(container.streams.audio)
    if video is None and audio is None:
        if problems:
            raise SourceError(f"{what}: unsupported codec: no decoder for the {' or '.join(problems)}")
        raise SourceError(f"{what}: no video or audio track")
    for p in problems:
        stats.errors += 1
        log.warning("%s: unsupported codec, no decoder for the %s; skipping it", what, p)
    if video is not None:
        video.thread_type = "AUTO"
    return Tracks(video, audio)


class Clock:
    """Maps a track's raw seconds onto the source's clock: `ts = raw - base + offset`.

    The base is the first timestamp seen (or the container's start time), so files start near 0 and a
    reconnected network stream continues where the last one stopped instead of jumping back. When one
    track jumps back by more than `max_back` s against its own previous timestamp inside one connection
    (an encoder restart on a UDP/MPEG-TS stream), that is a discontinuity: the clock is rebased so the
    track continues from where it was, and the jump is counted. Files pass `max_back=inf`: their tracks
    may be interleaved loosely, and their timestamps are what they are.
    """

    def __init__(self, offset: float = 0.0, base: float | None = None, max_back: float = 1.0) -> None:
        self.offset = offset
        self.base = base
        self.max_back = max_back
        self.last = -math.inf
        self.discontinuities = 0
        self._track_last: dict[str, float] = {}

    def __call__(self, raw: float, track: str = "") -> float:
        if self.base is None:
            self.base = raw
        ts = raw - self.base + self.offset
        prev = self._track_last.get(track)
        if prev is not None and ts < prev - self.max_back:
            self.discontinuities += 1
            self.offset += prev - ts
            ts = prev
        self._track_last[track] = ts
        self.last = max(self.last, ts)
        return ts


@dataclass(slots=True)
class DecodeResult:
    items: int = 0
    error: str | None = None  # why the loop stopped early (demux/decode failure), None at a clean EOF
    last_ts: float = -math.inf
    next_index: int = 0  # the VideoFrame.index to continue from after a reconnect


def decode(
    container: Any,
    tracks: Tracks,
    emit: Callable[[VideoFrame | AudioChunk], None],
    stats: SourceStats,
    clock: Clock,
    *,
    what: str,
    first_index: int = 0,
    pace: Callable[[float], None] | None = None,
) -> DecodeResult:
    """Demux and decode until EOF or a fatal error; `emit` each item. Returns how it ended.

    Damage is skipped, never fatal: a packet the decoder rejects, a frame that cannot be converted, or a
    demuxer read that fails on corrupt bytes is counted in `stats.decode_errors` and decoding goes on
    (the demuxer resynchronises on the next packet it can parse, the decoder on the next keyframe), the
    way `ffmpeg` itself plays through a damaged file. Only a long run of damage in a row
    (`MAX_CONSECUTIVE_DECODE_ERRORS`), a read timeout or an I/O error ends the loop with
    `DecodeResult.error` set (the caller decides: end a file, reconnect a URL).
    """
    res = DecodeResult()
    want = [s for s in (tracks.video, tracks.audio) if s is not None]
    resampler = _resampler() if tracks.audio is not None else None
    index = first_index
    res.next_index = index
    fps = float(tracks.video.guessed_rate or tracks.video.average_rate or 25) if tracks.video else 25.0
    last_v: float | None = None
    next_a: float | None = None
    bad_run = 0

    def damaged(e: BaseException, where: str) -> bool:
        """Count one piece of damage; True when the run of damage in a row is too long to go on."""
        nonlocal bad_run
        stats.decode_errors += 1
        bad_run += 1
        if stats.decode_errors == 1 or bad_run == 1:
            log.info("%s: skipping damaged %s (%s)", what, where, _describe(e))
        if bad_run >= MAX_CONSECUTIVE_DECODE_ERRORS:
            res.error = f"{bad_run} damaged packets in a row (last: {_describe(e)})"
            return True
        return False

    def put_audio(frames: list[Any]) -> None:
        nonlocal next_a
        for o in frames:
            samples = o.to_ndarray().reshape(-1)
            if samples.size == 0:
                continue
            ts = (
                clock(float(o.time), "a")
                if o.pts is not None
                else (next_a if next_a is not None else clock.last)
            )
            if pace is not None:
                pace(ts)
            emit(AudioChunk(ts, samples, SAMPLE_RATE))
            stats.audio_chunks += 1
            stats.audio_seconds += samples.size / SAMPLE_RATE
            next_a = ts + samples.size / SAMPLE_RATE
            res.items += 1
            res.last_ts = max(res.last_ts, next_a)

    def put_video(f: Any) -> None:
        nonlocal last_v, index
        image = f.to_ndarray(format="bgr24")
        raw = f.time
        if raw is not None:
            ts = clock(float(raw), "v")
        else:
            ts = (last_v + 1.0 / fps) if last_v is not None else clock(0.0, "v")
        last_v = ts
        if pace is not None:
            pace(ts)
        emit(VideoFrame(ts, image, index))
        index += 1
        res.next_index = index
        stats.frames += 1
        res.items += 1
        res.last_ts = max(res.last_ts, ts + 1.0 / fps)

    try:
        while True:  # one pass per demuxer resync: a failed read ends `demux()`, the next call goes on
            try:
                for packet in container.demux(want):
                    try:
                        frames = packet.decode()
                    except av.error.EOFError:
                        continue
                    except _DAMAGE as e:
                        if damaged(e, "packet"):
                            return res
                        continue
                    bad_run = 0
                    for f in frames:
                        try:
                            if packet.stream is tracks.video:
                                put_video(f)
                            elif resampler is not None:
                                put_audio(resampler.resample(f))
                        except _DAMAGE as e:
                            if damaged(e, "frame"):
                                return res
                            if packet.stream is not tracks.video:
                                resampler = _resampler()  # a changed format/layout confuses the old one
                break  # demux() ended at EOF
            except (av.error.EOFError, StopIteration):
                break
            except (av.error.TimeoutError, av.error.ExitError):
                raise
            except (av.error.InvalidDataError, av.error.PatchWelcomeError, av.error.BugError) as e:
                if damaged(e, "data in the container"):
                    return res
                continue
        if resampler is not None:
            with contextlib.suppress(*_DAMAGE):
                put_audio(resampler.resample(None))
    except (av.error.TimeoutError, av.error.ExitError):
        res.error = "timed out waiting for data"
    except av.error.FFmpegError as e:
        res.error = _describe(e)
    except OSError as e:
        res.error = f"{type(e).__name__}: {e}"
    return res


# What one damaged packet or frame raises: every FFmpeg error (InvalidDataError and the EINVAL family),
# plus PyAV's own ValueError for a frame whose format a converter cannot handle. PyAV has no
# `av.error.ValueError`; `FFmpegError` is the base of every FFmpeg error class it does have.
_DAMAGE: tuple[type[BaseException], ...] = (av.error.FFmpegError, ValueError)


def _describe(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return f"{type(e).__name__}: {msg}"


def _resampler() -> Any:
    return av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)


def container_start(container: Any) -> float | None:
    st = container.start_time
    return None if st is None else st / 1_000_000


def container_duration(container: Any) -> float | None:
    d = container.duration
    return None if d is None or d <= 0 else d / 1_000_000
