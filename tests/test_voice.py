"""Voice: Silero VAD on real speech, prosody cues from our own numpy code, bad audio never crashes."""

from __future__ import annotations

import numpy as np
import pytest
from affectstream.engine.models.prosody import analyze_prosody, yin_pitch
from affectstream.engine.models.vad import CHUNK, SileroVad, sanitize_audio, segments_from_probs

SR = 16000


def test_beckett_has_speech(silero, beckett):
    r = silero.analyze(beckett)
    assert r.speech
    assert len(r.probs) == len(beckett) // CHUNK
    # Beckett is read slowly, with long pauses: speech is a real fraction, not all of it
    assert 0.25 < r.speech_ratio < 0.9
    assert len(r.segments) >= 3
    assert all(0 <= s < e <= len(beckett) / SR + 1e-6 for s, e in r.segments)


def test_silence_has_no_speech(silero):
    for a in (
        np.zeros(2 * SR, np.float32),
        np.random.default_rng(0).normal(0, 1e-4, 2 * SR).astype(np.float32),
    ):
        r = silero.analyze(a)
        assert not r.speech and r.speech_ratio == 0.0
        assert r.probs.max() < 0.5


def test_batched_equals_individual(silero, beckett):
    clips = [beckett[: 2 * SR], beckett[SR : 3 * SR + 1000], np.zeros(SR, np.float32)]
    together = silero.analyze_batch(clips)
    for c, t in zip(clips, together, strict=True):
        alone = silero.analyze(c)
        assert np.abs(alone.probs - t.probs).max() < 1e-5
        assert alone.segments == t.segments


def test_nan_inf_and_clipped_audio(silero, beckett):
    a = beckett[: 2 * SR].copy()
    a[::7] = np.nan
    a[::11] = np.inf
    a[::13] = -np.inf
    r = silero.analyze(a)
    assert r.bad_samples == int((~np.isfinite(a)).sum()) > 0
    assert np.isfinite(r.probs).all()
    clean, bad = sanitize_audio(a)
    assert bad == r.bad_samples and np.isfinite(clean).all()
    p = analyze_prosody(clean, r.segments)
    assert p.energy_db is None or np.isfinite(p.energy_db)

    clipped = np.clip(beckett[: 2 * SR] * 40, -1, 1).astype(np.float32)
    rc = silero.analyze(clipped)
    assert rc.speech
    pc = analyze_prosody(clipped, rc.segments)
    assert pc.clipped_ratio > 0.05
    assert (
        pc.energy_db is not None and pc.energy_db > analyze_prosody(beckett[: 2 * SR], rc.segments).energy_db
    )


def test_odd_lengths(silero):
    for n in (0, 1, 100, CHUNK - 1, CHUNK, CHUNK + 1):
        r = silero.analyze(np.zeros(n, np.float32))
        assert r.speech_ratio == 0.0 and not r.speech
        p = analyze_prosody(np.zeros(n, np.float32), r.segments)
        assert p.arousal is None


def test_segments_hysteresis():
    probs = np.array([0.1, 0.9, 0.9, 0.4, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.6, 0.6, 0.6, 0.6])
    segs = segments_from_probs(probs, chunk_s=0.032)
    # 0.4 stays inside speech (above 0.5-0.15); the second run starts again after a long gap
    assert len(segs) == 2
    assert segs[0][0] == pytest.approx(0.032) and segs[0][1] == pytest.approx(5 * 0.032)


@pytest.mark.parametrize("f0", [85.0, 120.0, 210.0, 330.0])
def test_yin_pitch_on_harmonic_tones(f0):
    t = np.arange(SR) / SR
    # a voice-like tone: fundamental plus decaying harmonics
    x = sum((0.5 / k) * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6)).astype(np.float32)
    est = yin_pitch(x)
    assert np.isfinite(est).mean() > 0.9
    assert np.nanmedian(est) == pytest.approx(f0, rel=0.02)


