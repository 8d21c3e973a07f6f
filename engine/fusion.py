"""Late fusion: per-track face scores + voice → one label, 7-class scores, modality contributions.

Two voice sources, two rules:

- **a trained speech-emotion head** (`engine/models/voice_emotion.py`, the `lite` profile's
  `voice_emotion`): its probabilities are temperature-calibrated on held-out speakers, so they can be
  combined with the face's by a weighted product (log-linear pooling, the rule for independent calibrated
  experts): log p = w_face·log p_face + w_voice·log p_voice, renormalised. The weights are the observed
  reliability of each modality in this window: for the face, a coverage factor (0.5 + 0.5 × the share
  of the window's frames its tracks were seen in) × the mean detector score × a face-size factor (small
  faces classify worse);
  for the voice, the speech ratio (half the window speaking counts fully). Confidence needs no extra
  term: a calibrated, unsure distribution is flat and moves the product little. Audio-only windows get
  the head's calibrated distribution as is — a real label with honest confidence.
- **prosody only** (no head in the profile): prosody mostly tells arousal, not which emotion, so the
  voice nudges the faces by at most `voice_weight`, and audio-only windows get an arousal-shaped
  distribution capped near uniform (top score ~0.3), never a confident fake.

Face-only windows are the track average in both cases (unchanged): the face model's probabilities are
used as they come (temperature 1), because no held-out labelled faces are available here to calibrate
them on — the FER-2013 images at hand are the split it was trained on.

`modalities` reports the share each modality had in the final scores (they sum to 1, or are empty):
with the trained head, each modality's weight × how far its distribution is from uniform (KL), so a
flat voice that changed nothing is not credited with half the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from affectstream.engine.labels import EMOTIONS

_IDX = {k: i for i, k in enumerate(EMOTIONS)}
# Arousal → class template (circumplex model). Ordinary speech sits mid-scale and says nothing about
# valence, so it maps to neutral; only clearly agitated voices lean to angry/fear/surprise (and happy),
# clearly subdued ones to sad. Order: angry, disgust, fear, happy, sad, surprise, neutral.
_BASE = np.array([0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 1.0])
_AGITATED = np.array([1.2, 0.2, 1.0, 0.6, 0.0, 1.0, 0.0])
_SUBDUED = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.3])
AGITATED_FROM, SUBDUED_BELOW = 0.55, 0.45
VOICE_ONLY_CONFIDENCE = 0.35  # share of the arousal template in a voice-only distribution
VOICE_WEIGHT = 0.2  # prosody only: at most this share of the final scores comes from the voice
FULL_SPEECH_RATIO = 0.5  # a window at least half speech gives the trained voice head its full weight
FACE_FULL_PX, FACE_MIN_PX = 72.0, 24.0  # face side (px) from which the face counts fully / at its least
FACE_SIZE_FLOOR = 0.3  # the least a detected face's size factor can be


@dataclass(slots=True)
class TrackEvidence:
    """One face track over a window: its frames' probabilities and detector scores."""

    track: int
    probs: np.ndarray  # (n_frames_seen, 7)
    det_scores: np.ndarray  # (n_frames_seen,)
    box: tuple[int, int, int, int]  # latest box
    area: float = 0.0

    def mean_probs(self) -> np.ndarray:
        w = np.clip(self.det_scores.astype(np.float64), 1e-3, None)
        p = (self.probs.astype(np.float64) * w[:, None]).sum(0) / w.sum()
        return p / p.sum()

    def weight(self) -> float:
        """More frames and more confident detections → more say in the window's label."""
        return float(len(self.probs) * np.mean(self.det_scores))


@dataclass(slots=True)
class VoiceEvidence:
    speech_ratio: float
    arousal: float | None
    probs: np.ndarray | None = None  # calibrated 7-class probabilities from the trained head, if any


@dataclass(slots=True)
class Fused:
    label: str
    score: float
    scores: dict[str, float]
    modalities: dict[str, float] = field(default_factory=dict)
    face_scores: dict[str, float] | None = None
    voice_scores: dict[str, float] | None = None


def _as_dict(p: np.ndarray) -> dict[str, float]:
    return {k: float(v) for k, v in zip(EMOTIONS, p, strict=True)}


def voice_distribution(arousal: float, confidence: float = VOICE_ONLY_CONFIDENCE) -> np.ndarray:
    """7-class distribution from arousal alone: uniform mixed with an arousal template (low confidence)."""
    a = float(np.clip(arousal, 0.0, 1.0))
    h = max(0.0, (a - AGITATED_FROM) / (1.0 - AGITATED_FROM))
    lo = max(0.0, (SUBDUED_BELOW - a) / SUBDUED_BELOW)
    t = _BASE + h * _AGITATED + lo * _SUBDUED
    t = t / t.sum()
    u = np.full(len(EMOTIONS), 1.0 / len(EMOTIONS))
    return (1 - confidence) * u + confidence * t


