"""Stopping and giving up: a stop signal ends a source that is opening, reading or backing off within
2 s; an HTTP 4xx is final (no retries); a still image is refused with one line; the audio library's
device-probing noise does not reach the terminal.

Before the fix a URL source ignored stop while it opened or retried (SIGTERM took ~73 s), a 404 was
retried for ~17 s, and an image file ended silently with no window.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import socket
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from affectstream.streams.sources.base import SourceError, ThreadedSource
from affectstream.streams.sources.camera import CameraSource
from affectstream.streams.sources.file import FileSource
from affectstream.streams.sources.mic import MicSource, quiet_stderr
from affectstream.streams.sources.url import UrlSource
from fixtures_media import free_loopback_port

STOP_BUDGET_S = 2.0


def test_the_four_thread_sources_share_one_base() -> None:
    for cls in (FileSource, UrlSource, CameraSource, MicSource):
        assert issubclass(cls, ThreadedSource)
        assert "__aiter__" not in vars(cls) and "close" not in vars(cls), cls


async def _stop_after(src: UrlSource, delay: float) -> tuple[float, float, list[object]]:
    """Iterate `src`, call `stop()` after `delay`; returns (s from stop to end of iteration, s for
    close(), items)."""
    items: list[object] = []

    async def consume() -> None:
        async for item in src:
            items.append(item)

    task = asyncio.create_task(consume())
    await asyncio.sleep(delay)
    assert not task.done(), "the source ended before it was stopped"
    t0 = time.monotonic()
    src.stop()
    await asyncio.wait_for(task, 10)
    ended = time.monotonic() - t0
    t1 = time.monotonic()
    await src.close()
    return ended, time.monotonic() - t1, items


def test_stop_interrupts_opening_a_silent_udp_stream() -> None:
    """Nothing sends: the source is blocked in FFmpeg's open (10 s timeout per attempt)."""
    port = free_loopback_port(socket.SOCK_DGRAM)
    src = UrlSource(f"udp://127.0.0.1:{port}", "udp", open_timeout=10.0, read_timeout=5.0)
    ended, closed, items = asyncio.run(_stop_after(src, 1.5))
    assert items == []
    assert ended < STOP_BUDGET_S
    assert closed < STOP_BUDGET_S + 0.5


def test_stop_interrupts_backoff_between_retries() -> None:
    """Connection refused at once, then a long backoff wait: stop wakes it."""
    port = free_loopback_port()  # nothing listens there
    src = UrlSource(f"tcp://127.0.0.1:{port}", "tcp", open_timeout=2.0, backoff=30.0, max_backoff=30.0)
    ended, closed, _ = asyncio.run(_stop_after(src, 1.5))
    assert ended < STOP_BUDGET_S
    assert closed < STOP_BUDGET_S


def test_stop_before_iteration_ends_at_once() -> None:
    port = free_loopback_port(socket.SOCK_DGRAM)
    src = UrlSource(f"udp://127.0.0.1:{port}", "udp")
    src.stop()

    async def go() -> list[object]:
        out = [item async for item in src]
        await src.close()
        return out

    t0 = time.monotonic()
    assert asyncio.run(go()) == []
    assert time.monotonic() - t0 < STOP_BUDGET_S


class _Counting404(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_error(404, "Not Found")

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def http_404() -> tuple[str, type[_Counting404]]:
    handler = type("Handler", (_Counting404,), {"hits": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/missing.mp4", handler
    server.shutdown()
    server.server_close()


def test_http_404_is_final_not_retried(http_404: tuple[str, type[_Counting404]]) -> None:
    url, handler = http_404
    src = UrlSource(url, "missing", max_retries=5, backoff=0.5)

    async def go() -> None:
        async for _ in src:
            pass

    t0 = time.monotonic()
    with pytest.raises(SourceError) as err:
        asyncio.run(go())
    assert time.monotonic() - t0 < 3.0
    assert "404" in str(err.value) and "not retried" in str(err.value)
    assert "\n" not in str(err.value)
    assert handler.hits == 1


def _write_png(path: Path) -> None:
    with av.open(str(path), "w", format="image2") as c:
        s = c.add_stream("png")
        s.width, s.height, s.pix_fmt = 64, 48, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 128, np.uint8), format="rgb24")
        for pkt in s.encode(frame):
            c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)


def test_still_image_is_refused_with_one_line(tmp_path: Path) -> None:
    png = tmp_path / "face.png"
    _write_png(png)
    assert png.stat().st_size > 0
    with pytest.raises(SourceError) as err:
        FileSource(png, "img").open()
    msg = str(err.value)
    assert "still image" in msg and "\n" not in msg


def test_quiet_stderr_catches_c_level_output(capfd: pytest.CaptureFixture[str]) -> None:
    """ALSA/JACK write to file descriptor 2 directly; the probe must not show it."""
    with quiet_stderr("mic"):
        os.write(2, b"ALSA lib pcm.c:2666:(snd_pcm_open_noupdate) Unknown PCM cards.pcm.rear\n" * 65)
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "ALSA" not in err
    assert "after" in err


def test_missing_mic_is_one_line_without_library_noise(capfd: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyaudio")
    src = MicSource(99, "mic99")

    async def go() -> None:
        async for _ in src:
            pass

    with pytest.raises(SourceError) as err:
        asyncio.run(go())
    assert "mic:99" in str(err.value)
    noise = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert len(noise) <= 1, noise
