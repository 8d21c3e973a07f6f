"""WebRTC test helpers: a server on a running engine, and aiortc callers that send real media.

Everything stays on 127.0.0.1: ICE gathers only the loopback host candidate (`ice.loopback_only`)
and no STUN server is configured. The callers send the astronaut photo (a real face, panning) and
the Beckett recording (real speech) — as a file through aiortc's `MediaPlayer`, or as synthetic
tracks whose frame size can change mid-call and whose capture times are known (for latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from av import AudioFrame
from av import VideoFrame as AvVideoFrame

HOST = "127.0.0.1"


class FaceVideoTrack(VideoStreamTrack):
    """A real face at `fps`, panning like `media.moving_frames`; `sizes` switches resolution in time.

    `sizes` is a list of (seconds_from_start, (w, h)); `captured[pts]` keeps the wall time each frame
    was produced, so a test can measure capture → result latency.
    """

    kind = "video"

    def __init__(self, fps: int = 15, sizes: list[tuple[float, tuple[int, int]]] | None = None) -> None:
        super().__init__()
        from media import astronaut_bgr, moving_frames

        self.fps = fps
        self.sizes = sizes or [(0.0, (384, 384))]
        self._base = moving_frames(astronaut_bgr(), 60, (512, 512))
        self._n = 0
        self._t0: float | None = None
        self.sent = 0

    def _size_at(self, t: float) -> tuple[int, int]:
        size = self.sizes[0][1]
        for start, s in self.sizes:
            if t >= start:
                size = s
        return size

    async def recv(self) -> AvVideoFrame:
        import cv2

        if self._t0 is None:
            self._t0 = time.monotonic()
        target = self._t0 + self._n / self.fps
        await asyncio.sleep(max(0.0, target - time.monotonic()))
        w, h = self._size_at(self._n / self.fps)
        img = cv2.resize(self._base[self._n % len(self._base)], (w, h), interpolation=cv2.INTER_AREA)
        frame = AvVideoFrame.from_ndarray(img, format="bgr24")
        frame.pts = int(self._n * 90000 / self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self._n += 1
        self.sent += 1
        return frame


class SpeechAudioTrack(AudioStreamTrack):
    """Real speech as a browser sends it: 48 kHz stereo s16 in 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        from media import beckett_audio

        a16 = beckett_audio(16000)
        idx = np.arange(0, len(a16), 1 / 3)  # 16 k → 48 k, linear
        a48 = np.interp(idx, np.arange(len(a16)), a16)
        s16 = (np.clip(a48, -1, 1) * 32767).astype(np.int16)
        self._pcm = np.stack([s16, s16], axis=1).reshape(-1)  # interleaved stereo
        self._pos = 0
        self._t0: float | None = None
        self._n = 0

    async def recv(self) -> AudioFrame:
        if self._t0 is None:
            self._t0 = time.monotonic()
        target = self._t0 + self._n * 0.02
        await asyncio.sleep(max(0.0, target - time.monotonic()))
        n = 960  # 20 ms at 48 kHz
        need = n * 2
        if self._pos + need > len(self._pcm):
            self._pos = 0
        chunk = self._pcm[self._pos : self._pos + need]
        self._pos += need
        frame = AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = self._n * n
        frame.time_base = fractions.Fraction(1, 48000)
        self._n += 1
        return frame


@dataclass
class Caller:
    """One aiortc caller; `messages` are the parsed data-channel payloads, with arrival time."""

    pc: RTCPeerConnection
    stream: str = ""
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    def of(self, schema_prefix: str) -> list[dict[str, Any]]:
        return [m for _, m in self.messages if str(m.get("schema", "")).startswith(schema_prefix)]

    @property
    def windows(self) -> list[dict[str, Any]]:
        return self.of("affectstream.window/")

    async def wait_windows(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.windows) < n:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def close(self) -> None:
        await self.pc.close()


async def call(
    base_url: str,
    tracks: list[Any],
    *,
    stream: str | None = None,
    token: str | None = None,
    datachannel: bool = True,
    ssl: Any = None,
) -> Caller:
    """Offer `tracks` to the server at `base_url`, answer applied; raises on a non-200 answer."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    caller = Caller(pc)
    if datachannel:
        ch = pc.createDataChannel("affectstream")

        @ch.on("open")
        def _open() -> None:
            caller.opened.set()

        @ch.on("message")
        def _msg(data: str) -> None:
            caller.messages.append((time.time(), json.loads(data)))

    for t in tracks:
        pc.addTrack(t)
    await pc.setLocalDescription(await pc.createOffer())
    body: dict[str, Any] = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
    if stream:
        body["stream"] = stream
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{base_url}offer", json=body, headers=headers, ssl=ssl) as r,
    ):
        if r.status != 200:
            await pc.close()
            raise RuntimeError(f"offer refused: {r.status} {await r.text()}")
        ans = await r.json()
    caller.stream = ans["stream"]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=ans["sdp"], type=ans["type"]))
    return caller


@dataclass
class RunningServer:
    server: Any
    engine: Any
    channels: Any

    @property
    def base_url(self) -> str:
        scheme = "https" if self.server.config.tls_cert else "http"
        return f"{scheme}://{HOST}:{self.server.port}/"

    async def wait_peers(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.server.peers) != n:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True


@contextlib.asynccontextmanager
async def webrtc_server(
    analyzer: Any, sinks: list[Any] | None = None, **config: Any
) -> AsyncIterator[RunningServer]:
    """A WebRtcServer on a free 127.0.0.1 port over a real Pipeline (smoother on, no reasoning).

    Pass the session `lite_analyzer` fixture (tests/fixtures_perception.py) as `analyzer`.
    """
    from affectstream.engine.config import load_settings
    from affectstream.engine.pipeline import Pipeline
    from affectstream.engine.smoother import Smoother, SmootherSettings
    from affectstream.streams.web.datachannel import DataChannelSink
    from affectstream.streams.web.ice import loopback_only
    from affectstream.streams.web.server import ServerConfig, WebRtcServer

    settings = load_settings(None, {"reasoning.enabled": False})
    channels = DataChannelSink()
    engine = Pipeline(
        settings,
        analyzer,
        [channels, *(sinks or [])],
        smoother=Smoother(SmootherSettings()),
        node_id="webrtc-test",
    )
    server = WebRtcServer(ServerConfig(host=HOST, port=0, **config), engine, channels)
    with loopback_only():
        await server.start()
        try:
            yield RunningServer(server, engine, channels)
        finally:
            await server.close()
