"""Source → windower on real files with the awkward properties of real media: a resolution change
mid-stream (two MPEG-TS segments of different sizes, concatenated) and audio that starts 0.5 s after
the video (ffmpeg -itsoffset)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from affectstream.engine.types import VideoFrame
from affectstream.streams.sources.file import FileSource
from affectstream.streams.windower import Windower
from media import write_clip

FFMPEG = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


async def windows_of(path: Path):
    src, w, wins, shapes = FileSource(path, "m"), Windower("m"), [], []
    async for item in src:
        if isinstance(item, VideoFrame):
            shapes.append(item.image.shape)
        wins += w.push(item)
    return wins + w.flush(), w.stats, shapes


async def test_resolution_change_mid_stream(tmp_path: Path):
    parts = []
    for i, size in enumerate([(320, 240), (640, 480)]):
        mp4 = write_clip(tmp_path / f"p{i}.mp4", seconds=2.0, fps=15, size=size)
        ts = tmp_path / f"p{i}.ts"
        ffmpeg("-i", str(mp4), "-c:v", "mpeg2video", "-q:v", "5", "-c:a", "mp2", "-f", "mpegts", str(ts))
        parts.append(str(ts))
    joined = tmp_path / "joined.ts"
    ffmpeg("-i", "concat:" + "|".join(parts), "-c", "copy", str(joined))
    wins, stats, shapes = await windows_of(joined)
    assert {(240, 320, 3), (480, 640, 3)} <= set(shapes)
    assert stats.resolution_changes == 1
    assert [(x.start, x.end) for x in wins] == [(0, 2), (1, 3), (2, 4)]
    mixed = {f.image.shape for f in wins[1].frames}  # [1,3) straddles the change
    assert mixed == {(240, 320, 3), (480, 640, 3)}
    assert all(len(x.audio) == 32_000 for x in wins)


async def test_audio_starting_after_video_keeps_its_offset(tmp_path: Path):
    base = write_clip(tmp_path / "base.mp4", seconds=3.0, fps=15)
    late = tmp_path / "late_audio.mp4"
    ffmpeg(
        "-i",
        str(base),
        "-itsoffset",
        "0.5",
        "-i",
        str(base),
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c",
        "copy",
        str(late),
    )
    wins, stats, _ = await windows_of(late)
    w0 = wins[0]
    assert len(w0.frames) == 8 and len(w0.audio) == 32_000
    # about the first 0.45 s are silence (zero-filled: no audio yet), then speech
    assert np.abs(w0.audio[: int(0.4 * 16_000)]).max() < 1e-3
    assert np.abs(w0.audio[int(0.6 * 16_000) :]).max() > 0.05
    assert stats.windows_forced == 0
