"""Late fusion: per-track face scores + voice cues → one label, 7-class scores, modality contributions.

Why late fusion with fixed, explainable weights: the face model is a trained 7-class classifier; the
voice side has only prosodic cues (no trained voice-emotion model ships in the lite profile), and
prosody mostly tells arousal (calm vs agitated), not which emotion. So:

- faces present → the face tracks decide (weighted by frames seen and detector confidence), the voice
  nudges by at most `voice_weight` (and only while someone speaks);
- audio only → an arousal-shaped distribution that is deliberately close to uniform (its top score is
  capped at ~0.3), so downstream consumers see a low-confidence guess, never a confident fake;
- nothing usable → uniform scores, label `neutral`, score 1/7.

`modalities` reports the share each modality had in the final scores (they sum to 1, or are empty).
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
VOICE_WEIGHT = 0.2  # at most this share of the final scores comes from the voice when faces are present


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


def fuse(
    tracks: list[TrackEvidence], voice: VoiceEvidence | None, *, voice_weight: float = VOICE_WEIGHT
) -> Fused:
    """Combine the window's face tracks and voice cues (either may be missing)."""
    face_p: np.ndarray | None = None
    if tracks:
        ws = np.array([max(t.weight(), 1e-6) for t in tracks])
        ps = np.stack([t.mean_probs() for t in tracks])
        face_p = (ps * ws[:, None]).sum(0) / ws.sum()
    voice_p: np.ndarray | None = None
    if voice is not None and voice.arousal is not None and voice.speech_ratio > 0:
        voice_p = voice_distribution(voice.arousal)

    if face_p is not None and voice_p is not None:
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
