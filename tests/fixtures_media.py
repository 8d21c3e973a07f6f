"""Media fixtures for the source and windower tests: real clips (astronaut face, beckett speech),
bad files of each kind, a virtual ALSA microphone, and free loopback ports.

Clips are session-scoped: they are made once with PyAV (tests/media.py) and only read afterwards.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from media import beckett_audio, write_clip


def free_loopback_port(kind: int = socket.SOCK_STREAM) -> int:
    """A free port on 127.0.0.1 (TCP or UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def clip_av(media_dir: Path) -> Path:
    """4 s, 15 fps mpeg4 video of the astronaut + AAC beckett speech, in MP4."""
    return write_clip(media_dir / "av.mp4", seconds=4.0, fps=15)


@pytest.fixture(scope="session")
def clip_pcm(media_dir: Path) -> Path:
    """4 s A/V in Matroska with lossless PCM audio, so decoded samples can be compared exactly."""
    return write_clip(media_dir / "pcm.mkv", seconds=4.0, fps=15, acodec="pcm_s16le")


@pytest.fixture(scope="session")
def clip_video_only(media_dir: Path) -> Path:
    return write_clip(media_dir / "video_only.mp4", seconds=3.0, fps=15, audio=False)


@pytest.fixture(scope="session")
def clip_audio_only(media_dir: Path) -> Path:
    return write_clip(media_dir / "audio_only.m4a", seconds=3.0, video=False)


@pytest.fixture(scope="session")
def clip_truncated(media_dir: Path) -> Path:
    """An 8 s Matroska clip cut in half: decodable up to the cut, with a declared 8 s duration."""
    full = write_clip(media_dir / "full8.mkv", seconds=8.0, fps=15)
    data = full.read_bytes()
    out = media_dir / "truncated.mkv"
    out.write_bytes(data[: len(data) // 2])
    return out


@pytest.fixture(scope="session")
def clip_truncated_mp4(media_dir: Path, clip_av: Path) -> Path:
    """An MP4 cut before its index (moov atom at the end): nothing can be decoded."""
    data = clip_av.read_bytes()
    out = media_dir / "truncated.mp4"
    out.write_bytes(data[: len(data) // 2])
    return out


@pytest.fixture(scope="session")
def clip_unsupported_codec(media_dir: Path) -> Path:
    """Audio in codec2, which Debian's ffmpeg encodes (libcodec2) but PyAV's FFmpeg cannot decode."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not installed (apt-get install ffmpeg)")
    out = media_dir / "speech.c2"
    wav = media_dir / "speech8k.wav"
    import soundfile as sf

    sf.write(str(wav), beckett_audio(8000)[:16000], 8000)
    r = subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "libcodec2", str(out)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"this ffmpeg cannot encode codec2: {r.stderr.strip()[:200]}")
    return out


@pytest.fixture(scope="session")
def mpegts_clip(media_dir: Path, clip_av: Path) -> Path:
    """The A/V clip remuxed to MPEG-TS (mpeg2video + mp2), the usual payload of UDP/HTTP live streams."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not installed (apt-get install ffmpeg)")
    out = media_dir / "av.ts"
    subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(clip_av),
            "-c:v",
            "mpeg2video",
            "-q:v",
            "5",
            "-c:a",
            "mp2",
            "-f",
            "mpegts",
            str(out),
        ],
        check=True,
    )
    return out


@pytest.fixture
def virtual_mic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    """An ALSA `file` PCM as the default capture device, replaying beckett speech (16 kHz s16).

    Works with no sound card: HOME points at a temp dir whose ~/.asoundrc defines `pcm.!default` as a
    file plugin reading `infile`. Returns the int16 samples the mic will deliver.
    """
    pytest.importorskip("pyaudio", reason="pyaudio not installed (apt portaudio19-dev; pip install pyaudio)")
    pcm = (np.clip(beckett_audio(), -1, 1) * 32767).astype("<i2")
    raw = tmp_path / "mic.raw"
    pcm.tofile(raw)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text(
        'pcm.!default {\n  type file\n  slave.pcm "null"\n  file "/dev/null"\n'
        f'  infile "{raw}"\n  format "raw"\n}}\n'
    )
    monkeypatch.setenv("HOME", str(home))
    return pcm
