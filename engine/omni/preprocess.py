"""Media → model inputs, as the reference does it (docs/r1omni.md §3.1–3.3).

- frames: 8 at segment midpoints, i = round(seg·(i+0.5)+1e-6) with seg = (n−1)/8; short clips are
  padded with black frames;
- pixels: BGR → RGB, then either "pad" (centre on a square filled with int(255·mean) = 127, as in
  training) or "squash" (plain resize, as the reference inference path does), PIL bicubic resize to
  224², rescale 1/255, normalise mean 0.5 std 0.5 → [−1, 1];
- audio: Whisper log-mel with 128 bins (transformers' WhisperFeatureExtractor, no weights involved),
  padded/truncated to 30 s in faithful mode, or just the window's samples (even frame count) in fast mode.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

SIGLIP_MEAN = 0.5
SIGLIP_STD = 0.5
PAD_FILL = int(255 * SIGLIP_MEAN)  # 127
SAMPLE_RATE = 16_000
HOP = 160
MIN_FAST_SAMPLES = 6 * HOP  # 960 samples → 6 mel frames → 3 positions → 1 audio token


def sample_indices(n_frames: int, num: int = 8) -> list[int]:
    """Segment-midpoint indices of `frame_sample(mode="uniform")`; len < num when the clip is short."""
    if n_frames <= 0:
        return []
    seg = (n_frames - 1) / num
    idx = [int(np.round(seg * (i + 0.5) + 1e-6)) for i in range(num)]
    return idx if n_frames >= num else list(range(n_frames))


def to_square(rgb: np.ndarray, fill: int = PAD_FILL) -> np.ndarray:
    """LLaVA expand2square: centre the image on a square canvas of the fill colour."""
    h, w = rgb.shape[:2]
    if h == w:
        return rgb
    side = max(h, w)
    out = np.full((side, side, 3), fill, dtype=np.uint8)
    y, x = (side - h) // 2, (side - w) // 2
    out[y : y + h, x : x + w] = rgb
    return out


def frames_to_pixels(
    frames_bgr: list[np.ndarray], size: int = 224, aspect: str = "pad", num: int = 8
) -> np.ndarray:
    """List of HxWx3 uint8 BGR frames → (num, 3, size, size) float32 in [−1, 1]; black frames pad."""
    if aspect not in ("pad", "squash"):
        raise ValueError(f"aspect must be 'pad' or 'squash', got {aspect!r}")
    out = np.empty((num, 3, size, size), dtype=np.float32)
    for i in range(num):
        if i < len(frames_bgr):
            f = frames_bgr[i]
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise ValueError(f"frame {i} must be HxWx3 uint8 BGR, got {f.shape} {f.dtype}")
            rgb = np.ascontiguousarray(f[:, :, ::-1])
            if aspect == "pad":
                rgb = to_square(rgb)
            img = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC), dtype=np.float32)
        else:  # black frame, as the reference appends for short clips (after normalisation: −1)
            img = np.zeros((size, size, 3), dtype=np.float32)
        out[i] = ((img / 255.0 - SIGLIP_MEAN) / SIGLIP_STD).transpose(2, 0, 1)
    return out


def frame_to_pixels(frame_bgr: np.ndarray, size: int = 224, aspect: str = "pad") -> np.ndarray:
    """One frame → (3, size, size): the unit of the per-frame feature cache."""
    return frames_to_pixels([frame_bgr], size, aspect, num=1)[0]


@lru_cache(maxsize=4)
def _extractor(n_mels: int):
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(
        feature_size=n_mels, sampling_rate=SAMPLE_RATE, hop_length=HOP, chunk_length=30, n_fft=400
    )


def whisper_features(samples: np.ndarray, mode: str = "faithful", n_mels: int = 128) -> np.ndarray:
    """float32 mono 16 kHz → (n_mels, F) log-mel. faithful: F = 3000 (30 s); fast: F = 2·ceil(len/320)."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    x = np.nan_to_num(x, nan=-1.5)  # the reference replaces NaNs by −1.5
    fe = _extractor(n_mels)
    if mode == "faithful":
        feats = fe(x, sampling_rate=SAMPLE_RATE, return_tensors="np", padding="max_length", truncation=True)
    elif mode == "fast":
        if x.size == 0:
            raise ValueError("fast audio mode needs at least one sample")
        x = x[: SAMPLE_RATE * 30]
        # even mel frame count (conv2 stride 2), and at least 3 encoder positions so pooling yields a token
        pad = max((-x.size) % (2 * HOP), MIN_FAST_SAMPLES - x.size)
        x = np.pad(x, (0, pad))
        feats = fe(x, sampling_rate=SAMPLE_RATE, return_tensors="np", padding="longest", truncation=False)
    else:
        raise ValueError(f"audio mode must be 'faithful' or 'fast', got {mode!r}")
    mel = feats["input_features"][0].astype(np.float32)
    if mode == "fast":
        mel = mel[:, : x.size // HOP]
    return mel
