"""Whisper-encoder features of labelled clips, extracted once and cached on disk (never in the repo).

Per clip the cache holds the encoder states of one 2 s window (the default window length), the one
with the most speech energy, encoded on its own exactly as the runtime encodes a window, and the
first `context_s` seconds as one piece when `context_s` > 0 (off by default: it costs as much again, and the head never sees it).
With `chunk_s` > 0 each cut is encoded in pieces of that length (ends `stride_s` apart), each alone,
as a stream encodes its windows (`engine/models/voice_emotion.py`, `encode_chunked`).
Augmented copies (speed, noise, gain) are cached under their own variant name. The key is
the clip's path, size and mtime plus the variant and the encoder, so edited audio is re-extracted.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affectstream.engine.paths import home
from affectstream.train.voice.data import SAMPLE_RATE, Clip, load_audio

log = logging.getLogger("affectstream.train.voice")

SEG_S = 2.0


def default_cache_dir() -> Path:
    return home() / "voice_features"


def speech_span(x: np.ndarray, seg: int = int(SEG_S * SAMPLE_RATE)) -> tuple[int, int]:
    """[start, end) of the `seg`-sample stretch with the most energy (the whole clip if shorter).

    One window per clip, centred on the speech: the runtime only scores windows the VAD calls speech,
    and one encoder pass per clip keeps extraction affordable on a small shared CPU (the corpus' clips
    are single utterances of 2-4 s, so this window holds most of each utterance)."""
    n = len(x)
    if n <= seg:
        return 0, n
    hop = 160
    e = np.add.reduceat(x.astype(np.float64) ** 2, np.arange(0, n, hop))
    c = np.concatenate([[0.0], np.cumsum(e)])
    w = seg // hop
    sums = c[w:] - c[:-w]
    i = int(np.argmax(sums))
    start = min(i * hop, n - seg)
    return start, start + seg


def stream_cuts(
    x: np.ndarray, context_s: float, window_s: float = SEG_S, hop_s: float = 1.0
) -> list[np.ndarray]:
    """The audio a stream's voice head hears at each window of a clip played as a stream (2 s windows
    every 1 s, the last one ending at the clip's end): the last `context_s` up to each window's end.

    Why: the engine judges a clip window by window, and its first windows hear 2-3 s that often start
    with silence; training only on the first 4 s and on the loudest 2 s left the head weaker through
    the engine than in cross-validation (README, "How accurate is it")."""
    n, w, h, c = len(x), int(window_s * SAMPLE_RATE), int(hop_s * SAMPLE_RATE), int(context_s * SAMPLE_RATE)
    ends = list(range(w, n + 1, h)) or [n]
    if ends[-1] != n:
        ends.append(n)
    return [x[max(0, e - c) : e] for e in ends]


def augment(x: np.ndarray, variant: str, seed: int) -> np.ndarray:
    """Light, label-preserving perturbations: `speedF` (resample, changes tempo and pitch), `noiseDB`
    (white noise at that SNR), `gainDB`. `orig` and `firstN` (a different cut, not a perturbation)
    return the input."""
    if variant == "orig" or variant.startswith(("first", "stream")):
        return x
    rng = np.random.default_rng(seed)
    if variant.startswith("speed"):
        f = float(variant[5:])
        from scipy.signal import resample_poly

        up, down = 100, round(100 * f)
        return resample_poly(x, up, down).astype(np.float32)
    if variant.startswith("noise"):
        snr = float(variant[5:])
        p = float(np.mean(x.astype(np.float64) ** 2)) + 1e-10
        n = rng.normal(0, np.sqrt(p / 10 ** (snr / 10)), len(x))
        return np.clip(x + n, -1, 1).astype(np.float32)
    if variant.startswith("gain"):
        g = 10 ** (float(variant[4:]) / 20)
        return np.clip(x * g, -1, 1).astype(np.float32)
    raise ValueError(f"unknown augmentation {variant!r}")


@dataclass(slots=True)
class ClipFeatures:
    segs: list[np.ndarray]  # encoder states per 2 s window (one: see speech_span), (frames, 512) float16
    ctx: np.ndarray  # states of the first context_s seconds (frames, 512) float16; empty if context_s is 0
    seconds: float


class FeatureStore:
    """Extract-or-load encoder states per (clip, variant)."""

    def __init__(
        self,
        encoder: object,
        cache_dir: str | Path | None = None,
        *,
        context_s: float = 0.0,
        encoder_id: str = "whisper-base-int8",
        chunk_s: float = 0.0,
        stride_s: float = 0.0,
    ) -> None:
        self.encoder = encoder
        self.dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.context_s = float(context_s)
        self.encoder_id = encoder_id
        self.stride_s = float(stride_s)
        self.chunk_s = float(chunk_s)  # > 0: each cut encoded in pieces of this length (see HeadInfo.chunk_s)
        self.hits = 0
        self.misses = 0

    def _key(self, clip: Clip, variant: str) -> Path:
        st = clip.path.stat()
        raw = (
            f"{clip.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{variant}|{self.context_s}|{self.encoder_id}|v2"
            + (f"|chunk{self.chunk_s:g}s{self.stride_s:g}w" if self.chunk_s > 0 else "")
        )
        h = hashlib.sha1(raw.encode()).hexdigest()
        return self.dir / h[:2] / f"{h}.npz"

    def get(self, clip: Clip, variant: str = "orig", seed: int = 0) -> ClipFeatures:
        path = self._key(clip, variant)
        if path.is_file():
            try:
                with np.load(path) as z:
                    n = int(z["n_segs"])
                    self.hits += 1
                    return ClipFeatures([z[f"seg{i}"] for i in range(n)], z["ctx"], float(z["seconds"]))
            except (OSError, ValueError, KeyError):
                path.unlink(missing_ok=True)  # a torn write: extract again
        x = augment(load_audio(clip.path), variant, seed)
        if len(x) < 1600:
            x = np.pad(x, (0, 1600 - len(x)))
        if variant.startswith("first"):  # "firstN": one window, the first N seconds (longer context)
            cuts = [x[: int(float(variant[5:]) * SAMPLE_RATE)]]
        elif variant.startswith("stream"):  # "streamN": what a stream's windows hear, see stream_cuts
            cuts = stream_cuts(x, float(variant[6:]))
        else:
            a, b = speech_span(x)
            cuts = [x[a:b]]
        extra = [x[: int(self.context_s * SAMPLE_RATE)]] if self.context_s > 0 else []
        from affectstream.engine.models.voice_emotion import encode_chunked

        states = encode_chunked(self.encoder, cuts, self.chunk_s, self.stride_s)  # type: ignore[arg-type]
        states += self.encoder.encode(extra) if extra else []  # type: ignore[attr-defined]
        ctx = states[len(cuts)] if extra else np.zeros((0, states[0].shape[1]), np.float32)
        feats = ClipFeatures(
            [s.astype(np.float16) for s in states[: len(cuts)]], ctx.astype(np.float16), len(x) / SAMPLE_RATE
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".part.npz")
        np.savez(
            tmp,
            n_segs=len(feats.segs),
            ctx=feats.ctx,
            seconds=feats.seconds,
            **{f"seg{i}": s for i, s in enumerate(feats.segs)},
        )
        tmp.replace(path)
        self.misses += 1
        return feats

    def extract_all(
        self,
        clips: list[Clip],
        variants: tuple[str, ...] = ("orig",),
        progress: Callable[[str], None] | None = None,
    ) -> dict[str, list[ClipFeatures]]:
        out: dict[str, list[ClipFeatures]] = {}
        t0 = time.monotonic()
        for v in variants:
            rows = []
            for i, c in enumerate(clips):
                rows.append(self.get(c, v, seed=i))
                if progress is not None and (i + 1) % 200 == 0:
                    progress(f"features {v}: {i + 1}/{len(clips)} ({time.monotonic() - t0:.0f} s)")
            out[v] = rows
        return out
