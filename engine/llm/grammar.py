"""A GBNF grammar that lets the decoder write only `<think>…</think><answer>LABEL</answer>`.

Why: the untrained 135M model almost never follows the tag format (docs/models.md §6), and
even a trained one drifts. Constraining decoding makes every generation parseable and the answer a
member of the label set by construction. The think part excludes `<` (so no nested or early tags)
and is bounded in characters, which together with `token_budget()` guarantees the closing tags fit
in `max_tokens`: each token carries at least one character, so N think characters cost ≤ N tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from affectstream.engine.labels import EMOTIONS

# what a think may contain, in both GBNF and Python regex syntax: anything but "<" and control bytes
THINK_CLASS = "[^<\\x00-\\x08]"
DEFAULT_THINK_CHARS = 200  # ≈ 45–60 tokens of English; the latency goal is a ≤ 64-token think


def _literal(s: str) -> str:
    """A GBNF string literal, escaping what the grammar syntax would otherwise read."""
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{out}"'


def build_grammar(
    labels: Sequence[str] = EMOTIONS,
    max_think_chars: int = DEFAULT_THINK_CHARS,
    min_think_chars: int = 1,
) -> str:
    """GBNF text for `<think>` ≤ max_think_chars `</think>` optional newline `<answer>`LABEL`</answer>`."""
    labels = [str(x) for x in labels]
    if not labels:
        raise ValueError("grammar needs at least one label")
    bad = [x for x in labels if not x.strip() or "<" in x or ">" in x]
    if bad:
        raise ValueError(f"labels must be non-empty and free of '<' '>': {bad!r}")
    if not 0 <= min_think_chars <= max_think_chars or max_think_chars < 1:
        raise ValueError(
            f"think bounds must satisfy 0 <= min <= max, max >= 1 (got {min_think_chars}, {max_think_chars})"
        )
    alts = " | ".join(_literal(x) for x in labels)
    return (
        'root ::= "<think>" think "</think>" "\\n"? "<answer>" label "</answer>"\n'
        f"think ::= {THINK_CLASS}{{{min_think_chars},{max_think_chars}}}\n"
        f"label ::= {alts}\n"
    )


def token_budget(labels: Sequence[str] = EMOTIONS, max_think_chars: int = DEFAULT_THINK_CHARS) -> int:
    """A `max_tokens` that can never cut a grammar-constrained generation short (worst case 1 char/token)."""
    fixed = len("<think></think>\n<answer></answer>") + max(len(x) for x in labels)
    return max_think_chars + fixed


def matches(
    text: str,
    labels: Sequence[str] = EMOTIONS,
    max_think_chars: int = DEFAULT_THINK_CHARS,
    min_think_chars: int = 1,
) -> bool:
    """True when `text` is a complete string of `build_grammar`'s language (same labels and bounds).

    Why: greedy decoding under the grammar picks, at each step, the most likely token the grammar
    allows. When the unconstrained greedy output is itself in the language, every prefix was allowed,
    so the constrained decoder would have written exactly the same text; checking afterwards spares
    the per-token grammar pass in that (common) case.
    """
    alts = "|".join(re.escape(str(x)) for x in labels)
    think = f"{THINK_CLASS}{{{min_think_chars},{max_think_chars}}}"
    return re.fullmatch(f"<think>{think}</think>\\n?<answer>(?:{alts})</answer>", text, re.DOTALL) is not None
