"""The network source against real streams served on 127.0.0.1: ffmpeg pushing MPEG-TS over UDP, a
local HTTP server (whole, and dropping the connection mid-stream), and a refused RTSP port."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from affectstream.engine.types import AudioChunk, VideoFrame
from affectstream.streams.sources.base import SourceError
from affectstream.streams.sources.url import UrlSource, redact
from affectstream.streams.windower import Windower
from fixtures_media import free_loopback_port

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")


async def push_udp(clip: Path, port: int, seconds: float | None = None) -> None:
    """ffmpeg sends the clip in real time as MPEG-TS to 127.0.0.1:port (a live UDP stream)."""
    args = [FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-i", str(clip)]
    if seconds:
        args += ["-t", str(seconds)]
    args += ["-c", "copy", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"]
    proc = await asyncio.create_subprocess_exec(*args)
    try:
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@needs_ffmpeg
async def test_udp_stream_decodes_live_frames_and_audio(mpegts_clip: Path):
    port = free_loopback_port(socket.SOCK_DGRAM)
    src = UrlSource(f"udp://127.0.0.1:{port}", "udp", open_timeout=8, read_timeout=2, max_retries=0)
    pusher = asyncio.create_task(push_udp(mpegts_clip, port))
    video, audio = [], []
    w = Windower("udp")
    wins = []
    try:
        async for item in src:
            (video if isinstance(item, VideoFrame) else audio).append(item)
            wins += w.push(item)
            if len(video) >= 40 and sum(len(a.samples) for a in audio) >= 2.5 * 16_000:
                break
    finally:
        await src.close()
        pusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pusher
    assert all(f.image.shape == (384, 384, 3) and f.image.dtype == np.uint8 for f in video)
    assert [f.ts for f in video] == sorted(f.ts for f in video)
    assert all(isinstance(a, AudioChunk) and a.sample_rate == 16_000 for a in audio)
    assert wins and len(wins[0].frames) == 8 and len(wins[0].audio) == 32_000


@needs_ffmpeg
@pytest.mark.slow
async def test_udp_stream_that_drops_is_reconnected_with_a_continuous_clock(mpegts_clip: Path):
    port = free_loopback_port(socket.SOCK_DGRAM)
    src = UrlSource(
        f"udp://127.0.0.1:{port}", "udp", open_timeout=8, read_timeout=1.0, max_retries=3, backoff=0.1
    )

    async def two_bursts():
        await push_udp(mpegts_clip, port, seconds=2)
        await asyncio.sleep(2.5)  # longer than read_timeout: the source sees the stream drop
        await push_udp(mpegts_clip, port, seconds=2)

    pusher = asyncio.create_task(two_bursts())
    video: list[VideoFrame] = []
    reconnect_at = None
    try:
        async for item in src:
            if isinstance(item, VideoFrame):
                video.append(item)
            if src.stats.reconnects and reconnect_at is None:
                reconnect_at = len(video)
            if reconnect_at is not None and len(video) >= reconnect_at + 10:
                break
    finally:
        await src.close()
        pusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pusher
    assert src.stats.reconnects == 1
    before, after = video[: reconnect_at - 1], video[reconnect_at:]
    assert after[0].ts > before[-1].ts + 1.0  # the clock went on through the gap, not back to 0
    idx = [f.index for f in video]
    assert idx == sorted(set(idx))  # frame numbering continues across the reconnect (live drops allowed)


async def test_refused_connection_gives_up_after_bounded_retries():
    port = free_loopback_port()
    src = UrlSource(f"rtsp://user:secret@127.0.0.1:{port}/cam", "cam", max_retries=2, backoff=0.05)
    t = time.monotonic()
    with pytest.raises(SourceError) as e:
        async for _ in src:
            pass
    msg = str(e.value)
    assert "connection refused" in msg and "3 attempts" in msg and "\n" not in msg
    assert "secret" not in msg  # credentials never reach logs
    assert time.monotonic() - t < 5


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files; the first request for `/drop/...` sends half the bytes and cuts the connection."""

    cut_once: ClassVar[dict[str, bool]] = {}

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if not self.path.startswith("/drop/"):
            return super().do_GET()
        name = self.path[len("/drop/") :]
        data = (Path(self.directory) / name).read_bytes()
        first = not self.cut_once.get(name)
        self.cut_once[name] = True
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if first:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        else:
            self.wfile.write(data)


