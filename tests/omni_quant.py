"""Decoder variants for the r1-omni LLM and the accuracy check that chooses between them.

A bench experiment (bench/bench_omni.py) and its test, not part of the installed package: the
analyzer decodes with torch or llama.cpp (engine/omni/decode.py, engine/omni/llama_embed.py).

`int8_decoder` makes a decoding-only copy of the Qwen2 LLM (no towers) whose Linear layers use torch
dynamic int8 quantisation (weights int8 per channel, activations quantised on the fly); embeddings stay
in float so spliced multimodal embeddings enter unchanged. `compare_decoders` is the accuracy check: on
the same spliced prompts it measures (a) greedy token agreement over N new tokens against the fp32
reference, (b) top-1 agreement and KL of the first-step next-token distribution.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from affectstream.engine.omni.decode import greedy
from affectstream.engine.omni.model import OmniModel
from torch import nn

_MM_CHILDREN = ("vision_tower", "mm_projector", "bert_model", "bert_gate", "audio_tower", "audio_projector")


def llm_only_copy(model: OmniModel) -> nn.Module:
    """Deep copy of Qwen2ForCausalLM without the multimodal submodules, in fp32."""
    inner = model.model
    saved = {k: inner._modules.pop(k) for k in _MM_CHILDREN if k in inner._modules}
    try:
        llm = copy.deepcopy(model.llm)
    finally:
        inner._modules.update(saved)
    return llm.float().eval()


def int8_decoder(model: OmniModel) -> nn.Module:
    """Dynamic-int8 Linear layers (CPU); returns a module with the Qwen2ForCausalLM call signature."""
    llm = llm_only_copy(model)
    return torch.ao.quantization.quantize_dynamic(llm, {nn.Linear}, dtype=torch.qint8, inplace=True)


@dataclass
class DecoderAgreement:
    token_agreement: float  # fraction of reference tokens reproduced before the first divergence, averaged
    exact_sequences: float  # fraction of prompts with identical greedy output
    first_top1: float  # first-step argmax agreement
    first_kl: float  # mean KL(ref || cand) of the first-step distribution
    ref_ms_per_token: float
    cand_ms_per_token: float


def _prefix_agreement(a: list[int], b: list[int]) -> float:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n / max(len(a), 1)


def compare_decoders(
    reference: nn.Module,
    candidate: nn.Module | Any,
    embed: Callable[[torch.Tensor], torch.Tensor],
    prompts: list[torch.Tensor],
    max_new_tokens: int,
    stop_ids: set[int],
) -> DecoderAgreement:
    """Greedy-decode every (L, H) prompt with both decoders and report how closely they agree."""
    agree, exact, top1, kl, t_ref, t_cand, n_ref, n_cand = [], [], [], [], 0.0, 0.0, 0, 0
    for p in prompts:
        r = greedy(reference, embed, p[None].float(), max_new_tokens, stop_ids)
        if hasattr(candidate, "greedy"):  # a non-torch decoder (llama_embed.LlamaEmbedDecoder)
            c = candidate.greedy(p.detach().float().numpy(), max_new_tokens, stop_ids)
        else:
            c = greedy(candidate, embed, p[None].float(), max_new_tokens, stop_ids)
        agree.append(_prefix_agreement(r.tokens[0], c.tokens[0]))
        exact.append(float(r.tokens[0] == c.tokens[0]))
        lr, lc = torch.log_softmax(r.first_logits, -1), torch.log_softmax(c.first_logits, -1)
        top1.append(float(lr.argmax(-1).item() == lc.argmax(-1).item()))
        kl.append(float((lr.exp() * (lr - lc)).sum()))
        t_ref += r.prefill_ms + r.decode_ms
        t_cand += c.prefill_ms + c.decode_ms
        n_ref += max(r.steps, 1)
        n_cand += max(c.steps, 1)
    k = len(prompts)
    return DecoderAgreement(
        sum(agree) / k, sum(exact) / k, sum(top1) / k, sum(kl) / k, t_ref / n_ref, t_cand / n_cand
    )
