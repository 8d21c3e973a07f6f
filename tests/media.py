"""Test clips made from real assets, generated on demand (nothing downloaded).

The face is scikit-image's `astronaut` (a real smiling person, public domain); the speech is
`assets/beckett.wav` (real read speech, MIT). Clips are written with PyAV so tests control exactly
which tracks exist, their codecs and durations.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf

ASSETS = Path(__file__).parent / "assets"
BECKETT = ASSETS / "beckett.wav"


def astronaut_bgr() -> np.ndarray:
    """The astronaut photo (512x512) in BGR, as OpenCV-based code expects."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


def camera_gray_bgr() -> np.ndarray:
    """scikit-image's `camera` photo: a man with a camera, face small and in profile — a hard case."""
    from skimage import data

    g = data.camera()
    return np.ascontiguousarray(np.stack([g, g, g], axis=-1))


def no_face_bgr(h: int = 360, w: int = 480) -> np.ndarray:
    """A face-free textured image (smooth gradients + stripes)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) // 8 % 2) * 200], axis=-1)
    return img.astype(np.uint8)


def beckett_audio(sr: int = 16000) -> np.ndarray:
    a, file_sr = sf.read(str(BECKETT), dtype="float32")
    if a.ndim > 1:
        a = a.mean(axis=1)
    if file_sr != sr:
        idx = np.arange(0, len(a), file_sr / sr)
        a = np.interp(idx, np.arange(len(a)), a).astype(np.float32)
    return a


def moving_frames(image: np.ndarray, n: int, size: tuple[int, int] = (384, 384)) -> list[np.ndarray]:
    """Frames that slowly pan/zoom over `image`, so consecutive frames differ like real video."""
    import cv2

    h, w = image.shape[:2]
    out = []
    for i in range(n):
        t = i / max(1, n - 1)
        scale = 0.9 + 0.1 * np.sin(2 * np.pi * t)
        cw, ch = int(w * scale), int(h * scale)
        x0 = int((w - cw) * (0.5 + 0.4 * np.sin(2 * np.pi * t)) / 1)
        y0 = int((h - ch) * 0.5)
        crop = image[y0 : y0 + ch, max(0, x0 // 2) : max(0, x0 // 2) + cw]
        out.append(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
    return out


def write_clip(
    path: Path,
    *,
    seconds: float = 4.0,
    fps: int = 15,
    video: bool = True,
    audio: bool = True,
    image: np.ndarray | None = None,
    speech: np.ndarray | None = None,
    size: tuple[int, int] = (384, 384),
    vcodec: str = "mpeg4",
    acodec: str = "aac",
) -> Path:
    """Write a clip with an optional video track (moving real face) and optional audio (real speech)."""
    path = Path(path)
    container = av.open(str(path), mode="w")
    vs = as_ = None
    if video:
        vs = container.add_stream(vcodec, rate=fps)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        vs.bit_rate = 800_000
    if audio:
        as_ = container.add_stream(acodec, rate=16000)
        as_.layout = "mono"
    if vs is not None:
        img = astronaut_bgr() if image is None else image
        for i, f in enumerate(moving_frames(img, int(seconds * fps), size)):
            frame = av.VideoFrame.from_ndarray(f, format="bgr24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for p in vs.encode(frame):
                container.mux(p)
        for p in vs.encode():
            container.mux(p)
    if as_ is not None:
        sp = beckett_audio() if speech is None else speech
        n = int(seconds * 16000)
        sp = np.resize(sp, n).astype(np.float32) if len(sp) < n else sp[:n]
        s16 = (np.clip(sp, -1, 1) * 32767).astype(np.int16)
        step = 1024
        for i in range(0, n, step):
            chunk = s16[i : i + step]
            af = av.AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="mono")
            af.sample_rate = 16000
            af.pts = i
            af.time_base = Fraction(1, 16000)
            for p in as_.encode(af):
                container.mux(p)
        for p in as_.encode():
            container.mux(p)
    container.close()
    return path
