"""The r1-omni analyzer on the tiny checkpoint: modes, frame cache, results, reasoning, prompt text."""

from __future__ import annotations

import numpy as np
import pytest
from affectstream.engine.analyzer import Analyzer
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.omni.preprocess import frames_to_pixels, sample_indices, whisper_features
from affectstream.engine.omni.prompt import render
from affectstream.engine.types import Window


def test_video_audio_window_gives_result_and_reasoning(omni_tiny_analyzer, omni_window) -> None:
    a = omni_tiny_analyzer
    assert isinstance(a, Analyzer) and a.profile == "r1-omni"
    w = omni_window(index=100, first=1000)
    r = a.analyze(w)
    p = r.to_payload()
    assert p["profile"] == "r1-omni" and p["window"]["index"] == 100
    assert p["label"] in EMOTIONS and set(p["scores"]) == set(EMOTIONS)
    assert abs(sum(p["scores"].values()) - 1.0) < 1e-3
    assert p["omni"]["tokens"] == {"video": 392, "audio": 33}  # fast mode: 2 s → 200 mel → 100 → 33
    assert abs(sum(p["omni"]["gate"].values()) - 1.0) < 1e-3
    assert {"vision", "projector", "audio", "prefill", "decode", "total"} <= set(p["latency_ms"])
    rr = a.reasoning(w)
    assert rr.window.index == 100 and rr.profile == "r1-omni"
    assert rr.valid == p["omni"]["valid"]
    assert rr.valid or rr.fallback_label == p["label"]


def test_faithful_audio_gives_500_tokens(omni_tiny_analyzer, omni_window) -> None:
    a = omni_tiny_analyzer
    a.audio_mode = "faithful"
    try:
        r = a.analyze(omni_window(index=101, first=2000))
    finally:
        a.audio_mode = "fast"
    assert r.extra["omni"]["tokens"] == {"video": 392, "audio": 500}


def test_video_only_and_audio_only(omni_tiny_analyzer, omni_window) -> None:
    a = omni_tiny_analyzer
    w = omni_window(index=102, first=3000)
    vid = Window(w.stream_id, 102, w.start, w.end, w.frames, np.zeros(0, np.float32))
    aud = Window(w.stream_id, 103, w.start, w.end, [], w.audio)
    rv, ra = a.analyze(vid), a.analyze(aud)
    assert rv.extra["omni"]["tokens"] == {"video": 392} and set(rv.modalities) == {"video"}
    assert ra.extra["omni"]["tokens"] == {"audio": 33} and set(ra.modalities) == {"audio"}
    assert "gate" not in ra.extra["omni"]
    with pytest.raises(ValueError, match="neither frames nor audio"):
        a.analyze(Window("x", 0, 0.0, 1.0, [], np.zeros(0, np.float32)))


def test_overlapping_windows_reuse_frame_features(omni_tiny_analyzer, omni_window) -> None:
    a = omni_tiny_analyzer
    w1 = omni_window(index=200, first=5000)
    w2 = omni_window(index=201, first=5004)  # hop of half a window: 4 of 8 frames shared
    h0, m0 = a.cache.hits, a.cache.misses
    a.analyze(w1)
    assert a.cache.misses - m0 == 8
    a.analyze(w2)
    assert a.cache.misses - m0 == 12 and a.cache.hits - h0 == 4


def test_batch_equals_single(omni_tiny_analyzer, omni_window) -> None:
    a = omni_tiny_analyzer
    ws = [omni_window(index=300 + i, first=7000 + 20 * i) for i in range(2)]
    batch = a.analyze_batch(ws)
    texts_b = [a.reasoning(w) for w in ws]
    single = [a.analyze(w) for w in ws]
    texts_s = [a.reasoning(w) for w in ws]
    assert [r.label for r in batch] == [r.label for r in single]
    assert [(t.think, t.answer) for t in texts_b] == [(t.think, t.answer) for t in texts_s]


def test_prompt_modes_and_reference_text() -> None:
    both = render("Q?", video=True, audio=True)
    assert both == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<vi_start><video><vi_end>\n<au_start><audio><au_end>\nQ?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert "<audio>" not in render("Q?", video=True, audio=False)
    assert "<video>" not in render("Q?", video=False, audio=True)
    with pytest.raises(ValueError):
        render("Q?", video=False, audio=False)


def test_preprocess_reference_rules() -> None:
    assert sample_indices(100) == [6, 19, 31, 43, 56, 68, 80, 93]  # round((99/8)(i+.5)+1e-6)
    assert sample_indices(9) == [1, 2, 3, 4, 5, 6, 7, 8]  # the +1e-6 beats numpy half-to-even
    assert sample_indices(3) == [0, 1, 2]
    wide = np.zeros((100, 200, 3), np.uint8)
    wide[:, :, 2] = 255  # pure red in BGR
    pad = frames_to_pixels([wide], aspect="pad")
    squash = frames_to_pixels([wide], aspect="squash")
    assert pad.shape == squash.shape == (8, 3, 224, 224)
    assert np.allclose(pad[0, :, 0, 112], (127 / 255 - 0.5) / 0.5)  # grey bar above the image
    assert np.allclose(squash[0, 0, 0, 112], 1.0)  # red channel fills the frame when squashed
    assert np.allclose(pad[1:], -1.0)  # short clip: black frames appended
    mel = whisper_features(np.zeros(16000, np.float32), "faithful")
    assert mel.shape == (128, 3000) and np.allclose(mel, -1.5)  # silence → −1.5 (docs/r1omni.md §3.3)
    assert whisper_features(np.zeros(16100, np.float32), "fast").shape == (128, 102)
    assert whisper_features(np.zeros(50, np.float32), "fast").shape == (128, 6)  # ≥ 1 audio token