def test_prosody_of_real_speech(silero, beckett):
    seg = beckett[: 4 * SR]
    r = silero.analyze(seg)
    p = analyze_prosody(seg, r.segments)
    assert p.pitch_hz is not None and 70 < p.pitch_hz < 200  # an adult male reader
    assert p.pitch_std_hz is not None and p.pitch_std_hz > 1
    assert p.energy_db is not None and -45 < p.energy_db < -10
    assert p.speaking_rate is not None and 1.0 < p.speaking_rate < 8.0
    assert p.pause_ratio is not None and 0.0 <= p.pause_ratio < 1.0
    assert p.arousal is not None and 0.0 <= p.arousal <= 1.0


def test_arousal_rises_with_loudness_and_pitch_movement():
    t = np.arange(2 * SR) / SR
    rng = np.random.default_rng(0)
    # syllable-like bursts at 4/s; "calm": quiet, flat pitch; "agitated": loud, pitch swinging
    env = (np.sin(2 * np.pi * 2 * t) ** 2).astype(np.float32)
    calm = 0.03 * env * np.sin(2 * np.pi * 110 * t)
    f = 180 + 70 * np.sin(2 * np.pi * 1.5 * t)
    agitated = 0.5 * env * np.sin(2 * np.pi * np.cumsum(f) / SR)
    segs = [(0.0, 2.0)]
    a_calm = analyze_prosody((calm + rng.normal(0, 1e-4, len(t))).astype(np.float32), segs).arousal
    a_agit = analyze_prosody((agitated + rng.normal(0, 1e-4, len(t))).astype(np.float32), segs).arousal
    assert a_calm is not None and a_agit is not None
    assert a_agit > a_calm + 0.3


def test_vad_refuses_a_non_vad_model(lite_prof):
    from affectstream.engine.runtimes.onnx import OrtRuntime

    with pytest.raises(ValueError, match="not a Silero VAD model"):
        SileroVad(OrtRuntime(lite_prof.path("expression")))


@pytest.fixture(scope="module")
def silero_sequence(silero_sequence_path):
    return SileroVad.from_path(silero_sequence_path)


def test_sequence_model_is_exact(lite_profile, silero, silero_sequence, beckett):
    assert silero_sequence.mode == "sequence" and silero.mode == "streaming"
    clips = [
        beckett[: 2 * SR],
        beckett[3 * SR : 5 * SR + 777],
        np.zeros(SR, np.float32),
        np.zeros(10, np.float32),
    ]
    for a, b in zip(silero.analyze_batch(clips), silero_sequence.analyze_batch(clips), strict=True):
        assert a.probs.shape == b.probs.shape
        assert np.abs(a.probs - b.probs).max(initial=0.0) < 1e-5
        assert a.segments == b.segments


def test_stream_vad_equals_one_continuous_pass(silero, beckett):
    from affectstream.engine.models.vad import StreamVad

    sv = StreamVad(silero)
    full = silero.analyze(beckett).probs
    for k in range(7):  # 2 s windows, hop 1 s: half of every window was already run
        s = k * SR
        r = sv.analyze("s", float(k), beckett[s : s + 2 * SR])
        k0 = -(-s // CHUNK)
        assert np.abs(r.probs - full[k0 : k0 + len(r.probs)]).max() < 1e-5
        assert all(0 <= a < b <= 2.0 + 1e-6 for a, b in r.segments)
    st = sv.stats()
    assert st["chunks_reused"] > 150 and st["chunks_run"] < 7 * 62 * 0.6 and st["standalone"] == 0


def test_stream_vad_resets_when_the_clock_restarts(silero, beckett):
    from affectstream.engine.models.vad import StreamVad

    sv = StreamVad(silero)
    assert sv.analyze("r", 0.0, beckett[: 2 * SR]).speech
    # the same stream times, now silence (a reconnect restarted timestamps): no stale "speech"
    r = sv.analyze("r", 1.0, np.zeros(2 * SR, np.float32))
    assert not r.speech and r.speech_ratio == 0.0
    assert sv.stats()["resets"] == 1
