"""R1-Omni's reward rules on edge cases (docs/r1omni.md §4.4)."""

from __future__ import annotations

from typing import Any

import pytest
from affectstream.train.rewards import (
    accuracy_reward,
    extract_answer,
    format_reward,
    score_group,
    total_reward,
)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>smile</think><answer>happy</answer>", 1.0),
        ("<think>smile</think>\n\n <answer>happy</answer>", 1.0),  # \s* between blocks
        ("<think>a\nb</think><answer>x\ny</answer>", 1.0),  # DOTALL
        ("<think></think><answer></answer>", 1.0),  # empty blocks still match
        (" <think>a</think><answer>b</answer>", 0.0),  # leading space
        ("<think>a</think><answer>b</answer>\n", 0.0),  # trailing newline
        ("<answer>b</answer>", 0.0),  # no think
        ("<think>a</think>", 0.0),  # no answer
        ("<think>a</think>x<answer>b</answer>", 0.0),  # text between
        ("<answer>b</answer><think>a</think>", 0.0),  # wrong order
        ("", 0.0),
    ],
)
def test_format_reward(completion: str, expected: float) -> None:
    assert format_reward(completion) == expected


def test_format_reward_non_string() -> None:
    assert format_reward(None) == 0.0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("completion", "solution", "expected"),
    [
        ("<think>x</think><answer>fear</answer>", "fear", 1.0),
        ("<think>x</think><answer> fear </answer>", "<answer> fear </answer>", 1.0),  # both stripped
        ("<answer>fear</answer><answer>sad</answer>", "sad", 0.0),  # FIRST answer counts
        ("<answer>Fear</answer>", "fear", 0.0),  # case-sensitive by default
        ("fear", "fear", 1.0),  # R1-Omni fallback: whole completion when no tags
        ("  fear \n", "<answer>fear</answer>", 1.0),
        ("<answer>fearful</answer>", "fear", 0.0),  # no synonyms by default
        ("<think>fear</think>", "fear", 0.0),  # whole text "<think>fear</think>" != "fear"
        ("<answer>fear", "fear", 0.0),  # unclosed tag: whole text compared
    ],
)
def test_accuracy_reward(completion: str, solution: str, expected: float) -> None:
    assert accuracy_reward(completion, solution) == expected


def test_accuracy_normalisation_is_opt_in() -> None:
    assert accuracy_reward("<answer>Fear.</answer>", "fear") == 0.0
    assert accuracy_reward("<answer>Fear.</answer>", "fear", casefold=True, strip_punct=True) == 1.0
    syn = {"fearful": "fear"}
    assert accuracy_reward("<answer>Fearful</answer>", "fear", casefold=True, synonyms=syn) == 1.0


def test_extract_answer_first_match() -> None:
    assert extract_answer("a<answer> x </answer><answer>y</answer>") == "x"
    assert extract_answer(" plain ") == "plain"


def test_total_and_group() -> None:
    good = "<think>t</think><answer>sad</answer>"
    assert total_reward(good, "sad") == 2.0
    assert total_reward(good, "happy") == 1.0
    assert total_reward("sad", "sad") == 1.0
    g = score_group([good, "sad", "<answer>x</answer>"], "sad")
    assert g["accuracy"] == [1.0, 1.0, 0.0]
    assert g["format"] == [1.0, 0.0, 0.0]
    assert g["reward"] == [2.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="unknown reward"):
        score_group([good], "sad", ("nope",))


# --------------------------------------------------------------------------- grounding (ours)


def _audio_only():
    from affectstream.engine.llm.evidence import Evidence

    return Evidence(
        speech=True, speech_ratio=0.8, arousal=0.8, voice_scores=[("angry", 0.61), ("happy", 0.2)]
    )


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (
            "<think>The voice sounds angry 0.61, loud and tense; no face in view.</think><answer>angry</answer>",
            1.0,
        ),
        ("<think>Overall angry.</think><answer>angry</answer>", 0.5),  # claims nothing absent, names nothing
        ("<think>Face shows neutral.</think><answer>neutral</answer>", 0.0),  # a face that was never there
        ("<think>Voice loud; the words say angry.</think><answer>angry</answer>", 0.0),  # no transcript
        ("<think></think><answer>angry</answer>", 0.0),
        ("angry", 0.0),
    ],
)
def test_grounding_reward(completion: str, expected: float) -> None:
    from affectstream.train.rewards import grounding_reward

    assert grounding_reward(completion, _audio_only()) == expected
    assert grounding_reward(completion, _audio_only().to_dict()) == expected  # stored evidence works too


def test_score_group_passes_evidence_to_context_rewards() -> None:
    comps = [
        "<think>The voice sounds angry.</think><answer>angry</answer>",
        "<think>Face calm.</think><answer>sad</answer>",
    ]
    out = score_group(comps, "angry", ("accuracy", "format", "grounding"), {"evidence": _audio_only()})
    assert out["grounding"] == [1.0, 0.0]
    assert out["reward"] == [3.0, 1.0]
    with pytest.raises(ValueError, match="evidence"):
        score_group(comps, "angry", ("grounding",))
    with pytest.raises(ValueError, match="unknown reward"):
        score_group(comps, "angry", ("nope",))


