"""R1-Omni's verifiable rewards, as plain functions, plus our grounding reward.

Why plain functions: GRPO only needs a number per completion, and keeping the rules free of any
trainer makes them testable on edge cases and reusable by evaluation (format rate = mean format
reward). The defaults reproduce R1-Omni exactly; the optional normalisation exists because our
labels are lower-case words and a user may want "Happy" to count, but it is OFF unless asked for.

The grounding reward (ours, not R1-Omni's) needs the window's evidence besides the solution: the
think must name the modality that carried the most weight and must not claim evidence the cues do
not contain. It is checked by parsing (engine/llm/grounding.py, the same code that fills the
`evidence` field of `reasoning` messages), never by another model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from affectstream.engine.llm import grounding
from affectstream.engine.llm.evidence import Evidence

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)


def extract_answer(text: str) -> str:
    """R1-Omni's answer extraction: first `<answer>(.*?)</answer>` stripped, else the whole text stripped.

    The fallback (whole text) is R1-Omni's: a bare "happy" still earns accuracy there, while the
    format reward is what punishes the missing tags.
    """
    m = _ANSWER.search(text)
    return (m.group(1) if m else text).strip()


def normalize(
    text: str, casefold: bool = False, synonyms: Mapping[str, str] | None = None, strip_punct: bool = False
) -> str:
    """Optional answer normalisation (all off by default, which is R1-Omni's exact-match rule)."""
    t = text
    if strip_punct:
        t = re.sub(r"^[\W_]+|[\W_]+$", "", t)
    if casefold:
        t = t.casefold()
    if synonyms:
        key = t.casefold() if casefold else t
        t = synonyms.get(key, t)
    return t


def accuracy_reward(
    completion: str,
    solution: str,
    casefold: bool = False,
    synonyms: Mapping[str, str] | None = None,
    strip_punct: bool = False,
) -> float:
    """1.0 when the completion's answer equals the solution's answer, else 0.0 (docs/r1omni.md §4.4).

    Both sides go through `extract_answer`, so `solution` may be "<answer> fear </answer>" (the
    R1-Omni dataset form) or just "fear". R1-Omni first tries math_verify, which never fires for
    emotion words, so it is omitted here.
    """
    if not isinstance(completion, str) or not isinstance(solution, str):
        return 0.0
    got = normalize(extract_answer(completion), casefold, synonyms, strip_punct)
    want = normalize(extract_answer(solution), casefold, synonyms, strip_punct)
    return 1.0 if got == want else 0.0


def format_reward(completion: str) -> float:
    """1.0 when the WHOLE completion is `<think>…</think>\\s*<answer>…</answer>` (fullmatch, DOTALL).

    No leading or trailing text, not even whitespace, is allowed — R1-Omni's rule verbatim.
    """
    if not isinstance(completion, str):
        return 0.0
    return 1.0 if _FORMAT.fullmatch(completion) is not None else 0.0


def total_reward(completion: str, solution: str, **accuracy_kwargs: object) -> float:
    """R1-Omni's reward: accuracy + format, equal weights, range {0, 1, 2}."""
    return accuracy_reward(completion, solution, **accuracy_kwargs) + format_reward(completion)  # type: ignore[arg-type]


_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def grounding_reward(completion: str, evidence: Evidence | Mapping[str, Any]) -> float:
    """1.0 when the think names the strongest modality and claims nothing absent; 0.5 when it claims
    nothing absent but misses the strongest; 0.0 on any claim of absent evidence or without a think.

    A violation zeroes the reward because an explanation that invents a face is worse than a vague
    one; the half step keeps a gradient between "vague" and "right" for GRPO's group advantages.
    """
    if not isinstance(completion, str):
        return 0.0
    m = _THINK.search(completion)
    if m is None or not m.group(1).strip():
        return 0.0
    ev = evidence if isinstance(evidence, Evidence) else Evidence.from_dict(evidence)
    g = grounding.check(m.group(1), ev)
    if g.violations:
        return 0.0
    return 1.0 if g.names_strongest else 0.5


RewardFn = Callable[[str, str], float]
ContextRewardFn = Callable[[str, str, Mapping[str, Any]], float]

REWARD_FUNCS: dict[str, RewardFn] = {"accuracy": accuracy_reward, "format": lambda c, s: format_reward(c)}
# Rewards that also read the example's context (its `evidence`).
CONTEXT_REWARD_FUNCS: dict[str, ContextRewardFn] = {
    "grounding": lambda c, s, ctx: grounding_reward(c, ctx["evidence"]),
}


def score_group(
    completions: Sequence[str],
    solution: str,
    funcs: Sequence[str] = ("accuracy", "format"),
    context: Mapping[str, Any] | None = None,
) -> dict[str, list[float]]:
    """Each named reward for each completion, plus their sum under key "reward".

    `context` carries what context rewards need (`{"evidence": Evidence | dict}` for grounding).
    """
    out: dict[str, list[float]] = {}
    for name in funcs:
        if name in REWARD_FUNCS:
            out[name] = [REWARD_FUNCS[name](c, solution) for c in completions]
        elif name in CONTEXT_REWARD_FUNCS:
            if not context or "evidence" not in context:
                raise ValueError(f"reward {name!r} needs the example's evidence (context['evidence'])")
            out[name] = [CONTEXT_REWARD_FUNCS[name](c, solution, context) for c in completions]
        else:
            known = sorted({*REWARD_FUNCS, *CONTEXT_REWARD_FUNCS})
            raise ValueError(f"unknown reward function {name!r}; known: {known}")
    out["reward"] = [sum(vals) for vals in zip(*(out[n] for n in funcs), strict=True)]
    return out
