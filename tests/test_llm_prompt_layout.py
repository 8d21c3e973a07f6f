"""The `evidence` prompt layout: fixed instruction first (a cacheable prefix), then a stable cue block."""

from __future__ import annotations

import pytest
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.llm import grounding
from affectstream.engine.llm.evidence import Evidence, FaceCue
from affectstream.engine.llm.prompt import (
    FORMAT_RULE,
    PERCENT_RULE,
    QUESTION,
    RANK_RULE,
    chat_messages,
    cue_block,
    instruction,
    percent,
    render_evidence,
)


def _full() -> Evidence:
    return Evidence(
        faces=[FaceCue(1, [("happy", 0.81), ("neutral", 0.1)], {"smile": 0.7})],
        speech=True,
        speech_ratio=0.7,
        pitch_hz=212.0,
        energy_db=-23.5,
        arousal=0.66,
        voice_scores=[("angry", 0.61), ("happy", 0.2)],
        transcript="this is ridiculous",
        fast_label="happy",
        fast_score=0.8,
    )


def _chatml(msgs: list[dict[str, str]]) -> str:
    return (
        "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs)
        + "<|im_start|>assistant\n"
    )


def test_instruction_comes_first_and_is_identical_for_every_window() -> None:
    a = _chatml(chat_messages(_full()))
    b = _chatml(chat_messages(Evidence(speech=True, arousal=0.2)))
    head = a[: a.index("Face:")]
    assert b.startswith(head) and QUESTION in head and FORMAT_RULE in head
    assert ", ".join(EMOTIONS) in head
    assert len(head) > len(a) - len(head)  # most of the prompt is the cached part


def test_cue_block_lines_in_fixed_order_without_fast_label() -> None:
    text = render_evidence(_full())
    lines = text.split("\n")
    assert [ln.split(":")[0] for ln in lines] == ["Face", "Voice", "Words"]
    assert lines[0] == "Face: happy 0.81, neutral 0.1; smile 0.7."
    assert lines[1].startswith("Voice: angry 0.61, happy 0.2; speech 0.7, pitch 212 Hz")
    assert lines[2] == 'Words: "this is ridiculous"'
    assert "Fast model" not in text
    assert "Fast model: happy 0.8." in render_evidence(_full(), include_fast=True)


def test_compact_layout_shows_whole_percents_and_shares_its_own_fixed_head() -> None:
    """`compact`: the same lines with scores in whole percents and no speech ratio (fewer tokens);
    its instruction says so, and stays identical for every window (the cached prefix)."""
    text = cue_block(_full(), "compact")
    lines = text.split("\n")
    assert lines[0] == "Face: happy 81, neutral 10; smile 70."
    assert lines[1].startswith("Voice: angry 61, happy 20; pitch 212 Hz, energy") and lines[1].endswith(
        "arousal 66."
    )
    assert "speech" not in lines[1] and lines[2] == 'Words: "this is ridiculous"'
    assert cue_block(_full(), "evidence") == render_evidence(_full())
    assert percent(0.976) == "98" and percent(1.7) == "100" and percent(-0.2) == "0"
    a = _chatml(chat_messages(_full(), layout="compact"))
    b = _chatml(chat_messages(Evidence(speech=True, arousal=0.2), layout="compact"))
    head = a[: a.index("Face:")]
    assert b.startswith(head) and PERCENT_RULE in head
    assert PERCENT_RULE not in _chatml(chat_messages(_full(), layout="evidence"))


def test_ranked_layout_puts_the_strongest_present_modality_first_and_absent_ones_last() -> None:
    """`ranked`: the compact lines reordered by grounding's weights, so the line a think should cite
    first is the first line; a modality the window lacks comes after every present one."""
    full = _full()  # face 0.81 > words 0.8 (an emotion word) > voice 0.61
    assert [ln.split(":")[0] for ln in cue_block(full, "ranked").split("\n")] == ["Face", "Words", "Voice"]
    assert sorted(cue_block(full, "ranked").split("\n")) == sorted(cue_block(full, "compact").split("\n"))
    full.voice_scores = [("angry", 0.9)]
    assert grounding.strongest(full) == "voice"
    assert cue_block(full, "ranked").split("\n")[0].startswith("Voice: angry 90")
    faceless = Evidence(speech=True, voice_scores=[("sad", 0.7)], transcript="the door is open")
    assert cue_block(faceless, "ranked") == (
        'Voice: sad 70.\nWords: "the door is open"\nFace: none.'
    )  # neutral words (0.1) still rank above an absent face
    silent = Evidence(faces=[FaceCue(1, [("fear", 0.2)])], speech=False)
    assert cue_block(silent, "ranked") == "Face: fear 20.\nVoice: none (no speech).\nWords: none."
    assert cue_block(Evidence(), "ranked") == "Face: none.\nVoice: none.\nWords: none."
    head = _chatml(chat_messages(full, layout="ranked"))
    assert RANK_RULE in head and PERCENT_RULE in head
    assert RANK_RULE not in _chatml(chat_messages(full, layout="compact"))


def test_absent_modalities_are_marked_none() -> None:
    assert render_evidence(Evidence()) == "Face: none.\nVoice: none.\nWords: none."
    assert "Voice: none (no speech)." in render_evidence(Evidence(speech=False))


def test_voice_scores_from_payload_and_json_round_trip() -> None:
    payload = {"faces": [], "voice": {"speech": True, "speech_ratio": 0.9, "scores": {"sad": 0.7, "neutral": 0.2,
               "angry": 0.05, "happy": 0.05}}, "label": "sad", "score": 0.7}  # fmt: skip
    ev = Evidence.from_payload(payload)
    assert ev.voice_scores == [("sad", 0.7), ("neutral", 0.2), ("angry", 0.05)]
    assert Evidence.from_dict(ev.to_dict()) == ev
    assert (
        Evidence.from_dict({k: v for k, v in ev.to_dict().items() if k != "voice_scores"}).voice_scores == []
    )


def test_legacy_layout_is_kept_and_unknown_layout_rejected() -> None:
    msgs = chat_messages(_full(), layout="legacy")
    assert msgs[-1]["content"].endswith(FORMAT_RULE) and "Fast model: happy" in msgs[-1]["content"]
    no_system = chat_messages(_full(), system=None)
    assert [m["role"] for m in no_system] == ["user"] and no_system[0]["content"].startswith(instruction())
    with pytest.raises(ValueError, match="layout"):
        chat_messages(_full(), layout="other")