def test_sft_targets_are_grounded_and_short() -> None:
    from affectstream.train.cues import consistent, generate, target_completion
    from affectstream.train.rewards import grounding_reward

    samples = generate(200, seed=77)
    good = [s for s in samples if consistent(s)]
    assert len(good) > 60
    for s in good:
        t = target_completion(s)
        assert grounding_reward(t, s.evidence) == 1.0, t
        assert format_reward(t) == 1.0 and accuracy_reward(t, s.label) == 1.0
        assert len(t.split("</think>")[0].split()) <= 40  # short: decode time is latency


def _grounded_targets(seed: int, style: str) -> list[tuple[Any, str]]:
    """Label-consistent synthetic samples with their `style` thinks; every target is checked to earn the
    full grounding reward (strongest named, nothing absent claimed), format and accuracy rewards."""
    from affectstream.train.cues import consistent, generate, target_completion, target_think
    from affectstream.train.rewards import grounding_reward

    samples = [s for s in generate(200, seed=seed) if consistent(s)]
    assert len(samples) > 60
    out = []
    for s in samples:
        t = target_completion(s, style)
        assert grounding_reward(t, s.evidence) == 1.0, t
        assert format_reward(t) == 1.0 and accuracy_reward(t, s.label) == 1.0
        out.append((s, target_think(s, style)))
    return out


def test_short_targets_are_one_grounded_sentence() -> None:
    """`think = "short"` targets: fully grounded, one sentence before "So LABEL.", and shorter than the
    full style (decode time is latency)."""
    from affectstream.train.cues import target_think

    full = short = 0
    for s, think in _grounded_targets(78, "short"):
        assert think.endswith(f". So {s.label}.") and think.count(". ") == 1, think
        if not s.evidence.faces:
            assert "no face in view" in think
        short += len(think.split())
        full += len(target_think(s).split())
    assert short < 0.8 * full
    with pytest.raises(ValueError, match="think style"):
        target_think(s, "long")


def test_compact_targets_are_grounded_and_shorter_than_short_ones() -> None:
    """`think = "compact"` (the `compact` prompt layout): fully grounded, one clause group without a
    closing "So LABEL.", a missing face stated as "no face", and fewer characters than the short style
    (each generated token is latency)."""
    from affectstream.train.cues import target_think

    short = compact = 0
    for s, think in _grounded_targets(81, "compact"):
        assert " So " not in think and think.endswith(".") and think.count(". ") == 0, think
        if not s.evidence.faces:
            assert think.endswith("; no face."), think
        compact += len(think)
        short += len(target_think(s, "short"))
    assert compact < 0.75 * short


def test_no_speech_copies_are_words_first_and_grounded() -> None:
    """`without_speech`: the window as a VAD miss reports it (no voice cues, words kept); its target
    cites the words and the missing face, never the voice, and keeps the human label."""
    from affectstream.engine.llm.prompt import render_evidence
    from affectstream.train.cues import CueSample, generate, target_completion, target_think, without_speech
    from affectstream.train.rewards import grounding_reward

    base = next(s for s in generate(200, seed=79) if s.evidence.speech and s.evidence.transcript)
    real = CueSample(base.id, base.label, base.evidence, "real", base.fast_label, "real", {"speaker": "x"})
    real.evidence.faces = []
    copy = without_speech(real)
    assert copy.label == real.label and copy.id.endswith("#nospeech") and copy.meta["augment"] == "no_speech"
    assert real.evidence.speech  # the original is untouched
    ev = copy.evidence
    assert ev.speech is False and not ev.voice_scores and ev.arousal is None and ev.transcript
    assert "Voice: none" in render_evidence(ev)
    think = target_think(copy, "short")
    assert think.startswith("The words") and "voice" not in think.casefold(), think
    assert grounding_reward(target_completion(copy, "short"), ev) == 1.0


def test_targets_cite_numbers_exactly_as_the_prompt_shows_them() -> None:
    """A think copies its numbers from the prompt: every number in a target appears in the rendered
    evidence as written (a target's 1.00 for the prompt's 1 taught the model to loop on zeros)."""
    import re

    from affectstream.engine.llm.prompt import render_evidence
    from affectstream.train.cues import generate, target_think

    nums = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.]*\d)")
    checked = 0
    for s in generate(150, seed=80):
        for style in ("full", "short", "compact"):
            shown = set(nums.findall(render_evidence(s.evidence, compact=style == "compact")))
            think = target_think(s, style)
            quoted = re.sub(r'"[^"]*"', " ", think)  # the words' own digits are the transcript's
            for n in nums.findall(quoted):
                assert n in shown, (n, think, render_evidence(s.evidence))
                checked += 1
    assert checked > 100
