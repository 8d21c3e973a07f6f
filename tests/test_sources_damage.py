"""Damaged media keeps streaming: the corrupt-media corpus (README, "Damage, stops and failures").

The corpus is generated here from the bundled sample (`examples/sample.mp4`, real face and speech):
random bytes written at several offsets, truncated remuxes, bit flips inside video packets and inside
audio packets, and an MPEG-TS stream with damaged segments sent over UDP on 127.0.0.1. For every case
the source must end without an exception, carry on past the damage, and every window of the undamaged
parts must arrive. Before the fix, one damaged packet ended the stream with
`AttributeError: module 'av.error' has no attribute 'ValueError'`.
"""

from __future__ import annotations

import asyncio
import io
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import pytest
from affectstream.engine.types import AudioChunk, VideoFrame
from affectstream.streams.sources.file import FileSource
from affectstream.streams.sources.url import UrlSource
from affectstream.streams.windower import Windower
from fixtures_media import free_loopback_port

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample.mp4"
LENGTH, HOP = 2.0, 1.0


@dataclass
class Run:
    video_ts: list[float] = field(default_factory=list)
    audio_end: float = 0.0
    windows: set[int] = field(default_factory=set)
    stats: dict[str, float] = field(default_factory=dict)


def _windower() -> Windower:
    return Windower("s", length=LENGTH, hop=HOP, n_frames=4, max_skew=10.0)


async def _consume(src, until_ts: float | None = None, timeout: float = 60.0) -> Run:  # type: ignore[no-untyped-def]
    run = Run()
    w = _windower()
    deadline = time.monotonic() + timeout
    async for item in src:
        if isinstance(item, VideoFrame):
            run.video_ts.append(item.ts)
        elif isinstance(item, AudioChunk):
            run.audio_end = max(run.audio_end, item.end)
        run.windows.update(win.index for win in w.push(item))
        if until_ts is not None and run.video_ts and run.video_ts[-1] >= until_ts:
            break
        assert time.monotonic() < deadline, "source did not reach the end in time"
    run.windows.update(win.index for win in w.flush())
    await src.close()
    run.stats = src.stats.to_dict()
    return run


def _decode_file(path: Path) -> Run:
    src = FileSource(path, "s")
    src.open()
    return asyncio.run(_consume(src))


@dataclass(frozen=True)
class PacketMap:
    """Where each packet of a file lies (byte range) and when it plays, per track."""

    video: list[tuple[int, int, float]]  # (pos, size, seconds)
    audio: list[tuple[int, int, float]]
    duration: float


def _packet_map(path: Path) -> PacketMap:
    video, audio = [], []
    with av.open(str(path)) as c:
        for p in c.demux():
            if p.pos is None or p.pos < 0 or p.pts is None or p.size == 0:
                continue
            row = (int(p.pos), int(p.size), float(p.pts * p.time_base))
            (video if p.stream.type == "video" else audio).append(row)
        duration = c.duration / 1_000_000
    return PacketMap(video, audio, duration)


def _damaged_span(pm: PacketMap, lo: int, hi: int) -> tuple[float, float]:
    """The playback time of the packets whose bytes overlap [lo, hi)."""
    times = [t for pos, size, t in pm.video + pm.audio if pos < hi and pos + size > lo]
    assert times, "the damage must hit at least one packet"
    return min(times), max(times)


def _expected_windows(duration: float, span: tuple[float, float]) -> set[int]:
    """Windows that lie wholly outside the damaged span (+1 s for the decoder to resynchronise)."""
    t0, t1 = span[0], span[1] + 1.0
    out = set()
    k = 0
    while k * HOP + LENGTH <= duration - 0.1:
        start, end = k * HOP, k * HOP + LENGTH
        if end <= t0 or start >= t1:
            out.add(k)
        k += 1
    return out


@pytest.fixture(scope="module")
def clean() -> Run:
    return _decode_file(SAMPLE)


@pytest.fixture(scope="module")
def sample_map() -> PacketMap:
    return _packet_map(SAMPLE)