def face_reliability(tracks: list[TrackEvidence], n_frames: int | None = None) -> float:
    """0..1: how much of the window the faces were seen in, how sure the detector was, how big they were."""
    if not tracks:
        return 0.0
    seen = max(len(t.probs) for t in tracks)
    # a face seen clearly in a few frames still says a lot: coverage scales the weight between 0.5 and 1
    coverage = 0.5 + 0.5 * min(1.0, seen / max(n_frames or seen, 1))
    det = float(np.average([np.mean(t.det_scores) for t in tracks], weights=[len(t.probs) for t in tracks]))
    side = max(float(np.sqrt(max(t.area, 0.0))) for t in tracks)
    if side <= 0:  # area unknown (e.g. synthetic evidence): no size penalty
        size = 1.0
    else:
        size = float(np.clip((side - FACE_MIN_PX) / (FACE_FULL_PX - FACE_MIN_PX), FACE_SIZE_FLOOR, 1.0))
    return float(np.clip(coverage * det * size, 0.0, 1.0))


def voice_reliability(speech_ratio: float) -> float:
    """0..1: the share of the window that was speech, saturating at FULL_SPEECH_RATIO."""
    return float(np.clip(speech_ratio / FULL_SPEECH_RATIO, 0.0, 1.0))


def _kl_from_uniform(p: np.ndarray) -> float:
    q = np.clip(p, 1e-9, None)
    return float(np.sum(q * np.log(q * len(q))))


def fuse(
    tracks: list[TrackEvidence],
    voice: VoiceEvidence | None,
    *,
    voice_weight: float = VOICE_WEIGHT,
    n_frames: int | None = None,
) -> Fused:
    """Combine the window's face tracks and voice (either may be missing); `n_frames` is the number of
    frames the window held (for the face's coverage; default: the most any track was seen in)."""
    face_p: np.ndarray | None = None
    if tracks:
        ws = np.array([max(t.weight(), 1e-6) for t in tracks])
        ps = np.stack([t.mean_probs() for t in tracks])
        face_p = (ps * ws[:, None]).sum(0) / ws.sum()
    voice_p: np.ndarray | None = None
    trained = False
    if voice is not None and voice.speech_ratio > 0:
        if voice.probs is not None:
            v = np.clip(np.asarray(voice.probs, np.float64).reshape(-1), 0.0, None)
            if v.shape == (len(EMOTIONS),) and v.sum() > 0:
                voice_p, trained = v / v.sum(), True
        if voice_p is None and voice.arousal is not None:
            voice_p = voice_distribution(voice.arousal)

    if face_p is not None and voice_p is not None and trained:
        wf = face_reliability(tracks, n_frames)
        wv = voice_reliability(voice.speech_ratio)  # type: ignore[union-attr]
        logp = wf * np.log(np.clip(face_p, 1e-9, None)) + wv * np.log(np.clip(voice_p, 1e-9, None))
        p = np.exp(logp - logp.max())
        inf_f, inf_v = wf * _kl_from_uniform(face_p), wv * _kl_from_uniform(voice_p)
        tot = inf_f + inf_v
        modalities = {"face": inf_f / tot, "voice": inf_v / tot} if tot > 0 else {"face": 0.5, "voice": 0.5}
    elif face_p is not None and voice_p is not None:
        wv = voice_weight * float(np.clip(voice.speech_ratio * 2, 0.0, 1.0))  # type: ignore[union-attr]
        wf = 1.0 - wv
        p = wf * face_p + wv * voice_p
        modalities = {"face": wf, "voice": wv}
    elif face_p is not None:
        p, modalities = face_p, {"face": 1.0, "voice": 0.0}
    elif voice_p is not None:
        p, modalities = voice_p, {"face": 0.0, "voice": 1.0}
    else:
        p = np.full(len(EMOTIONS), 1.0 / len(EMOTIONS))
        label = "neutral"
        return Fused(label, float(p[_IDX[label]]), _as_dict(p), {})
    p = p / p.sum()
    i = int(np.argmax(p))
    return Fused(
        EMOTIONS[i],
        float(p[i]),
        _as_dict(p),
        modalities,
        face_scores=_as_dict(face_p) if face_p is not None else None,
        voice_scores=_as_dict(voice_p) if voice_p is not None else None,
    )
