"""A network stream (rtsp://, udp://, http(s)://, rtmp://...) with reconnect and exponential backoff.

Network streams drop: a camera reboots, Wi-Fi hiccups, an encoder restarts. The source reopens the URL
with exponential backoff (counted in `stats.reconnects`) and keeps the stream clock continuous across
the gap, so windows after a reconnect do not go back in time. A URL that never answers (connection
refused, nothing sent) gives up after `max_retries` attempts in a row with one clear `SourceError`.
A clean end of stream over HTTP(S) is the end of a finite resource (a file, an HLS playlist that
ended) and ends the source normally; on other protocols, or when a known duration was not reached, it
counts as a drop and the source reconnects (`end_on_eof` overrides this).

Pacing: RTSP/UDP/RTMP/SRT streams are live (the sender sets the pace; frames the engine cannot take in
time are dropped, counted). HTTP(S) is read with back-pressure like a file, since it is mostly a file or
a playlist that the decoder could otherwise read faster than the engine analyses it; TCP flow control
slows a live HTTP sender instead (`live` overrides this).
"""

from __future__ import annotations

import logging
import math
import re
import time
from urllib.parse import urlsplit

import av.error
from affectstream.streams.sources.base import SourceError, ThreadedSource
from affectstream.streams.sources.feed import Emitter
from affectstream.streams.sources.pyav_decode import (
    Clock,
    container_duration,
    decode,
    open_input,
    pick_tracks,
)

log = logging.getLogger("affectstream.streams.sources")

# FFmpeg's UDP input reads the socket in its own thread into a ring buffer of `fifo_size` 188-byte
# packets, which the demuxer drains. A ring's write position sweeps its whole capacity even when it holds
# almost nothing, so every page of it becomes resident within `capacity / bitrate` seconds and stays so:
# the capacity is what each UDP stream costs in RSS, and until it is reached RSS climbs at the stream's
# bitrate. The earlier 100,000 packets (18.8 MB) cost 18.8 MB per stream and, on a 1 Mbit/s stream, took
# 150 s to fill: the start-up ramp of the 4-stream soak (bench/RESULTS.md, "soak"). The decode thread
# reads continuously (a live source never waits for the analysis; it drops frames at the feed instead), so
# the ring only has to bridge short stalls of that thread: FFmpeg's own default, 7 x 4096 packets
# (5.4 MB), holds ~2.7 s of a 16 Mbit/s camera and ~43 s of a 1 Mbit/s stream. A sender with a higher
# bitrate can raise it per stream in the URL (`udp://host:port?fifo_size=N`, which FFmpeg reads over this
# option); an overrun is not fatal (`overrun_nonfatal`), it loses packets that show up as `decode_errors`.
UDP_FIFO_PACKETS = 7 * 4096

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp", "http", "https")


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


def default_options(url: str) -> dict[str, str]:
    """FFmpeg demuxer/protocol options that make live streams start fast and fail clearly."""
    scheme = urlsplit(url).scheme.lower()
    # Probe ~1 s instead of 5 s: a live stream must start showing results quickly.
    opts = {"analyzeduration": "1000000", "probesize": "1000000"}
    if scheme in ("rtsp", "rtsps"):
        opts["rtsp_transport"] = "tcp"  # no UDP port ranges to open, no reordering losses
    elif scheme == "udp":
        opts["overrun_nonfatal"] = "1"
        opts["fifo_size"] = str(UDP_FIFO_PACKETS)
    return opts


def is_final(e: SourceError) -> bool:
    """An HTTP 4xx (not found, forbidden, unauthorized...) is the server's final answer: retrying with
    backoff only delays the error line by the whole retry budget. 5xx, 429 (too many requests) and
    network errors are retried."""
    cause = e.__cause__
    return isinstance(cause, av.error.HTTPClientError) and not isinstance(
        cause, av.error.HTTPTooManyRequestsError
    )


class UrlSource(ThreadedSource):
    """Frames and audio from a network URL, decoded by PyAV in a thread; reconnects when it drops."""

    live = True

    def __init__(
        self,
        url: str,
        stream_id: str,
        *,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        options: dict[str, str] | None = None,
        queue_size: int = 8,
        end_on_eof: bool | None = None,
        live: bool | None = None,
    ) -> None:
        super().__init__(stream_id)
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.url = url
        self.what = redact(url)
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.options = {**default_options(url), **(options or {})}
        self.queue_size = queue_size
        scheme = urlsplit(url).scheme.lower()
        is_http = scheme in ("http", "https")
        self.end_on_eof = is_http if end_on_eof is None else end_on_eof
        self.live = (not is_http) if live is None else live

    def _delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))

    def _produce(self, emit: Emitter) -> None:
        failures = 0  # consecutive attempts that produced nothing
        connected_before = False
        next_index = 0
        offset = 0.0
        dropped_at: float | None = None
        last_reason = ""
        while not emit.stopped:
            try:
                container = open_input(
                    self.url,
                    what=self.what,
                    options=self.options,
                    timeout=(self.open_timeout, self.read_timeout),
                )
                try:
                    tracks = pick_tracks(container, what=self.what, stats=self.stats)
                except SourceError:
                    container.close()
                    raise
            except SourceError as e:
                if emit.stopped:
                    return
                last_reason = str(e)
                if is_final(e):
                    raise SourceError(f"{last_reason} (not retried: the server answered for good)") from None
                failures += 1
                if failures > self.max_retries:
                    raise SourceError(f"{last_reason} (gave up after {failures} attempts)") from None
                log.warning("%s; retrying in %.1f s", last_reason, self._delay(failures))
                if emit.wait(self._delay(failures)):
                    return
                continue
            if connected_before:
                self.stats.reconnects += 1
                gap = time.monotonic() - dropped_at if dropped_at is not None else 0.0
                log.info("%s: reconnected after %.1f s", self.what, gap)
                offset += gap
            duration = container_duration(container)
            start_offset = offset
            clock = Clock(offset=offset)
            try:
                res = decode(
                    container, tracks, emit, self.stats, clock, what=self.what, first_index=next_index
                )
            finally:
                container.close()
            if emit.stopped:
                return
            if res.items > 0:
                connected_before = True
                failures = 0
                next_index = res.next_index
                offset = res.last_ts if math.isfinite(res.last_ts) else offset
            if res.error is None and res.items > 0:
                played = res.last_ts - start_offset
                if duration is not None and played >= duration - 1.0:
                    return  # a finite stream that played to its end
                if duration is None and self.end_on_eof:
                    return
            dropped_at = time.monotonic()
            last_reason = f"{self.what}: stream dropped ({res.error or 'end of stream'})"
            if res.items == 0:
                failures += 1
                if failures > self.max_retries:
                    raise SourceError(f"{last_reason}; gave up after {failures} attempts")
            self.stats.errors += 1
            log.warning("%s; reconnecting in %.1f s", last_reason, self._delay(max(failures, 1)))
            if emit.wait(self._delay(max(failures, 1))):
                return
