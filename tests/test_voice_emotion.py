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
