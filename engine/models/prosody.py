"""Prosodic voice cues in plain numpy: pitch and its variability, energy, speaking rate, pauses, arousal.

Our own code on purpose: the usual toolkits for these features (openSMILE) are non-commercial, and the
cues we need are few. Pitch is YIN (de Cheveigné & Kawahara 2002) computed for all frames at once with
FFTs, so a 2 s window costs a few milliseconds. Arousal is a transparent heuristic (louder, more
pitch movement, faster syllables → more aroused), reported as a cue, not as an emotion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
HOP = 160  # 10 ms energy hop at 16 kHz
PITCH_SR = 8_000  # pitch runs on 2× decimated audio: F0 ≤ 500 Hz needs no more, and FFTs cost 4× less
PITCH_FRAME = 512  # 64 ms at 8 kHz: two periods of a 60 Hz voice fit in it
PITCH_HOP = 160  # 20 ms at 8 kHz
FMIN, FMAX = 60.0, 500.0
YIN_THRESHOLD = 0.15
YIN_FALLBACK = 0.35  # no dip under the threshold: accept the global minimum if it is at least this clear
_HALFBAND = np.array([-0.0106, 0.0, 0.0598, 0.0, -0.2998, 0.5, 0.9, 0.5, -0.2998, 0.0, 0.0598, 0.0, -0.0106])
SILENCE_DB = -50.0  # frames quieter than this are never voiced


@dataclass(slots=True)
class Prosody:
    pitch_hz: float | None  # median F0 over voiced frames
    pitch_std_hz: float | None  # spread of F0 over voiced frames
    pitch_std_st: float | None  # the same in semitones (speaker-independent; used for arousal)
    energy_db: float | None  # mean RMS level (dBFS) over speech (or all frames when no speech)
    speaking_rate: float | None  # syllable-like energy peaks per second of speech
    pause_ratio: float | None  # silent fraction between the first and the last speech
    arousal: float | None  # 0 calm .. 1 agitated
    voiced_ratio: float  # fraction of frames with a confident pitch
    clipped_ratio: float  # fraction of samples at full scale (|x| ≥ 0.99)


def _frames(x: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Overlapping frames as a strided view (no copy)."""
    if len(x) < frame:
        x = np.pad(x, (0, frame - len(x)))
    n = 1 + (len(x) - frame) // hop
    return np.lib.stride_tricks.sliding_window_view(x, frame)[::hop][:n]


def frame_energy_db(x: np.ndarray, frame: int = 400, hop: int = HOP) -> np.ndarray:
    """RMS level per frame in dBFS (25 ms frames, 10 ms hop)."""
    f = _frames(x, frame, hop)
    rms = np.sqrt(np.mean(f.astype(np.float64) ** 2, axis=1) + 1e-12)
    return (20 * np.log10(rms)).astype(np.float32)


def decimate2(x: np.ndarray) -> np.ndarray:
    """16 kHz → 8 kHz with a short half-band low-pass (anti-aliasing for the pitch tracker)."""
    h = _HALFBAND / _HALFBAND.sum()
    return np.convolve(x, h, mode="same")[::2].astype(np.float32)


