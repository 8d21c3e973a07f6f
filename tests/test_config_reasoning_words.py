"""The words are reasoner evidence: the transcript follows reasoning unless set explicitly."""

from __future__ import annotations

from affectstream.engine.config import load_settings


def test_transcript_on_with_reasoning_off_without_and_explicit_wins() -> None:
    assert load_settings().lite.transcript is True
    assert load_settings(overrides={"reasoning.enabled": False}).lite.transcript is False
    assert load_settings(overrides={"lite.transcript": False}).lite.transcript is False
    assert load_settings(overrides={"reasoning.enabled": False, "lite.transcript": True}).lite.transcript is True
    assert load_settings().reasoning.layout == "auto"
