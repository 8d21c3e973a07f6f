"""Window result → ReasoningResult: prompt, generate, parse, validate — and never raise.

The reasoning is an explanation beside the fast label, not a gate on it: a broken, empty or
crashed generation yields `valid=False` with the fast label as `fallback_label`, and the failure is
counted so `stats` can show how often the slow path fails.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from affectstream.engine.labels import EMOTIONS
from affectstream.engine.llm import grounding
from affectstream.engine.llm.evidence import Evidence
from affectstream.engine.llm.llama import DEFAULT_MAX_TOKENS, Generation
from affectstream.engine.llm.parse import Parsed, parse_generation
from affectstream.engine.llm.prompt import DEFAULT_LAYOUT, chat_messages, cue_block
from affectstream.engine.types import ReasoningResult, WindowResult


class LanguageModel(Protocol):
    """What the reasoner needs from a runtime (LlamaCppLM satisfies it)."""

    name: str

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str: ...

    def generate(self, prompt: str, max_tokens: int = ..., grammar: bool = ...) -> Generation: ...


@dataclass(slots=True)
class ReasonerStats:
    """Counters since start; read from any thread (plain ints, updated under a lock)."""

    total: int = 0
    valid: int = 0
    invalid: int = 0  # parsed but no usable label (only possible with grammar off)
    errors: int = 0  # the runtime raised
    forced_close: int = 0  # the token budget ran out inside <think> and we closed it
    constrained: int = 0  # decoded under the grammar: the free pass left its language (or was skipped)
    agree_fast: int = 0  # valid answers equal to the fast label
    ungrounded: int = 0  # thinks that cite a modality the window did not have

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Reasoner:
    """Runs one LLM on window results, one at a time (the model is serialized anyway)."""

    def __init__(
        self,
        lm: LanguageModel,
        labels: Sequence[str] = EMOTIONS,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        grammar: bool = True,
        include_fast: bool | None = None,
        profile: str = "lite",
        layout: str = DEFAULT_LAYOUT,
    ) -> None:
        self.lm = lm
        self.labels = tuple(labels)
        self.max_tokens = max_tokens
        self.grammar = grammar
        self.include_fast = include_fast
        self.layout = layout
        self.profile = profile
        self.stats = ReasonerStats()
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.last_generation: Generation | None = None

    def prompt_for(self, result: WindowResult, evidence: Evidence | None = None) -> str:
        """The exact templated prompt a window result becomes."""
        ev = evidence if evidence is not None else Evidence.from_result(result)
        msgs = chat_messages(ev, self.labels, include_fast=self.include_fast, layout=self.layout)
        return self.lm.chat_prompt(msgs)

    def warm(self) -> int:
        """Put the prompt's fixed head (template + instruction) in the model's KV cache, if it can.

        Returns the number of tokens cached (0 when the runtime has no prefix cache)."""
        warm = getattr(self.lm, "warm_prefix", None)
        if warm is None:
            return 0
        empty = Evidence()
        full = self.lm.chat_prompt(chat_messages(empty, self.labels, self.include_fast, layout=self.layout))
        cues = cue_block(empty, self.layout, include_fast=bool(self.include_fast))
        head = full[: full.find(cues)] if cues in full else ""
        return int(warm(head)) if head else 0

    def reason(self, result: WindowResult) -> ReasoningResult:
        """Explain one window. Never raises; failures come back as valid=False, fallback = fast label.

        `evidence` lists the modalities the think cites that the window really had (parsed, see
        engine/llm/grounding.py); a cited-but-absent modality is counted in `stats.ungrounded`.
        """
        t0 = time.perf_counter()
        gen: Generation | None = None
        err: str | None = None
        ev = Evidence.from_result(result)
        try:
            gen = self.lm.generate(
                self.prompt_for(result, ev), max_tokens=self.max_tokens, grammar=self.grammar
            )
            parsed = parse_generation(gen.text, self.labels)
        except Exception as e:  # a runtime failure must not take the engine down
            err = f"{type(e).__name__}: {e}"
            parsed = Parsed("", None, None, False, False, 0, err)
        latency_ms = gen.total_ms if gen is not None else (time.perf_counter() - t0) * 1000
        g = grounding.check(parsed.think, ev)
        agrees = (parsed.answer == result.label) if parsed.valid else None
        with self._lock:
            s = self.stats
            s.total += 1
            if err is not None:
                s.errors += 1
                self.last_error = err
            elif parsed.valid:
                s.valid += 1
                s.agree_fast += int(parsed.answer == result.label)
            else:
                s.invalid += 1
                self.last_error = parsed.error
            if gen is not None and gen.forced_close:
                s.forced_close += 1
            s.constrained += int(gen is not None and gen.constrained)
            s.ungrounded += int(bool(g.violations))
            self.last_generation = gen
        return ReasoningResult(
            stream=result.stream,
            window=result.window,
            think=parsed.think,
            answer=parsed.answer,
            valid=parsed.valid,
            model=getattr(self.lm, "name", "llm"),
            latency_ms=latency_ms,
            profile=self.profile,
            fallback_label=None if parsed.valid else result.label,
            evidence=[m for m in g.cited if m not in g.violations],
            agrees_with_fast_label=agrees,
        )
