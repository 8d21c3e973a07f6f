"""The PyAV file source on real clips (astronaut face + beckett speech) and on every kind of bad file."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from affectstream.engine.types import AudioChunk, VideoFrame
from affectstream.streams.sources.base import SourceError
from affectstream.streams.sources.factory import open_source
from affectstream.streams.sources.file import FileSource
from media import astronaut_bgr, beckett_audio, moving_frames


async def collect(src) -> list:
    try:
        return [item async for item in src]
    finally:
        await src.close()


def split(items):
    return [i for i in items if isinstance(i, VideoFrame)], [i for i in items if isinstance(i, AudioChunk)]


async def test_av_file_gives_bgr_frames_and_16k_mono_audio(clip_av: Path):
    src = FileSource(clip_av, "av")
    items = await collect(src)
    video, audio = split(items)
    assert len(video) == 60 and src.stats.frames == 60
    assert all(f.image.dtype == np.uint8 and f.image.shape == (384, 384, 3) for f in video)
    assert [f.index for f in video] == list(range(60))
    ts = [f.ts for f in video]
    assert ts[0] == pytest.approx(0.0, abs=1e-6) and ts == sorted(ts)
    assert np.diff(ts) == pytest.approx(1 / 15, abs=1e-3)
    assert all(
        a.sample_rate == 16_000 and a.samples.dtype == np.float32 and a.samples.ndim == 1 for a in audio
    )
    total = sum(len(a.samples) for a in audio) / 16_000
    assert total == pytest.approx(4.0, abs=0.1)
    # channel order: the first frame matches the BGR source image far better than its RGB swap
    ref = moving_frames(astronaut_bgr(), 60, (384, 384))[0].astype(int)
    assert np.abs(video[0].image.astype(int) - ref).mean() < 8
    assert np.abs(video[0].image[:, :, ::-1].astype(int) - ref).mean() > 20
    assert src.stats.errors == 0 and not src.truncated


async def test_lossless_audio_is_decoded_sample_exact(clip_pcm: Path):
    _, audio = split(await collect(FileSource(clip_pcm, "pcm")))
    got = np.concatenate([a.samples for a in audio])
    sent = (np.clip(beckett_audio()[:64000], -1, 1) * 32767).astype(np.int16)
    assert len(got) == len(sent)
    assert np.array_equal(got, sent.astype(np.float32) / 32768)
    starts = [a.ts for a in audio]
    assert starts[0] == 0.0 and all(b - a > 0 for a, b in itertools.pairwise(starts))


async def test_video_only_and_audio_only_files(clip_video_only: Path, clip_audio_only: Path):
    v_src = FileSource(clip_video_only, "v")
    v, a = split(await collect(v_src))
    assert len(v) == 45 and a == [] and v_src.has_video and not v_src.has_audio
    a_src = FileSource(clip_audio_only, "a")
    v, a = split(await collect(a_src))
    assert v == [] and sum(len(x.samples) for x in a) / 16_000 == pytest.approx(3.0, abs=0.1)
    assert a_src.has_audio and not a_src.has_video


async def test_realtime_paces_to_the_clip_and_default_is_faster(clip_video_only: Path):
    t = time.monotonic()
    await collect(FileSource(clip_video_only, "v", realtime=True, speed=2.0))
    paced = time.monotonic() - t
    t = time.monotonic()
    await collect(FileSource(clip_video_only, "v"))
    fast = time.monotonic() - t
    # 3 s of video at 2x speed: the last frame (2.93 s) is due at 1.47 s
    assert 1.35 < paced < 3.0
    assert fast < paced / 2


async def test_decoding_does_not_block_the_event_loop_and_hand_off_is_bounded(clip_av: Path):
    src = FileSource(clip_av, "av")
    lags, pending = [], []
    stop = False

    async def ticker():
        last = time.monotonic()
        while not stop:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            lags.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    n = 0
    async for _ in src:
        n += 1
        pending.append(len(src._feed._items))
        await asyncio.sleep(0.002)  # a slow consumer: the decoder must wait, not pile up
    stop = True
    await tick
    assert n > 100
    assert max(pending) <= 8
    assert max(lags) < 0.25


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: _write(d / "empty.mp4", b""), "empty file"),
        (lambda d: _write(d / "notes.mp4", b"not a video\n" * 200), "not a readable media"),
        (lambda d: d, "is a directory"),
    ],
    ids=["missing", "empty", "non-media", "directory"],
)
def test_bad_files_fail_with_one_clear_line(tmp_path: Path, make, message):
    path = make(tmp_path)
    with pytest.raises(SourceError, match=message) as e:
        open_source(str(path))
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_truncated_mp4_without_index_is_a_clear_error(clip_truncated_mp4: Path):
    with pytest.raises(SourceError, match="truncated"):
        open_source(str(clip_truncated_mp4))


def test_unsupported_codec_is_a_clear_error(clip_unsupported_codec: Path):
    with pytest.raises(SourceError, match="unsupported codec"):
        open_source(str(clip_unsupported_codec))


def test_file_with_no_audio_or_video_track(tmp_path: Path):
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not installed")
    srt = tmp_path / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:02,000\nhello\n")
    out = tmp_path / "subs_only.mkv"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-i", str(srt), str(out)], check=True)
    with pytest.raises(SourceError, match="no video or audio track"):
        open_source(str(out))


async def test_truncated_file_yields_what_decodes_then_ends_counted(clip_truncated: Path, caplog):
    src = FileSource(clip_truncated, "t")
    video, audio = split(await collect(src))
    assert 20 < len(video) < 120  # about half of 8 s at 15 fps
    assert audio and src.truncated and src.stats.errors >= 1
    assert "truncated" in caplog.text


def test_abandoned_source_does_not_leak_its_decode_thread(clip_av: Path):
    src = FileSource(clip_av, "av")

    async def first_item_only():
        async for _ in src:
            break  # no close(): the engine crashed, a test forgot, ...

    asyncio.run(first_item_only())
    thread = src._feed._thread
    thread.join(3)
    assert not thread.is_alive()