def _check_survived(run: Run, clean: Run, duration: float, span: tuple[float, float]) -> None:
    assert run.video_ts, "no video decoded at all"
    # carried on past the damage, to the end of the file
    assert run.video_ts[-1] >= clean.video_ts[-1] - 0.5
    assert any(t > span[1] + 1.0 for t in run.video_ts)
    # every window of the undamaged parts arrived
    missing = _expected_windows(duration, span) - run.windows
    assert not missing, f"windows of undamaged parts missing: {sorted(missing)}"


def test_clean_sample_baseline(clean: Run, sample_map: PacketMap) -> None:
    assert clean.stats["decode_errors"] == 0
    assert len(clean.video_ts) >= 140
    assert _expected_windows(sample_map.duration, (99.0, 99.0)) <= clean.windows


def test_issue_repro_20000_random_bytes_at_the_middle(
    tmp_path: Path, clean: Run, sample_map: PacketMap
) -> None:
    """The reported case: 20,000 random bytes at the middle stopped after 3 of 9 windows."""
    data = bytearray(SAMPLE.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 20_000] = random.Random(18).randbytes(20_000)
    bad = tmp_path / "middle.mp4"
    bad.write_bytes(bytes(data))
    run = _decode_file(bad)
    assert run.stats["decode_errors"] > 0, "the damage must have been seen (and skipped)"
    _check_survived(run, clean, sample_map.duration, _damaged_span(sample_map, mid, mid + 20_000))
    assert len(run.windows) >= 8


@pytest.mark.parametrize("fraction", [0.2, 0.45, 0.7, 0.9])
def test_random_bytes_at_several_offsets(
    tmp_path: Path, clean: Run, sample_map: PacketMap, fraction: float
) -> None:
    data = bytearray(SAMPLE.read_bytes())
    lo = int(len(data) * fraction)
    data[lo : lo + 4096] = random.Random(lo).randbytes(4096)
    bad = tmp_path / f"at{fraction}.mp4"
    bad.write_bytes(bytes(data))
    run = _decode_file(bad)
    _check_survived(run, clean, sample_map.duration, _damaged_span(sample_map, lo, lo + 4096))


def _flip_bits(
    data: bytearray, packets: list[tuple[int, int, float]], lo_t: float, hi_t: float, seed: int
) -> tuple[float, float]:
    rnd = random.Random(seed)
    hit = [(pos, size, t) for pos, size, t in packets if lo_t <= t <= hi_t and size > 8]
    assert hit
    for pos, size, _ in hit:
        for _ in range(max(1, size // 64)):
            i = pos + rnd.randrange(size)
            data[i] ^= 1 << rnd.randrange(8)
    return min(t for _, _, t in hit), max(t for _, _, t in hit)


def test_bit_flips_in_video_packets(tmp_path: Path, clean: Run, sample_map: PacketMap) -> None:
    data = bytearray(SAMPLE.read_bytes())
    span = _flip_bits(data, sample_map.video, 3.0, 4.5, seed=1)
    bad = tmp_path / "vflip.mp4"
    bad.write_bytes(bytes(data))
    run = _decode_file(bad)
    _check_survived(run, clean, sample_map.duration, span)
    # audio was not touched: all of it arrives
    assert run.audio_end >= clean.audio_end - 0.1


def test_bit_flips_in_audio_packets(tmp_path: Path, clean: Run, sample_map: PacketMap) -> None:
    data = bytearray(SAMPLE.read_bytes())
    span = _flip_bits(data, sample_map.audio, 5.0, 7.0, seed=2)
    bad = tmp_path / "aflip.mp4"
    bad.write_bytes(bytes(data))
    run = _decode_file(bad)
    _check_survived(run, clean, sample_map.duration, span)
    assert len(run.video_ts) == len(clean.video_ts), "video was not touched: every frame arrives"
    assert run.audio_end >= clean.audio_end - 0.5


def _remux(src: Path, fmt: str) -> bytes:
    """The sample's packets in another container (no re-encoding)."""
    buf = io.BytesIO()
    with av.open(str(src)) as inp, av.open(buf, "w", format=fmt) as out:
        streams = {
            s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")
        }
        for p in inp.demux():
            if p.dts is None or p.stream.index not in streams:
                continue
            p.stream = streams[p.stream.index]
            out.mux(p)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "ext"), [("matroska", "mkv"), ("mpegts", "ts")])
