"""One caller: its WebRTC tracks become a live `Source`, and its connection is watched until it ends.

Why it is built this way:
- aiortc hands decoded frames to an unbounded queue per track, so each track gets a reader task that
  takes every frame as soon as it arrives; only what the engine can use is converted (video is capped
  at `max_video_fps`: a window samples 8 frames per 2 s, so converting 30 fps would burn CPU for
  nothing), and what is converted waits in a small drop-oldest buffer, counted in
  `stats.dropped_frames`. Received media therefore never backs up, whatever the analyzer does.
- RTP timestamps start at random values per track, so each track is mapped onto one clock: stream
  time 0 is when the peer was created, and stream time = sender time + an offset. The offset is the
  smallest (arrival − sender time) seen during a track's first `SETTLE_S` seconds — the least delayed
  frame is the best estimate of capture time, whereas anchoring on the first frame would put the whole
  track ahead of real time by however late that frame was (the first keyframe often is). After that
  the sender's own timestamps keep the spacing exact. A jump of more than `REBASE_S` away from the
  wall clock (sender restart, wrap) re-anchors the track instead of opening a huge gap.
- Audio from browsers is 48 kHz stereo s16 in 20 ms frames; `av.AudioResampler` turns it into the
  16 kHz mono float32 the engine expects.
- Frames may change size mid-call (Chromium starts at 480x360 while its bandwidth estimate ramps up);
  they pass through as they are and are counted in `resolution_changes`.
- No media is ever written anywhere: frames live only in memory until their window is analyzed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import av
import numpy as np
from affectstream.engine.types import SAMPLE_RATE, AudioChunk, MediaItem, VideoFrame
from affectstream.streams.sources.base import Source

log = logging.getLogger("affectstream.web")

REBASE_S = 2.0  # a track whose timestamps drift this far from the wall clock is re-anchored
SETTLE_S = 2.0  # how long a track's clock offset may still move down to a less delayed frame
AUDIO_CAP_FACTOR = 16  # audio items buffered at most: this many times the video cap (audio is small)


class TrackClock:
    """Maps one track's sender timestamps (seconds) onto stream time, as described above."""

    def __init__(self) -> None:
        self.offset: float | None = None
        self._settle_until = 0.0
        self.rebases = 0

    def ts(self, sender: float, now: float) -> float:
        cand = now - sender
        if self.offset is None or abs(sender + self.offset - now) > REBASE_S:
            if self.offset is not None:
                self.rebases += 1
            self.offset, self._settle_until = cand, now + SETTLE_S
        elif cand < self.offset and now < self._settle_until:
            self.offset = cand
        return sender + self.offset


