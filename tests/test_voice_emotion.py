"""The speech-emotion head in the lite profile: pinned, hash-checked, run on speech windows only, and
its scores in schema-valid payloads (real profile, real Whisper encoder, real ONNX Runtime)."""

from __future__ import annotations

import hashlib
import json
import shutil
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.runtimes.base import ModelFileError
from affectstream.engine.types import VideoFrame, Window
from media import astronaut_bgr, beckett_audio, moving_frames

pytest.importorskip("faster_whisper", reason="the encoder needs faster-whisper")

SR = 16_000


def payload(r) -> dict:
    from affectstream.streams.contract import validate

    p = json.loads(json.dumps(r.to_payload()))
    validate("window", p)
    assert abs(sum(p["scores"].values()) - 1) < 1e-3
    return p


def test_pin_matches_the_packaged_head():
    pins = json.loads((files("affectstream.export") / "pins" / "lite.json").read_text())
    spec = pins["components"]["voice_emotion"]
    data = (files(spec["package"]) / spec["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == spec["sha256"]
    assert 10_000 < len(data) < 20_000_000  # KB-MB, as package data should be


def test_head_loads_from_profile_and_scores_speech(lite_prof):
    from affectstream.engine.models.voice_emotion import VoiceEmotionModel

    assert lite_prof.has("voice_emotion")
    m = VoiceEmotionModel.from_profile(lite_prof)
    assert m.info.labels == EMOTIONS and m.info.temperature > 0 and m.info.cv_uar is not None
    speech = beckett_audio()
    p = m.predict([speech[SR : 3 * SR], speech[4 * SR : 6 * SR], np.zeros(100, np.float32)])
    assert p.shape == (3, 7) and np.allclose(p.sum(1), 1, atol=1e-4)
    assert np.allclose(p[2], 1 / 7)  # too short to say anything: uniform
    assert not np.allclose(p[0], p[1])  # different speech, different scores
    # batched == one by one (equal-length windows share one encoder call)
    one = m.predict([speech[SR : 3 * SR]])
    assert np.allclose(one[0], p[0], atol=2e-3)


def test_damaged_head_is_rejected_with_the_fix(tmp_path, lite_profile):
    from affectstream.engine.profile import Profile

    src = Path(lite_profile)
    man = json.loads((src / "manifest.json").read_text())
    keep = {k: v for k, v in man["components"].items() if k in ("voice_emotion", "whisper")}
    (tmp_path / "manifest.json").write_text(json.dumps({**man, "components": keep}))
    shutil.copy(src / keep["voice_emotion"]["file"], tmp_path / keep["voice_emotion"]["file"])
    (tmp_path / keep["whisper"]["file"]).symlink_to(src / keep["whisper"]["file"])
    Profile.load(tmp_path)  # intact: loads
    head = tmp_path / keep["voice_emotion"]["file"]
    data = bytearray(head.read_bytes())
    data[len(data) // 2] ^= 0xFF
    head.write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as e:
        Profile.load(tmp_path)
    msg = str(e.value)
    assert (
        "voice_emotion" in msg
        and "SHA-256" in msg
        and f"affectstream models prepare lite --dest {tmp_path}" in msg
    )


def test_audio_only_window_gets_a_real_voice_label(lite_analyzer):
    r = lite_analyzer.analyze(Window("ve-audio", 0, 0.0, 2.0, [], beckett_audio()[SR : 3 * SR]))
    p = payload(r)
    v = p["voice"]
    assert v["speech"] and v["scores"] is not None and set(v["scores"]) == set(EMOTIONS)
    assert abs(sum(v["scores"].values()) - 1) < 1e-3
    assert p["modalities"] == {"face": 0.0, "voice": 1.0}
    assert p["label"] == max(v["scores"], key=v["scores"].get)  # audio only: the voice decides
    assert "voice_emotion" in p["latency_ms"]
    silent = lite_analyzer.analyze(Window("ve-audio", 1, 1.0, 3.0, [], np.zeros(2 * SR, np.float32)))
    ps = payload(silent)
    assert ps["voice"]["scores"] is None and ps["label"] == "neutral"  # no speech, no voice model call


def test_face_only_window_is_unchanged(lite_analyzer):
    from affectstream.engine.lite import LiteAnalyzer

    frames = moving_frames(astronaut_bgr(), 8)
    w = Window(
        "ve-face",
        0,
        0.0,
        2.0,
        [VideoFrame(k / 4, f, k) for k, f in enumerate(frames)],
        np.zeros(0, np.float32),
    )
    r = lite_analyzer.analyze(w)
    p = payload(r)
    assert p["voice"] is None and p["modalities"] == {"face": 1.0, "voice": 0.0}
    assert p["label"] == "happy" and p["scores"] == p["faces"][0]["scores"]
    assert (
        isinstance(lite_analyzer, LiteAnalyzer)
        and lite_analyzer.runtime_info()["voice_emotion"]["windows"] >= 0
    )


def test_face_and_speech_window_fuses_both(lite_analyzer):
    frames = moving_frames(astronaut_bgr(), 8)
    w = Window(
        "ve-both",
        0,
        0.0,
        2.0,
        [VideoFrame(k / 4, f, k) for k, f in enumerate(frames)],
        beckett_audio()[SR : 3 * SR],
    )
    p = payload(lite_analyzer.analyze(w))
    assert p["voice"]["scores"] is not None and p["faces"]
    assert set(p["modalities"]) == {"face", "voice"} and abs(sum(p["modalities"].values()) - 1) < 1e-2
    assert p["modalities"]["face"] > 0 and p["modalities"]["voice"] > 0


def test_stream_windows_encode_only_their_newest_piece(lite_prof):
    """A stream's overlapping windows (2 s every 1 s) encode only their newest `chunk_s` piece and reuse
    the states of earlier pieces, and score the same as encoding the window's last `context_s` cut the
    way the head was trained (pieces back from the end, each alone)."""
    from affectstream.engine.models.voice_emotion import VoiceEmotionModel

    m = VoiceEmotionModel.from_profile(lite_prof)
    chunk = m.info.chunk_s
    assert 0 < chunk <= 2 and m.info.context_s == 4  # the shipped head: 4 s of context in pieces
    speech = beckett_audio()[: 9 * SR]
    ctx = m.stream_context()
    before = m.encoder.samples_encoded
    streamed = []
    for k in range(8):  # windows [k, k+2) s
        streamed.append(m.predict_windows([(ctx, float(k), speech[k * SR : (k + 2) * SR], True)])[0])
    # one piece per window (the window's last `chunk` s), not the whole 4 s context again
    encoded = m.encoder.samples_encoded - before
    assert encoded == round((8 * chunk + max(0.0, 2 - chunk)) * SR)
    ends = [(k + 2) * SR for k in range(8)]
    whole = [m.predict([speech[max(0, e - m.context_samples) : e]])[0] for e in ends]
    # streamed == the training-time cut of the stream's last 4 s, from the first window on
    assert np.allclose(np.array(streamed), np.array(whole), atol=2e-3)
    # a window without speech is consumed unencoded and scores nothing
    before = m.encoder.samples_encoded
    assert m.predict_windows([(ctx, 8.0, np.zeros(2 * SR, np.float32), False)]) == [None]
    assert m.encoder.samples_encoded == before
    # a clock that goes back (a restarted source) starts the context over
    p = m.predict_windows([(ctx, 0.0, speech[: 2 * SR], True)])[0]
    assert p is not None and np.allclose(p, whole[0], atol=2e-3) and len(ctx.pieces) == 1


def test_voice_part_beside_the_faces_gives_the_same_result(lite_prof, lite_analyzer):
    """`parallel_voice` (the voice part of a batch in a second thread while its faces are analysed)
    changes when the work runs, not what comes out."""
    from affectstream.engine.lite import LiteAnalyzer

    assert lite_analyzer._voice_pool is None  # one thread after the other by default
    par = LiteAnalyzer(lite_prof, threads=1, parallel_voice=True)
    try:
        assert par._voice_pool is not None
        frames = [VideoFrame(k / 4, f, k) for k, f in enumerate(moving_frames(astronaut_bgr(), 8))]
        speech = beckett_audio()
        for k in range(3):
            w = Window("ve-par", k, float(k), k + 2.0, frames, speech[k * SR : (k + 2) * SR])
            a, b = payload(par.analyze(w)), payload(lite_analyzer.analyze(w))
            assert a["voice"]["scores"] is not None and a["faces"]
            assert a["label"] == b["label"] and a["modalities"] == b["modalities"]
            assert np.allclose(
                [a["scores"][e] for e in EMOTIONS], [b["scores"][e] for e in EMOTIONS], atol=1e-5
            )
            assert {"vad", "voice_emotion", "analyze"} <= set(a["latency_ms"])
    finally:
        par.close()


def test_short_last_window_and_batched_windows_encode_whole_pieces(lite_prof):
    """A file's last window is shorter than a piece: it encodes a whole piece ending at its end (the
    stream's kept audio before it), as training cut them. Windows of one stream analysed in one batch
    score exactly as one by one (the batch plans each window after the one before)."""
    from affectstream.engine.models.voice_emotion import VoiceEmotionModel

    m = VoiceEmotionModel.from_profile(lite_prof)
    chunk = round(m.info.chunk_s * SR)
    speech = beckett_audio()[: int(3.6 * SR)]
    wins = [(0.0, speech[: 2 * SR]), (1.0, speech[SR : 3 * SR]), (2.0, speech[2 * SR :])]  # last: 1.6 s
    one, ctx = [], m.stream_context()
    for s, a in wins:
        before = m.encoder.samples_encoded
        one.append(m.predict_windows([(ctx, s, a, True)])[0])
        assert m.encoder.samples_encoded - before == chunk  # a whole piece, also for the short window
    assert [len(p.states) for p in ctx.pieces] == [len(ctx.pieces[0].states)] * 3
    batch_ctx = m.stream_context()
    before = m.encoder.samples_encoded
    batched = m.predict_windows([(batch_ctx, s, a, True) for s, a in wins])
    assert m.encoder.samples_encoded - before == 3 * chunk
    assert np.allclose(np.array(batched), np.array(one), atol=1e-5)