def test_truncated_remux_yields_everything_before_the_cut(
    tmp_path: Path, clean: Run, fmt: str, ext: str
) -> None:
    data = _remux(SAMPLE, fmt)
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    run = _decode_file(cut)
    assert run.video_ts, "nothing decoded before the cut"
    end = run.video_ts[-1]
    assert 4.0 < end < clean.video_ts[-1]
    # every whole window before the cut (less one hop: the cut packet and the A/V interleaving)
    expected = {k for k in range(20) if k * HOP + LENGTH <= end - HOP}
    assert expected <= run.windows


def _damage_ts(ts: bytearray, fractions: tuple[float, ...], seed: int) -> int:
    """Damage an MPEG-TS byte string the way a bad link does, at each fraction of its length: a run of
    whole packets replaced by noise (the demuxer loses sync and must find it again), then the audio
    payloads of the next 3 % of the stream randomised with headers intact (the decoder gets garbage
    frames). Returns how many audio payloads were damaged."""
    with av.open(io.BytesIO(bytes(ts)), format="mpegts") as c:
        audio_pid = c.streams.audio[0].id
    rnd = random.Random(seed)
    n, hits = len(ts), 0
    for frac in fractions:
        lo = (int(n * frac) // 188) * 188
        ts[lo : lo + 8 * 188] = rnd.randbytes(8 * 188)
        for i in range(lo + 8 * 188, min(n, lo + 8 * 188 + int(n * 0.03)) // 188 * 188, 188):
            pid = ((ts[i + 1] & 0x1F) << 8) | ts[i + 2]
            if pid == audio_pid and not ts[i + 1] & 0x40:  # not the start of a PES (keep its header)
                ts[i + 4 : i + 188] = rnd.randbytes(184)
                hits += 1
    return hits


def test_damaged_mpegts_file(tmp_path: Path, clean: Run) -> None:
    data = bytearray(_remux(SAMPLE, "mpegts"))
    assert _damage_ts(data, (0.3, 0.6), seed=3) > 10
    bad = tmp_path / "damaged.ts"
    bad.write_bytes(bytes(data))
    run = _decode_file(bad)
    assert run.stats["decode_errors"] > 0
    assert run.video_ts[-1] >= clean.video_ts[-1] - 0.5
    assert len(run.video_ts) >= 0.8 * len(clean.video_ts)
    assert len(run.windows) >= 8


# --------------------------------------------------------------------------- live: UDP MPEG-TS
def _send_udp(payload: bytes, port: int, seconds: float, stop: threading.Event) -> None:
    """Send an MPEG-TS byte string as 7-packet datagrams to 127.0.0.1:port, paced over `seconds`."""
    chunk = 7 * 188
    n = (len(payload) + chunk - 1) // chunk
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        t0 = time.monotonic()
        for i in range(n):
            if stop.is_set():
                return
            s.sendto(payload[i * chunk : (i + 1) * chunk], ("127.0.0.1", port))
            delay = t0 + (i + 1) * seconds / n - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def test_udp_mpegts_with_damaged_segments_keeps_streaming(clean: Run) -> None:
    """A live UDP stream with two damaged segments goes on: frames keep arriving after the damage,
    with no reconnect and no error (before the fix the stream died at the first bad audio frame)."""
    ts = bytearray(_remux(SAMPLE, "mpegts"))
    assert _damage_ts(ts, (0.35, 0.55), seed=4) > 10
    port = free_loopback_port(socket.SOCK_DGRAM)
    src = UrlSource(f"udp://127.0.0.1:{port}", "udp", open_timeout=5.0, read_timeout=3.0)
    stop = threading.Event()
    sender = threading.Timer(0.5, _send_udp, args=(bytes(ts), port, 10.0, stop))
    sender.start()
    try:
        run = asyncio.run(_consume(src, until_ts=clean.video_ts[-1] - 1.0, timeout=40.0))
    finally:
        stop.set()
        sender.cancel()
    assert run.stats["decode_errors"] > 0, "the damage must have reached the decoders (and been skipped)"
    assert run.stats["reconnects"] == 0
    assert run.video_ts[-1] >= clean.video_ts[-1] - 1.0, "the stream stopped at the damage"
    assert len(run.video_ts) >= 0.7 * len(clean.video_ts)
    # windows on both sides of the damage: the first two seconds and the last two
    assert {0, 1} <= run.windows
    assert max(run.windows) >= 6