def yin_pitch(
    x: np.ndarray,
    sr: int = SAMPLE_RATE,
    *,
    fmin: float = FMIN,
    fmax: float = FMAX,
    threshold: float = YIN_THRESHOLD,
    frame_mask: np.ndarray | None = None,
) -> np.ndarray:
    """F0 in Hz per 20 ms frame (NaN where unvoiced): YIN vectorised over frames, on 8 kHz audio.

    `frame_mask` (bool per frame) restricts the work to frames worth measuring (speech): silence is
    most of many windows and has no pitch anyway."""
    x = np.asarray(x, dtype=np.float32)
    if sr == 2 * PITCH_SR:
        x, sr = decimate2(x), PITCH_SR
    frame = PITCH_FRAME * sr // PITCH_SR
    frames = _frames(x, frame, PITCH_HOP * sr // PITCH_SR)
    n_all = len(frames)
    result = np.full(n_all, np.nan, np.float32)
    if frame_mask is not None:
        m = np.zeros(n_all, bool)
        k = min(n_all, len(frame_mask))
        m[:k] = np.asarray(frame_mask[:k], bool)
        sel = np.nonzero(m)[0]
        frames = frames[sel]
    else:
        sel = np.arange(n_all)
    tmin, tmax = int(sr / fmax), int(sr / fmin)
    w = frame - tmax  # integration window
    n = len(frames)
    if n == 0:
        return result
    nfft = 1 << int(np.ceil(np.log2(frame + w)))
    fx = np.fft.rfft(frames, nfft, axis=1)
    fw = np.fft.rfft(frames[:, :w], nfft, axis=1)
    cross = np.fft.irfft(np.conj(fw) * fx, nfft, axis=1)[:, : tmax + 1]  # sum_j x_j x_{j+tau}, j < w
    f64 = frames.astype(np.float64)
    sq = np.concatenate([np.zeros((n, 1)), np.cumsum(f64**2, axis=1)], axis=1)
    e0 = sq[:, w][:, None]
    taus = np.arange(tmax + 1)
    etau = sq[:, taus + w] - sq[:, taus]
    d = np.maximum(e0 + etau - 2 * cross, 0.0)
    # cumulative mean normalised difference
    cum = np.cumsum(d[:, 1:], axis=1)
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] * taus[1:] / np.maximum(cum, 1e-12)
    f0 = np.full(n, np.nan, np.float32)
    seg = cmnd[:, tmin : tmax + 1]
    below = seg < threshold
    first = np.where(below.any(axis=1), np.argmax(below, axis=1), -1)
    gmin = np.argmin(seg, axis=1)
    for i in range(n):
        t = int(first[i])
        if t < 0:
            if seg[i, gmin[i]] >= YIN_FALLBACK:
                continue
            t = int(gmin[i])
        # walk down to the local minimum of this dip
        while t + 1 < seg.shape[1] and seg[i, t + 1] < seg[i, t]:
            t += 1
        tau = float(t + tmin)
        k = t + tmin
        if 1 <= k < tmax:
            a, b, c = cmnd[i, k - 1], cmnd[i, k], cmnd[i, k + 1]
            den = a - 2 * b + c
            shift = 0.5 * (a - c) / den if abs(den) > 1e-12 else 0.0
            tau = k + float(np.clip(shift, -1, 1))
        f0[i] = sr / tau
    result[sel] = f0
    return result


def _peaks(env: np.ndarray, min_prominence: float, min_distance: int) -> np.ndarray:
    """Indices of local maxima that rise `min_prominence` above the lower of the neighbouring minima."""
    if len(env) < 3:
        return np.zeros(0, int)
    cand = np.nonzero((env[1:-1] > env[:-2]) & (env[1:-1] >= env[2:]))[0] + 1
    keep: list[int] = []
    for p in cand:
        lo = max(0, p - 25)
        hi = min(len(env), p + 26)
        left = env[lo : p + 1].min()
        right = env[p:hi].min()
        if env[p] - max(left, right) >= min_prominence and (not keep or p - keep[-1] >= min_distance):
            keep.append(int(p))
    return np.asarray(keep, int)


def _scale(v: float, lo: float, hi: float) -> float:
    return float(np.clip((v - lo) / (hi - lo), 0.0, 1.0))


def _speech_mask(t: np.ndarray, speech_segments: list[tuple[float, float]] | None) -> np.ndarray:
    if speech_segments is None:
        return np.ones(len(t), bool)
    mask = np.zeros(len(t), bool)
    for s, e in speech_segments:
        mask |= (t >= s) & (t < e)
    return mask


def _pitch_to_energy_index(n_pitch: int, n_energy: int, first_offset: int = 0) -> np.ndarray:
    """Energy frame at the centre of each pitch frame (pitch: 20 ms hop, 64 ms span; energy: 10 ms hop).

    `first_offset` is the first pitch frame's start in 16 kHz samples from the window start."""
    base = np.arange(n_pitch) * (2 * PITCH_HOP) + first_offset
    return np.clip(np.rint(base / HOP).astype(int) + 3, 0, max(0, n_energy - 1))