class PeerSource(Source):
    """The live source fed by one caller's tracks (any of: one video, one audio)."""

    live = True

    def __init__(self, stream_id: str, *, max_video_fps: float = 15.0, max_queue: int = 8) -> None:
        super().__init__(stream_id)
        if max_video_fps <= 0:
            raise ValueError(f"max_video_fps must be > 0, got {max_video_fps}")
        self.max_video_fps = max_video_fps
        self.max_queue = max(1, max_queue)
        self.t0 = time.monotonic()
        self.t0_unix = time.time()
        self.last_media = self.t0  # monotonic time of the last frame of any kind
        self.kinds: set[str] = set()
        self.video_received = 0  # every decoded frame aiortc delivered
        self.video_skipped = 0  # above max_video_fps, never converted
        self.resolution_changes = 0
        self.frame_size: tuple[int, int] | None = None
        self._items: deque[MediaItem] = deque()
        self._video_queued = 0
        self._event = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []
        self._closed = False
        self._frame_index = 0

    # ------------------------------------------------------------------ tracks
    def attach(self, track: Any) -> None:
        """Start reading one incoming aiortc track (`kind` 'video' or 'audio'); others are ignored."""
        if track.kind == "video":
            coro = self._read_video(track)
        elif track.kind == "audio":
            coro = self._read_audio(track)
        else:
            return
        self.kinds.add(track.kind)
        task = asyncio.create_task(coro, name=f"webrtc:{self.stream_id}:{track.kind}")
        task.add_done_callback(lambda _t: self._event.set())
        self._readers.append(task)

    def _now(self) -> float:
        return time.monotonic() - self.t0

    async def _read_video(self, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        clock = TrackClock()
        last_kept = -1e9
        min_dt = 1.0 / self.max_video_fps * 0.9  # 10 % slack: sender clocks wobble
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = self._now()
            self.last_media = time.monotonic()
            self.video_received += 1
            sender = float(frame.pts * frame.time_base) if frame.pts is not None else now
            ts = clock.ts(sender, now)
            if ts - last_kept < min_dt:
                self.video_skipped += 1
                continue
            last_kept = ts
            size = (frame.width, frame.height)
            if self.frame_size is not None and size != self.frame_size:
                self.resolution_changes += 1
            self.frame_size = size
            img = frame.to_ndarray(format="bgr24")
            self._push(VideoFrame(ts=ts, image=img, index=self._frame_index))
            self._frame_index += 1
            self.stats.frames += 1

    async def _read_audio(self, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        clock = TrackClock()
        next_ts: float | None = None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = self._now()
            self.last_media = time.monotonic()
            sender = float(frame.pts * frame.time_base) if frame.pts is not None else now
            expected = clock.ts(sender, now)
            for out in resampler.resample(frame):
                samples = np.ascontiguousarray(out.to_ndarray().reshape(-1), dtype=np.float32)
                if samples.size == 0:
                    continue
                # Count samples for exact spacing; follow the sender's clock only across real gaps.
                if next_ts is None or abs(expected - next_ts) > 0.1:
                    next_ts = expected
                self._push(AudioChunk(ts=next_ts, samples=samples))
                next_ts += samples.size / SAMPLE_RATE
                self.stats.audio_chunks += 1
                self.stats.audio_seconds += samples.size / SAMPLE_RATE

    # ------------------------------------------------------------------ buffer
    def _push(self, item: MediaItem) -> None:
        if self._closed:
            return
        if isinstance(item, VideoFrame):
            if self._video_queued >= self.max_queue:
                self._drop_oldest_video()
            self._video_queued += 1
        elif len(self._items) >= self.max_queue * AUDIO_CAP_FACTOR:
            old = self._items.popleft()
            if isinstance(old, VideoFrame):
                self._video_queued -= 1
            self.stats.dropped_frames += 1
        self._items.append(item)
        self._event.set()

    def _drop_oldest_video(self) -> None:
        for i, old in enumerate(self._items):
            if isinstance(old, VideoFrame):
                del self._items[i]
                self._video_queued -= 1
                self.stats.dropped_frames += 1
                return

    def __aiter__(self) -> AsyncIterator[MediaItem]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[MediaItem]:
        while True:
            while not self._items:
                if self._closed or (self._readers and all(t.done() for t in self._readers)):
                    return
                self._event.clear()
                await self._event.wait()
            item = self._items.popleft()
            if isinstance(item, VideoFrame):
                self._video_queued -= 1
            yield item

    @property
    def ended(self) -> bool:
        """Every track this caller sent has ended (or the source was closed)."""
        return self._closed or (bool(self._readers) and all(t.done() for t in self._readers))

    async def close(self) -> None:
        """Stop reading; buffered items are discarded, the engine flushes what the windower holds."""
        if self._closed:
            return
        self._closed = True
        self._items.clear()
        self._video_queued = 0
        for t in self._readers:
            t.cancel()
        for t in self._readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._event.set()

    def counters(self) -> dict[str, Any]:
        return {
            **self.stats.to_dict(),
            "video_received": self.video_received,
            "video_skipped": self.video_skipped,
            "resolution_changes": self.resolution_changes,
            "frame_size": list(self.frame_size) if self.frame_size else None,
        }


class Peer:
    """One RTCPeerConnection, its `PeerSource`, and the watchdog that tears it down.

    Teardown happens once, for the first of: the connection failing or closing, the caller's tracks all
    ending, no connection within `connect_timeout`, no media for `media_timeout` (a caller whose machine
    vanished sends nothing, and ICE consent checks take ~30 s to notice), or server shutdown.
    """

    def __init__(
        self,
        stream_id: str,
        *,
        configuration: Any,
        connect_timeout: float = 30.0,
        media_timeout: float = 10.0,
        max_video_fps: float = 15.0,
        on_channel: Callable[[Peer, Any], None] | None = None,
        on_closed: Callable[[Peer, str], Awaitable[None]] | None = None,
    ) -> None:
        from aiortc import RTCPeerConnection

        self.stream_id = stream_id
        self.source = PeerSource(stream_id, max_video_fps=max_video_fps)
        self.pc = RTCPeerConnection(configuration=configuration)
        self.connect_timeout = connect_timeout
        self.media_timeout = media_timeout
        self.channel: Any = None
        self.close_reason: str | None = None
        self.created = time.monotonic()
        self.connected_at: float | None = None
        self._on_channel = on_channel
        self._on_closed = on_closed
        self._closing: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.pump: asyncio.Task[None] | None = None

        @self.pc.on("track")
        def _on_track(track: Any) -> None:
            self.source.attach(track)

        @self.pc.on("datachannel")
        def _on_datachannel(channel: Any) -> None:
            self.channel = channel
            if self._on_channel is not None:
                if channel.readyState == "open":
                    self._on_channel(self, channel)
                else:
                    channel.on("open", lambda: self._on_channel and self._on_channel(self, channel))

        @self.pc.on("connectionstatechange")
        def _on_state() -> None:
            state = self.pc.connectionState
            if state == "connected" and self.connected_at is None:
                self.connected_at = time.monotonic()
            if state in ("failed", "closed"):
                self.close_soon(f"connection {state}")

    async def answer(self, sdp: str, kind: str = "offer") -> Any:
        """Apply the caller's offer and return our answer (raises ValueError on a malformed offer)."""
        from aiortc import RTCSessionDescription

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        if not self.source.kinds:
            raise ValueError("the offer has no audio or video track to analyze")
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription

    def start_watchdog(self) -> None:
        self._watchdog = asyncio.create_task(self._watch(), name=f"watchdog:{self.stream_id}")

    async def _watch(self) -> None:
        while self.close_reason is None:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            if self.connected_at is None:
                if now - self.created > self.connect_timeout:
                    self.close_soon(f"not connected within {self.connect_timeout:g} s")
                continue
            if self.source.ended:
                self.close_soon("caller's tracks ended")
            elif now - self.source.last_media > self.media_timeout:
                self.close_soon(f"no media for {self.media_timeout:g} s")
            elif self.pump is not None and self.pump.done():
                self.close_soon("stream ended")

    def close_soon(self, reason: str) -> None:
        """Schedule `close(reason)` (safe to call from aiortc callbacks, and more than once)."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self.close(reason))

    async def close(self, reason: str = "closed") -> None:
        if self.close_reason is not None:
            return
        self.close_reason = reason
        log.info("peer %s closing: %s", self.stream_id, reason)
        await self.source.close()
        with contextlib.suppress(Exception):
            await self.pc.close()
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        if self._on_closed is not None:
            await self._on_closed(self, reason)