@pytest.fixture
def http_server(mpegts_clip: Path) -> Iterator[int]:
    _Handler.cut_once = {}
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(mpegts_clip.parent))
    )
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield int(srv.server_address[1])
    srv.shutdown()
    srv.server_close()


@needs_ffmpeg
async def test_http_stream_plays_to_its_end(http_server: int, mpegts_clip: Path):
    src = UrlSource(f"http://127.0.0.1:{http_server}/{mpegts_clip.name}", "http", max_retries=0)
    assert not src.live  # HTTP is read with back-pressure: a fast decoder must not drop frames
    items = []
    async for i in src:
        items.append(i)
        await asyncio.sleep(0.001)  # a consumer slower than the decoder
    video = [i for i in items if isinstance(i, VideoFrame)]
    assert len(video) == 60 and [f.index for f in video] == list(range(60))
    assert src.stats.reconnects == 0 and src.stats.errors == 0 and src.stats.dropped_frames == 0


@needs_ffmpeg
async def test_http_connection_cut_midway_is_reconnected(http_server: int, mpegts_clip: Path):
    src = UrlSource(
        f"http://127.0.0.1:{http_server}/drop/{mpegts_clip.name}", "http", max_retries=2, backoff=0.05
    )
    items = [i async for i in src]
    video = [i for i in items if isinstance(i, VideoFrame)]
    assert src.stats.reconnects == 1 and src.stats.errors >= 1
    assert 60 < len(video) < 120  # half a clip, then the whole clip again
    ts = [f.ts for f in video]
    assert ts == sorted(ts)


def test_redact_hides_passwords():
    assert redact("rtsp://admin:hunter2@10.0.0.5:554/s1") == "rtsp://admin:***@10.0.0.5:554/s1"
    assert redact("udp://127.0.0.1:5000") == "udp://127.0.0.1:5000"


def test_clock_rebases_a_restarted_stream_and_counts_it():
    from affectstream.streams.sources.pyav_decode import Clock

    c = Clock()
    first = [c(1.4 + t / 10, "v") for t in range(50)] + [c(1.4 + t / 10, "a") for t in range(50)]
    assert first[0] == 0.0 and max(first) == pytest.approx(4.9)
    # the encoder restarts: raw timestamps begin again at 1.4 s
    v = c(1.4, "v")
    a = c(1.45, "a")
    assert c.discontinuities == 1
    assert v == pytest.approx(4.9) and a == pytest.approx(4.95)
    files = Clock(max_back=float("inf"))
    assert files(10.0, "v") == 0.0 and files(7.0, "a") == -3.0 and files.discontinuities == 0


@needs_ffmpeg
async def test_rtsp_stream_pushed_by_ffmpeg(mpegts_clip: Path):
    """RTSP with the source in listen mode on 127.0.0.1 and ffmpeg publishing to it (no RTSP server
    package is available here; the demuxing and decoding path is the same as for a camera's RTSP)."""
    url = f"rtsp://127.0.0.1:{free_loopback_port()}/live"
    src = UrlSource(
        url,
        "rtsp",
        options={"rtsp_flags": "listen", "listen_timeout": "10"},
        open_timeout=12,
        read_timeout=3,
        max_retries=0,
    )

    async def publish():
        await asyncio.sleep(0.5)
        args = ["-hide_banner", "-loglevel", "quiet", "-re", "-i", str(mpegts_clip), "-c", "copy"]
        proc = await asyncio.create_subprocess_exec(
            FFMPEG, *args, "-f", "rtsp", "-rtsp_transport", "tcp", url
        )
        try:
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    pub = asyncio.create_task(publish())
    video, audio = [], []
    try:
        async for item in src:
            (video if isinstance(item, VideoFrame) else audio).append(item)
            if len(video) >= 20 and audio:
                break
    finally:
        await src.close()
        pub.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pub
    assert all(f.image.shape == (384, 384, 3) for f in video)
    assert audio[0].sample_rate == 16_000 and audio[0].samples.dtype == np.float32