def analyze_prosody(
    audio: np.ndarray,
    speech_segments: list[tuple[float, float]] | None = None,
    sr: int = SAMPLE_RATE,
) -> Prosody:
    """Cues for one window of (sanitised) audio. `speech_segments` (seconds, from the VAD) restrict pitch,
    energy and rate to speech; without them the whole window counts as speech."""
    x = np.asarray(audio, dtype=np.float32).ravel()
    clipped = float(np.mean(np.abs(x) >= 0.99)) if len(x) else 0.0
    if len(x) < 400:
        return Prosody(None, None, None, None, None, None, None, 0.0, clipped)
    edb = frame_energy_db(x)
    speech_mask = _speech_mask(np.arange(len(edb)) * HOP / sr, speech_segments)
    n_pitch = 1 + max(0, ((len(x) + 1) // 2 - PITCH_FRAME) // PITCH_HOP)
    sub = _pitch_to_energy_index(n_pitch, len(edb))
    worth = speech_mask[sub] & (edb[sub] > SILENCE_DB)
    f0 = yin_pitch(x, sr, frame_mask=worth)
    return summarize(edb, speech_mask, f0, sub[: len(f0)], clipped, sr)


def summarize(
    edb: np.ndarray,
    speech_mask: np.ndarray,
    f0: np.ndarray,
    sub: np.ndarray,
    clipped: float,
    sr: int = SAMPLE_RATE,
) -> Prosody:
    """Window cues from per-frame energy (10 ms), its speech mask, and F0 per pitch frame (`sub` maps each
    pitch frame to its energy frame)."""
    has_speech = bool(speech_mask.any())
    sel = edb[speech_mask] if has_speech else edb
    energy = float(10 * np.log10(np.mean(10 ** (sel / 10.0)) + 1e-12))
    m = min(len(f0), len(sub))
    f0, fmask, fdb = f0[:m], speech_mask[sub[:m]], edb[sub[:m]]
    voiced = np.isfinite(f0) & fmask & (fdb > SILENCE_DB)
    voiced_ratio = float(voiced.mean()) if m else 0.0
    pitch = pitch_std = pitch_std_st = None
    if voiced.sum() >= 3:
        v = f0[voiced].astype(np.float64)
        med = float(np.median(v))
        # drop octave errors (more than ~an octave away from the median) before measuring spread
        v = v[(v > med / 1.8) & (v < med * 1.8)]
        pitch = float(np.median(v))
        pitch_std = float(np.std(v))
        pitch_std_st = float(np.std(12 * np.log2(v / pitch)))

    rate = pause = None
    if has_speech:
        speech_s = float(speech_mask.sum() * HOP / sr)
        env = np.convolve(edb, np.ones(5) / 5, mode="same")  # 50 ms smoothing
        peaks = _peaks(env, min_prominence=4.0, min_distance=10)
        peaks = peaks[speech_mask[peaks] & (env[peaks] > SILENCE_DB)] if len(peaks) else peaks
        rate = float(len(peaks) / speech_s) if speech_s > 0.2 else None
        idx = np.nonzero(speech_mask)[0]
        span = idx[-1] - idx[0] + 1
        pause = float(1.0 - speech_mask[idx[0] : idx[-1] + 1].sum() / span) if span > 0 else 0.0

    arousal = None
    if has_speech and energy > SILENCE_DB:
        parts = [(_scale(energy, -40.0, -12.0), 0.45)]
        if pitch_std_st is not None:
            parts.append((_scale(pitch_std_st, 0.5, 4.0), 0.35))
        if rate is not None:
            parts.append((_scale(rate, 2.0, 6.5), 0.2))
        wsum = sum(w for _, w in parts)
        arousal = float(sum(v * w for v, w in parts) / wsum)
    return Prosody(pitch, pitch_std, pitch_std_st, energy, rate, pause, arousal, voiced_ratio, clipped)
