"""Parser and grammar-text edge cases: the slow path must never raise on what a model writes."""

from __future__ import annotations

import re

import pytest
from affectstream.engine.labels import EMOTIONS, MAFW_LABELS
from affectstream.engine.llm.grammar import build_grammar, token_budget
from affectstream.engine.llm.parse import normalize_label, parse_generation
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.parametrize(
    ("text", "answer", "valid", "well_formed"),
    [
        ("<think>smiling, bright voice</think><answer>happy</answer>", "happy", True, True),
        ("<think>x</think>\n<answer>sad</answer>", "sad", True, True),
        ("<think>x</think><answer>  HAPPY \n</answer>", "happy", True, True),  # case + whitespace
        ("<think>x</think><answer>Sadness.</answer>", "sad", True, True),  # word form + punctuation
        ("<think>x</think><answer>ｆｅａｒ</answer>", "fear", True, True),  # fullwidth unicode (NFKC)
        ("<think>x</think><answer>«neutral»</answer>", "neutral", True, True),  # unicode quotes
        # first answer wins; R1-Omni's lazy fullmatch regex still calls two answers well-formed
        ("<think>a</think><answer>angry</answer><answer>sad</answer>", "angry", True, True),
        ("<answer>surprise</answer>", "surprise", True, False),  # no think: usable, not well-formed
        ("<THINK>x</THINK><ANSWER>disgust</ANSWER>", "disgust", True, False),  # uppercase tags
        (" <think>x</think><answer>happy</answer>", "happy", True, False),  # R1-Omni: no leading space
        ("<think>x</think><answer>joyous</answer>", None, False, True),  # unknown label
        ("<think>x</think><answer>contemptuous</answer>", None, False, True),  # not in the 7-class set
        ("<think>x</think><answer></answer>", None, False, True),  # empty answer
        ("<think>only thinking, cut off", None, False, False),  # missing answer
        ("<think>x</think><answer>sad", None, False, False),  # unclosed answer
        ("The emotion is happy.", None, False, False),  # no tags at all
        ("", None, False, False),
        ("   \n\t ", None, False, False),
        ("<think>😀😀</think><answer>happy 😀</answer>", "happy", True, True),  # trailing emoji stripped
        ("<think>x</think><answer>happy sad</answer>", None, False, True),  # two words: not a label
    ],
)
def test_parse_edge_cases(text: str, answer: str | None, valid: bool, well_formed: bool) -> None:
    p = parse_generation(text)
    assert p.answer == answer
    assert p.valid is valid
    assert p.well_formed is well_formed
    assert (p.error is None) is valid, p.error


def test_two_answers_are_counted_and_unclosed_answer_is_reported() -> None:
    assert parse_generation("<answer>a</answer><answer>happy</answer>").answers_found == 2
    assert parse_generation("<answer>a</answer><answer>happy</answer>").answer is None  # first one rules
    p = parse_generation("<think>hmm</think><answer>sad")
    assert p.raw_answer == "sad" and p.think == "hmm" and "no <answer>" in (p.error or "")


def test_non_text_input_is_an_error_result_not_an_exception() -> None:
    for bad in (None, 3, b"<answer>happy</answer>", ["happy"]):
        p = parse_generation(bad)
        assert not p.valid and p.error and "not text" in p.error


def test_label_sets_other_than_lite() -> None:
    assert parse_generation("<answer>Contempt</answer>", MAFW_LABELS).answer == "contemptuous"
    assert normalize_label("calm", ("neutral", "calm")) == "calm"
    assert normalize_label("happiness", ("sad", "angry")) is None  # synonym target not in the set


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from([*list("<>/answerthik \n"), "ü", "😀", "ǅ", "\x00"]), max_size=80))
def test_parser_never_raises_on_arbitrary_text(text: str) -> None:
    p = parse_generation(text)
    assert p.answer is None or p.answer in EMOTIONS
    assert p.valid == (p.answer is not None)


def test_grammar_text_lists_exact_labels_and_bounds_think() -> None:
    g = build_grammar(EMOTIONS, max_think_chars=120)
    assert g.startswith('root ::= "<think>" think "</think>"')
    assert "{1,120}" in g
    alts = re.search(r"^label ::= (.*)$", g, re.M)
    assert alts is not None
    assert [a.strip().strip('"') for a in alts.group(1).split("|")] == list(EMOTIONS)
    assert token_budget(EMOTIONS, 120) >= 120 + len("<think></think><answer>surprise</answer>")


def test_grammar_rejects_bad_arguments_with_clear_errors() -> None:
    with pytest.raises(ValueError, match="at least one label"):
        build_grammar(())
    with pytest.raises(ValueError, match="free of"):
        build_grammar(("happy", "<b>"))
    with pytest.raises(ValueError, match="think bounds"):
        build_grammar(EMOTIONS, max_think_chars=0)
    assert '"say \\"hi\\""' in build_grammar(('say "hi"',))  # quotes escaped, not breaking the grammar
