"""Prompt rendering: the evidence of a real-shaped WindowResult becomes a short R1-Omni-style prompt."""

from __future__ import annotations

import json

from affectstream.engine.labels import EMOTIONS, RAVDESS_LABELS
from affectstream.engine.llm.prompt import FORMAT_RULE, QUESTION, Evidence, chat_messages, render_prompt
from affectstream.engine.types import FaceResult, VoiceResult, WindowRef, WindowResult
from llm_examples import CUE_EXAMPLES


def _result(**kw) -> WindowResult:
    base = dict(
        stream="cam0",
        window=WindowRef(7, 14.0, 16.0),
        label="happy",
        score=0.71,
        scores={k: 0.05 for k in EMOTIONS} | {"happy": 0.71},
        faces=[
            FaceResult(
                1,
                (10, 10, 90, 90),
                "happy",
                0.8,
                {
                    "angry": 0.01,
                    "disgust": 0.0,
                    "fear": 0.05,
                    "happy": 0.8,
                    "sad": 0.02,
                    "surprise": 0.0,
                    "neutral": 0.12,
                },
                {"smile": 0.9, "mouth_open": 0.3},
            )
        ],
        voice=VoiceResult(True, 0.8, 212.3, 40.1, -21.4, 4.2, 0.15, 0.62, "Oh wow, that is great news!"),
    )
    base.update(kw)
    return WindowResult(**base)


def test_evidence_from_result_keeps_sorted_top_scores_actions_voice_and_fast_label() -> None:
    ev = Evidence.from_result(_result())
    assert [k for k, _ in ev.faces[0].expressions] == ["happy", "neutral", "fear"]
    assert ev.faces[0].actions == {"smile": 0.9, "mouth_open": 0.3}
    assert (ev.speech, ev.pitch_hz, ev.arousal) == (True, 212.3, 0.62)
    assert (ev.fast_label, ev.fast_score) == ("happy", 0.71)
    assert ev.transcript == "Oh wow, that is great news!"
    # round trip through JSON, as training sets store it
    assert Evidence.from_dict(json.loads(json.dumps(ev.to_dict()))) == ev


def test_prompt_has_cues_then_r1omni_instruction_ending_with_format_sentence() -> None:
    text = render_prompt(Evidence.from_result(_result()))
    assert text.endswith(FORMAT_RULE)
    assert FORMAT_RULE.startswith("Output the thinking process in <think> </think> and final emotion")
    assert QUESTION in text and text.index("Face 1: happy 0.8") < text.index(QUESTION)
    assert "pitch 212 Hz (var 40)" in text and "smile 0.9" in text and "Fast model: happy 0.71" in text
    assert "Choose one of: " + ", ".join(EMOTIONS) in text
    assert len(text) < 700  # compact: prefill is latency


def test_prompt_without_fast_label_and_with_other_labels() -> None:
    text = render_prompt(Evidence.from_result(_result()), labels=RAVDESS_LABELS, include_fast=False)
    assert "Fast model" not in text and "calm" in text


def test_missing_modalities_and_long_transcript_are_stated_compactly() -> None:
    r = _result(faces=[], voice=None)
    text = render_prompt(Evidence.from_result(r))
    assert "Face: none visible." in text and "Voice: no audio." in text
    r = _result(voice=VoiceResult(True, 0.9, transcript="word " * 200))
    text = render_prompt(Evidence.from_result(r))
    assert text.count("word") < 40 and '..."' in text
    r = _result(voice=VoiceResult(False, 0.0))
    assert "Voice: no speech." in render_prompt(Evidence.from_result(r))


def test_many_faces_are_capped() -> None:
    faces = [FaceResult(i, (0, 0, 1, 1), "sad", 0.5, {"sad": 0.5, "neutral": 0.3}) for i in range(6)]
    text = render_prompt(Evidence.from_result(_result(faces=faces)))
    assert "Face 3:" in text and "Face 4:" not in text and "(3 more faces.)" in text


def test_chat_messages_shape_and_examples_render() -> None:
    msgs = chat_messages(Evidence.from_result(_result()))
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert [m["role"] for m in chat_messages(Evidence(), system=None)] == ["user"]
    for ev, label in CUE_EXAMPLES:
        assert label in EMOTIONS
        assert render_prompt(ev).endswith(FORMAT_RULE)
