"""What one live UDP stream costs in resident memory once data has flowed through it.

FFmpeg's UDP input keeps a ring buffer of `fifo_size` 188-byte packets filled by its own receive thread.
The ring's write position sweeps the whole capacity even while it holds almost nothing, so each page of
it becomes resident as the stream's bytes pass and stays resident: a stream's RSS climbs at the stream's
bitrate until the whole ring is in memory. With the former `fifo_size=100000` (18.8 MB per stream) this
took 150 s on a 1 Mbit/s stream and was the start-up ramp of the 4-stream soak (bench/RESULTS.md, "soak").

The test streams 24 MiB of real MPEG-TS (faster than real time, paced so the loopback socket does not
drop much) through a real `UrlSource` running in a child process, and compares the child's RSS before
and after: the growth must stay within the ring the source now asks FFmpeg for (5.4 MB) plus a little
slack, not follow the bytes sent. Measured on the 2-core dev box: 4.9 and 5.4 MiB with the 5.4 MB ring,
17.6 and 17.7 MiB with the old 18.8 MB one (which fails the 8 MiB bound).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from affectstream.streams.sources.url import UDP_FIFO_PACKETS, default_options
from fixtures_media import free_loopback_port

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or not Path("/proc/self/status").exists(),
    reason="needs ffmpeg (for the MPEG-TS clip) and Linux /proc (for RSS)",
)

# The child: a UrlSource on udp://127.0.0.1:PORT, consumed as fast as it comes; answers "stat" on
# stdin with "<VmRSS KiB> <frames> <decode_errors> <dropped_frames>" on stdout.
CHILD = r"""
import asyncio, sys
from affectstream.streams.sources.url import UrlSource

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

async def main():
    src = UrlSource(f"udp://127.0.0.1:{sys.argv[1]}", "mem", open_timeout=30, read_timeout=30, max_retries=0)

    async def consume():
        async for _ in src:
            pass

    task = asyncio.create_task(consume())
    loop = asyncio.get_running_loop()
    while (cmd := (await loop.run_in_executor(None, sys.stdin.readline)).strip()) != "quit":
        s = src.stats
        print(rss_kib(), s.frames, s.decode_errors, s.dropped_frames, flush=True)
    src.stop()
    task.cancel()

asyncio.run(main())
"""

MIB = 1024 * 1024
# FFmpeg's default ring (5.4 MB = 5.1 MiB) and ~3 MiB for everything else; the old ring alone was 17.9 MiB
MAX_GROWTH = 8 * MIB


def send_ts(sock: socket.socket, port: int, data: bytes, nbytes: int, rate: float = 12 * MIB) -> None:
    """Send `nbytes` of the looped clip as 1316-byte datagrams (7 TS packets, like ffmpeg's udp muxer),
    paced at about `rate` bytes/s so the kernel's socket buffer is not overrun on a busy machine."""
    chunk, burst = 1316, 48
    sent, pos, t0 = 0, 0, time.monotonic()
    while sent < nbytes:
        for _ in range(burst):
            if pos >= len(data):
                pos = 0
            sock.sendto(data[pos : pos + chunk], ("127.0.0.1", port))
            pos += chunk
            sent += chunk
        ahead = sent / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)


def test_udp_source_asks_ffmpeg_for_a_small_ring():
    opts = default_options("udp://127.0.0.1:5000")
    assert int(opts["fifo_size"]) == UDP_FIFO_PACKETS
    assert UDP_FIFO_PACKETS * 188 <= 8 * MIB
    assert opts["overrun_nonfatal"] == "1"


def test_rss_of_a_udp_stream_stops_at_its_ring_not_at_the_bytes_sent(mpegts_clip: Path):
    # 188-byte aligned payload: the clip's TS packets, looped (the timestamps jump back at each loop,
    # which the source's clock counts as discontinuities; the decoders resynchronise).
    data = mpegts_clip.read_bytes()
    data = data[: len(data) // 1316 * 1316]
    port = free_loopback_port(socket.SOCK_DGRAM)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None

    def stat() -> tuple[int, int, int, int]:
        child.stdin.write("stat\n")
        child.stdin.flush()
        a, b, c, d = (int(x) for x in child.stdout.readline().split())
        return a, b, c, d

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            # warm up: the source opens, probes, and its decoders allocate their frame pools
            deadline = time.monotonic() + 60
            while stat()[1] < 60:
                assert time.monotonic() < deadline, "the UDP source produced no frames"
                send_ts(sock, port, data, 256 * 1024, rate=MIB)
            time.sleep(1.0)
            rss0, frames0, _, _ = stat()
            send_ts(sock, port, data, 24 * MIB)
            time.sleep(1.5)
            rss1, frames1, errors, dropped = stat()
        child.stdin.write("quit\n")
        child.stdin.flush()
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    growth = (rss1 - rss0) * 1024
    # the data did flow through the decoder (24 MB is ~200 s of this clip: ~3000 frames; a loaded
    # machine may drop some at the feed or lose some datagrams, hence the low bar)
    assert frames1 - frames0 + dropped >= 500, (frames0, frames1, dropped, errors)
    assert growth < MAX_GROWTH, (
        f"RSS grew {growth / MIB:.1f} MiB while 24 MiB passed through one UDP source "
        f"(frames {frames0} -> {frames1}, decode errors {errors})"
    )
