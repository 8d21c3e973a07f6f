"""Camera and microphone sources on what this machine has: no camera, no sound card.

- Microphone: an ALSA `file` PCM as the default capture device replays real speech (beckett), read
  through pyaudio/PortAudio exactly as a real mic would be; the samples must come back unchanged.
- Camera: a missing device must fail with one clear line. A camera that disappears mid-stream is
  exercised through OpenCV's VideoCapture on a device path that vanishes while it is being read (a video
  file removed mid-read: the same read-fails → reopen-fails path as an unplugged USB camera). A real V4L2
  device cannot be created here (no v4l2loopback), so driver-specific behaviour is not covered.
"""

from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from affectstream.engine.types import AudioChunk, VideoFrame
from affectstream.streams.sources.base import SourceError
from affectstream.streams.sources.camera import CameraSource
from affectstream.streams.sources.factory import open_source
from affectstream.streams.sources.mic import MicSource


@pytest.mark.parametrize("spec", ["camera:97", "/dev/video97"])
async def test_missing_camera_is_a_clear_error(spec: str):
    src = open_source(spec)
    with pytest.raises(SourceError, match="no such camera") as e:
        async for _ in src:
            pass
    assert "\n" not in str(e.value) and "97" in str(e.value)


async def test_camera_that_disappears_mid_stream_reconnects_then_fails(tmp_path: Path, clip_video_only: Path):
    device = tmp_path / "video0.mp4"
    shutil.copy(clip_video_only, device)
    src = CameraSource(str(device), "cam", max_retries=2, backoff=0.05)
    frames: list[VideoFrame] = []
    with pytest.raises(SourceError, match="disappeared") as e:
        async for item in src:
            frames.append(item)
            if len(frames) == 1:
                device.unlink()  # the device goes away while it is being read
    assert frames and all(f.image.shape == (384, 384, 3) for f in frames)
    assert src.stats.errors >= 1
    assert "2 attempts" in str(e.value)
    ts = [f.ts for f in frames]
    idx = [f.index for f in frames]
    assert ts == sorted(ts) and idx == sorted(set(idx))  # live: drops allowed, order kept


async def test_virtual_mic_delivers_the_exact_samples_in_real_time(virtual_mic: np.ndarray):
    src = MicSource(None, "mic", chunk_seconds=0.1)
    chunks: list[AudioChunk] = []
    want = 2 * 16_000  # 2 s of the speech: the source paces a too-fast virtual device to real time
    t = time.monotonic()
    try:
        async for item in src:
            assert isinstance(item, AudioChunk)
            chunks.append(item)
            if sum(len(c.samples) for c in chunks) >= want:
                break
    finally:
        await src.close()
    elapsed = time.monotonic() - t
    got = np.concatenate([c.samples for c in chunks])[:want]
    assert src.rate == 16_000 and src.stats.dropped_frames == 0
    assert np.array_equal(got, virtual_mic[:want].astype(np.float32) / 32768)
    assert 1.2 < elapsed < 4.0
    # the sample clock: each chunk starts where the previous ended
    for a, b in itertools.pairwise(chunks):
        assert b.ts == pytest.approx(a.end, abs=1e-9)


async def test_mic_index_that_does_not_exist_is_a_clear_error(virtual_mic: np.ndarray):
    with pytest.raises(SourceError, match="no such audio device") as e:
        async for _ in open_source("mic:42"):
            pass
    assert "\n" not in str(e.value)
