"""The real GGUF under llama.cpp: the evidence layout's fixed head stays in the KV cache across windows,
reuse does not change greedy output, and reasoning messages carry `evidence` / `agrees_with_fast_label`."""

from __future__ import annotations

from affectstream.engine.llm import grounding
from affectstream.engine.llm.llama import LlamaCppLM
from affectstream.engine.llm.prompt import Evidence, chat_messages
from affectstream.engine.llm.reasoner import Reasoner
from affectstream.engine.types import FaceResult, VoiceResult, WindowRef, WindowResult
from affectstream.streams.contract import validate
from affectstream.train.cues import generate


def test_fixed_head_is_reused_and_output_unchanged(llama_model: LlamaCppLM) -> None:
    a, b = (s.evidence for s in generate(2, seed=11))
    pa = llama_model.chat_prompt(chat_messages(a))
    pb = llama_model.chat_prompt(chat_messages(b))
    head = len(llama_model.tokenize(pb[: pb.index("Face:")]))
    llama_model.generate(pa, max_tokens=16)
    warm = llama_model.generate(pb, max_tokens=16)
    assert warm.cached_tokens >= head >= 0.45 * warm.prompt_tokens  # only the cue block is prefilled
    llama_model.warm_prefix("An unrelated text that shares no prefix.")
    cold = llama_model.generate(pb, max_tokens=16)
    assert cold.cached_tokens == 0
    assert cold.text == warm.text  # reuse is an optimisation, never a change of output
    # the legacy layout starts with the cues, so almost nothing is shared between windows
    la = llama_model.chat_prompt(chat_messages(a, layout="legacy"))
    lb = llama_model.chat_prompt(chat_messages(b, layout="legacy"))
    llama_model.generate(la, max_tokens=4)
    assert llama_model.generate(lb, max_tokens=4).cached_tokens < head


def test_reasoner_warms_head_and_payload_has_evidence_fields(llama_model: LlamaCppLM) -> None:
    r = Reasoner(llama_model, max_tokens=24)
    n = r.warm()
    assert n > 20
    face = FaceResult(1, (0, 0, 50, 50), "sad", 0.7, {"sad": 0.7, "neutral": 0.2})
    res = WindowResult(
        "cam0", WindowRef(0, 0.0, 2.0), "sad", 0.7, {"sad": 0.7}, faces=[face],
        voice=VoiceResult(False, 0.0),
    )  # fmt: skip
    out = r.reason(res)
    assert r.last_generation is not None and r.last_generation.cached_tokens >= n
    p = out.to_payload()
    validate("reasoning", p)
    g = grounding.check(out.think, Evidence.from_result(res))
    assert p["evidence"] == [m for m in g.cited if m not in g.violations] and set(p["evidence"]) <= {"face"}
    assert r.stats.ungrounded == int(bool(g.violations))
    assert (
        p["agrees_with_fast_label"] == (out.answer == "sad")
        if out.valid
        else p["agrees_with_fast_label"] is None
    )
