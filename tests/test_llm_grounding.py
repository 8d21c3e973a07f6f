"""Grounding by parsing: which modalities a think cites, which the window had, which weighed most."""

from __future__ import annotations

import pytest
from affectstream.engine.llm import grounding
from affectstream.engine.llm.evidence import Evidence, FaceCue


def _ev(face: float | None = None, voice: float | None = None, words: str | None = None) -> Evidence:
    faces = [FaceCue(1, [("happy", face), ("neutral", 0.1)])] if face is not None else []
    return Evidence(
        faces=faces,
        speech=voice is not None,
        arousal=0.7 if voice is not None else None,
        voice_scores=[("angry", voice)] if voice else [],
        transcript=words,
    )


@pytest.mark.parametrize(
    ("think", "claims", "denials"),
    [
        ("The voice sounds angry 0.61, loud and tense; no face in view.", {"voice"}, {"face"}),
        ('The words "I hate this" sound angry. So angry.', {"words"}, set()),
        ("Face shows happy with a smile. Voice is calm.", {"face", "voice"}, set()),
        ("Face: none. Voice: none (no speech).", set(), {"face", "voice"}),
        ("The face is hidden but the words are neutral.", {"words"}, {"face"}),
        ("Overall happy.", set(), set()),
    ],
)
def test_cited_and_denied_by_clause(think: str, claims: set[str], denials: set[str]) -> None:
    got = grounding.cited(think)
    assert got == (claims, denials)


def test_strongest_follows_fixed_weights() -> None:
    assert grounding.strongest(_ev(face=0.8, voice=0.5)) == "face"
    assert grounding.strongest(_ev(face=0.4, voice=0.6)) == "voice"
    # emotional words weigh 0.8, neutral words 0.1
    assert grounding.strongest(_ev(face=0.6, voice=0.5, words="I'm so scared, help me")) == "words"
    assert grounding.strongest(_ev(face=0.6, words="the train leaves at nine")) == "face"
    assert grounding.strongest(Evidence()) is None
    # prosody alone (no voice model) is weak evidence
    assert grounding.weights(Evidence(speech=True, arousal=0.9))["voice"] == grounding.PROSODY_ONLY_WEIGHT


def test_check_flags_claims_of_absent_evidence() -> None:
    audio_only = _ev(voice=0.6)
    bad = grounding.check("Face shows neutral.", audio_only)  # the old reasoner's think on real speech
    assert bad.violations == ("face",) and not bad.grounded and not bad.names_strongest
    good = grounding.check("The voice sounds angry 0.6; no face in view.", audio_only)
    assert good.grounded and good.names_strongest and good.cited == ("voice",)
    words = grounding.check('The words "wow" say surprise.', _ev(face=0.5))
    assert words.violations == ("words",)


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Stop lying to me, I'm so angry", "angry"),
        ("ew, that is disgusting", "disgust"),
        ("wow, I did not expect that", "surprise"),
        ("Kids are talking by the door", None),
        ("I made it to the meeting", None),  # "made" is not "mad"
        ("Dogs are sitting by the door", None),
    ],
)
def test_word_emotion_lexicon(text: str, label: str | None) -> None:
    got = grounding.word_emotion(text)
    assert (got[0] if got else None) == label
