"""Fusion: faces decide when present, voice-only is honest (low confidence), nothing → uniform."""

from __future__ import annotations

import numpy as np
import pytest
from affectstream.engine.fusion import TrackEvidence, VoiceEvidence, fuse, voice_distribution
from affectstream.engine.labels import EMOTIONS

HAPPY = EMOTIONS.index("happy")
SAD = EMOTIONS.index("sad")


def onehot(i: int, p: float = 0.9) -> np.ndarray:
    v = np.full(7, (1 - p) / 6)
    v[i] = p
    return v


def track(tid: int, label: int, n: int = 4, det: float = 0.9, p: float = 0.9) -> TrackEvidence:
    return TrackEvidence(tid, np.stack([onehot(label, p)] * n), np.full(n, det), (0, 0, 10, 10))


def test_video_only():
    f = fuse([track(1, HAPPY)], None)
    assert f.label == "happy" and f.score == pytest.approx(0.9)
    assert f.modalities == {"face": 1.0, "voice": 0.0}
    assert sum(f.scores.values()) == pytest.approx(1.0)


def test_audio_only_is_low_confidence_and_arousal_shaped():
    calm = fuse([], VoiceEvidence(speech_ratio=0.8, arousal=0.05))
    agitated = fuse([], VoiceEvidence(speech_ratio=0.8, arousal=0.95))
    for f in (calm, agitated):
        assert f.modalities == {"face": 0.0, "voice": 1.0}
        assert f.score < 0.35  # honest: never a confident emotion from prosody alone
        assert sum(f.scores.values()) == pytest.approx(1.0)
    assert calm.label in ("neutral", "sad")
    assert agitated.label in ("angry", "fear", "surprise")
    assert fuse([], VoiceEvidence(speech_ratio=0.8, arousal=0.5)).label == "neutral"  # ordinary speech
    assert calm.scores["sad"] > agitated.scores["sad"]
    assert agitated.scores["angry"] > calm.scores["angry"]


def test_nothing_usable_is_uniform_neutral():
    for f in (fuse([], None), fuse([], VoiceEvidence(0.0, None))):
        assert f.label == "neutral"
        assert f.score == pytest.approx(1 / 7)
        assert f.modalities == {}
        assert max(f.scores.values()) - min(f.scores.values()) < 1e-9


def test_face_dominates_voice_but_voice_counts():
    face_only = fuse([track(1, HAPPY)], None)
    both = fuse([track(1, HAPPY)], VoiceEvidence(speech_ratio=1.0, arousal=0.0))
    assert both.label == "happy"
    assert both.modalities["voice"] == pytest.approx(0.2) and both.modalities["face"] == pytest.approx(0.8)
    assert both.scores["sad"] > face_only.scores["sad"]  # the calm voice moved mass towards low arousal
    silent = fuse([track(1, HAPPY)], VoiceEvidence(speech_ratio=0.0, arousal=None))
    assert silent.modalities["voice"] == 0.0


def test_tracks_weighted_by_frames_and_confidence():
    long_happy = track(1, HAPPY, n=8, det=0.95)
    brief_sad = track(2, SAD, n=1, det=0.6)
    f = fuse([long_happy, brief_sad], None)
    assert f.label == "happy"
    assert f.scores["sad"] > fuse([long_happy], None).scores["sad"]


def test_voice_distribution_bounds():
    for a in (-1.0, 0.0, 0.5, 1.0, 7.0):
        d = voice_distribution(a)
        assert d.min() > 0 and d.sum() == pytest.approx(1.0) and d.max() < 0.35


# ---- the trained speech-emotion head: calibrated log-linear fusion ----------------------------------
from affectstream.engine.fusion import face_reliability, voice_reliability  # noqa: E402

ANGRY = EMOTIONS.index("angry")


def sized_track(tid: int, label: int, n: int = 8, det: float = 0.9, p: float = 0.9, side: float = 120.0):
    t = track(tid, label, n=n, det=det, p=p)
    t.area = side * side
    return t


def test_audio_only_with_head_is_the_calibrated_voice():
    probs = onehot(ANGRY, 0.7)
    f = fuse([], VoiceEvidence(speech_ratio=0.9, arousal=0.6, probs=probs))
    assert f.label == "angry" and f.score == pytest.approx(0.7)
    assert f.modalities == {"face": 0.0, "voice": 1.0}
    assert f.voice_scores is not None and f.voice_scores["angry"] == pytest.approx(0.7)
    # no speech: the head's scores are not used, nothing usable remains
    assert fuse([], VoiceEvidence(0.0, None, probs)).modalities == {}


def test_face_only_windows_unchanged_by_the_head():
    t = [sized_track(1, HAPPY)]
    ref = fuse(t, None)
    silent = fuse(t, VoiceEvidence(speech_ratio=0.0, arousal=None, probs=onehot(ANGRY, 0.9)))
    assert silent.scores == ref.scores and silent.label == "happy"
    assert silent.modalities == {"face": 1.0, "voice": 0.0}


def test_confident_voice_overrides_an_unsure_face_and_not_a_sure_one():
    unsure = sized_track(1, HAPPY, p=0.3)
    sure = sized_track(1, HAPPY, p=0.95)
    voice = VoiceEvidence(speech_ratio=1.0, arousal=0.8, probs=onehot(ANGRY, 0.8))
    a = fuse([unsure], voice, n_frames=8)
    b = fuse([sure], voice, n_frames=8)
    assert a.label == "angry" and b.label == "happy"
    for f in (a, b):
        assert sum(f.scores.values()) == pytest.approx(1.0)
        assert sum(f.modalities.values()) == pytest.approx(1.0)
    assert a.modalities["voice"] > a.modalities["face"]
    assert b.modalities["face"] > b.modalities["voice"]


def test_reliability_follows_what_was_observed():
    big = [sized_track(1, HAPPY, n=8, det=0.95, side=150)]
    small = [sized_track(1, HAPPY, n=8, det=0.95, side=30)]
    brief = [sized_track(1, HAPPY, n=2, det=0.95, side=150)]
    assert face_reliability(big, 8) > face_reliability(small, 8)
    assert face_reliability(big, 8) > face_reliability(brief, 8)
    assert face_reliability([], 8) == 0.0
    assert voice_reliability(0.1) < voice_reliability(0.3) < voice_reliability(0.6) == 1.0
    # the same unsure face, seen small and briefly, yields to a sure voice sooner
    voice = VoiceEvidence(speech_ratio=0.3, arousal=0.8, probs=onehot(ANGRY, 0.6))
    weak = fuse([sized_track(1, HAPPY, n=2, det=0.7, p=0.5, side=30)], voice, n_frames=8)
    strong = fuse([sized_track(1, HAPPY, n=8, det=0.95, p=0.5, side=150)], voice, n_frames=8)
    assert weak.scores["angry"] > strong.scores["angry"]


def test_flat_voice_gets_no_credit():
    f = fuse([sized_track(1, HAPPY)], VoiceEvidence(1.0, 0.5, np.full(7, 1 / 7)), n_frames=8)
    assert f.label == "happy" and f.modalities["voice"] == pytest.approx(0.0, abs=1e-6)
