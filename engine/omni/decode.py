"""Greedy decoding from spliced embeddings, with prefill and per-token timings.

A hand-written loop instead of `generate()` because (a) the prompt is embeddings, not ids, (b) the
analyzer and the GPU check need prefill and decode timed separately, and (c) the same loop drives the
fp32 reference and the int8 variant (tests/omni_quant.py), so their outputs can be compared token by token.
Batched prompts must have equal length (true for windows of one stream config: same instruction,
same token counts), so no padding or attention mask is needed.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class Decoded:
    tokens: list[list[int]]
    prefill_ms: float
    decode_ms: float
    steps: int
    first_logits: torch.Tensor | None = field(default=None, repr=False)  # (B, V) after prefill


def _cache_kwarg(llm: nn.Module) -> str:
    """transformers 5.x names the KV cache argument `cache`, 4.x `past_key_values`."""
    params = inspect.signature(type(llm).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _cache_of(out: object) -> object:
    """The KV cache of a forward output (`cache` in transformers 5.x, `past_key_values` in 4.x)."""
    keys = out.keys() if hasattr(out, "keys") else ()
    return out["cache"] if "cache" in keys else out.past_key_values  # type: ignore[index,attr-defined]


@torch.inference_mode()
def greedy(
    llm: nn.Module,
    embed: Callable[[torch.Tensor], torch.Tensor],
    inputs_embeds: torch.Tensor,
    max_new_tokens: int,
    stop_ids: set[int],
    sync: Callable[[], None] = lambda: None,
    repetition_penalty: float = 1.0,
) -> Decoded:
    """inputs_embeds (B, L, H) → generated ids per row (stop token excluded), greedy like do_sample=False.

    `repetition_penalty` is HF's (logit/p if > 0 else logit·p on already generated ids): `generate()`
    applies the checkpoint's generation_config value even under greedy decoding, and with an embeddings
    prompt only the generated ids count."""
    if inputs_embeds.dim() != 3:
        raise ValueError(f"inputs_embeds must be (B, L, H), got {tuple(inputs_embeds.shape)}")
    b = inputs_embeds.shape[0]
    t0 = time.perf_counter()
    out = llm(inputs_embeds=inputs_embeds, use_cache=True)
    logits = out.logits[:, -1].float()
    sync()
    t1 = time.perf_counter()
    first = logits.clone()
    past = _cache_of(out)
    cache_arg = _cache_kwarg(llm)
    done = torch.zeros(b, dtype=torch.bool, device=logits.device)
    tokens: list[list[int]] = [[] for _ in range(b)]
    steps = 0
    for _ in range(max_new_tokens):
        if repetition_penalty != 1.0 and steps:
            for i, row in enumerate(tokens):
                if row:
                    idx = torch.tensor(sorted(set(row)), device=logits.device)
                    v = logits[i, idx]
                    logits[i, idx] = torch.where(v < 0, v * repetition_penalty, v / repetition_penalty)
        nxt = logits.argmax(-1)
        for i, t in enumerate(nxt.tolist()):
            if not done[i]:
                if t in stop_ids:
                    done[i] = True
                else:
                    tokens[i].append(t)
        steps += 1
        if bool(done.all()) or steps == max_new_tokens:
            break
        out = llm(inputs_embeds=embed(nxt[:, None]), use_cache=True, **{cache_arg: past})
        past = _cache_of(out)
        logits = out.logits[:, -1].float()
    sync()
    t2 = time.perf_counter()
    return Decoded(tokens, (t1 - t0) * 1e3, (t2 - t1) * 1e3, steps, first)
