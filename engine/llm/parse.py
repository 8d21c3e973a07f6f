"""Read a generation's `<think>` and `<answer>` and decide whether the answer is a usable label.

R1-Omni's rules (docs/r1omni.md §3.7): the answer is the *first* `<answer>(.*?)</answer>` match, stripped;
the format is right when the whole completion is `<think>.*?</think>\\s*<answer>.*?</answer>`.
We keep both rules (`well_formed` is R1-Omni's format reward verbatim) but are more forgiving when
mapping the answer to a label — case, surrounding whitespace/punctuation, unicode look-alikes and
common word forms ("Happiness", " sad. ") — because in production a usable label beats a strict
reward. Nothing here raises: any input gives a `Parsed` whose `error` names what was wrong.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from affectstream.engine.labels import EMOTIONS

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.IGNORECASE | re.DOTALL)
_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_OPEN_ANSWER = re.compile(r"<answer>(.*)$", re.IGNORECASE | re.DOTALL)

# Word forms a small model writes instead of the label; applied only when the target is in the label set.
SYNONYMS: dict[str, str] = {
    "anger": "angry",
    "angered": "angry",
    "mad": "angry",
    "disgusted": "disgust",
    "disgusting": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "happiness": "happy",
    "joy": "happy",
    "joyful": "happy",
    "sadness": "sad",
    "unhappy": "sad",
    "surprised": "surprise",
    "surprising": "surprise",
    "neutrality": "neutral",
    "calmness": "calm",
    "contempt": "contemptuous",
    "anxiety": "anxious",
    "helplessness": "helpless",
    "disappointment": "disappointed",
}


@dataclass(slots=True, frozen=True)
class Parsed:
    """What a generation said. `valid` means `answer` is a label from the set; `error` says why not."""

    think: str
    answer: str | None
    raw_answer: str | None
    valid: bool
    well_formed: bool  # R1-Omni's format reward: fullmatch <think>.*?</think>\s*<answer>.*?</answer>
    answers_found: int
    error: str | None = None


def normalize_label(text: str, labels: Sequence[str] = EMOTIONS) -> str | None:
    """Map free text to a label of `labels`, or None. Tolerates case, unicode forms, punctuation."""
    t = unicodedata.normalize("NFKC", text).casefold().strip()
    t = re.sub(r"^[\W_]+|[\W_]+$", "", t)  # leading/trailing punctuation, quotes, brackets
    if not t:
        return None
    by_fold = {lab.casefold(): lab for lab in labels}
    if t in by_fold:
        return by_fold[t]
    syn = SYNONYMS.get(t)
    if syn is not None and syn.casefold() in by_fold:
        return by_fold[syn.casefold()]
    return None


def parse_generation(text: object, labels: Sequence[str] = EMOTIONS) -> Parsed:
    """Parse one completion; never raises (non-str input is an error result, not an exception)."""
    if not isinstance(text, str):
        return Parsed("", None, None, False, False, 0, f"generation is {type(text).__name__}, not text")
    if not text.strip():
        return Parsed("", None, None, False, False, 0, "empty generation")
    answers = _ANSWER.findall(text)
    tm = _THINK.search(text)
    think = tm.group(1).strip() if tm else ""
    well_formed = _FORMAT.fullmatch(text) is not None
    if not answers:
        # A generation cut at max_tokens may hold an opened, unclosed answer: still say what it was.
        om = _OPEN_ANSWER.search(text)
        raw = om.group(1).strip() if om else None
        if not tm:
            think = text.split("<answer>")[0].replace("<think>", "").strip()
        return Parsed(think, None, raw, False, False, 0, "no <answer>…</answer> in generation")
    raw = answers[0].strip()
    label = normalize_label(raw, labels)
    if label is None:
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        return Parsed(think, None, raw, False, well_formed, len(answers), f"answer {shown!r} is not a label")
    return Parsed(think, label, raw, True, well_formed, len(answers), None)
