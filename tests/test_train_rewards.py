"""R1-Omni's reward rules on edge cases (docs/r1omni.md §4.4)."""

from __future__ import annotations

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
