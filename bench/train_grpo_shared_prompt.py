"""Bench: GRPO policy pass with the prompt run once and its KV cache shared by the G completions,
vs the usual G full forwards of prompt+completion (TRL/R1-Omni layout). Same run, same model.

Model: SmolLM2-135M's geometry (hidden 576, 9/3 heads, MLP 1536, vocab 49152) with random weights and
`--layers` decoder layers (default 6, so the bench is quick); prompt 176 tokens (the lite prompt's
length), completions 32 tokens, G = 8. Prints seconds per forward+backward and the ratio, and checks
that both give the same log-probs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from affectstream.train.grpo import Policy
from transformers import LlamaConfig, LlamaForCausalLM


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--prompt", type=int, default=176)
    ap.add_argument("--completion", type=int, default=32)
    ap.add_argument("--g", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=a.layers,
        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048, tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg).train()
    prompt = torch.randint(0, cfg.vocab_size, (1, a.prompt))
    comps = torch.randint(0, cfg.vocab_size, (a.g, a.completion))
    shared_policy = Policy(model, [0], 0, share_prompt=True)
    full_policy = Policy(model, [0], 0, share_prompt=False)

    def shared() -> torch.Tensor:
        return shared_policy.logprobs({"input_ids": prompt}, comps)

    def full() -> torch.Tensor:
        return full_policy.logprobs({"input_ids": prompt}, comps)

    diff = (shared() - full()).abs().max().item()
    times: dict[str, list[float]] = {"full": [], "shared": []}
    for _ in range(a.repeats):
        for name, fn in (("full", full), ("shared", shared)):
            model.zero_grad(set_to_none=True)
            t = time.perf_counter()
            fn().sum().backward()
            times[name].append(time.perf_counter() - t)
    f, s = statistics.median(times["full"]), statistics.median(times["shared"])
    print(f"layers={a.layers} P={a.prompt} C={a.completion} G={a.g} threads={a.threads}")
    print(f"full G×(P+C) forward+backward: {f:.3f} s (median of {a.repeats})")
    print(f"shared-prompt KV             : {s:.3f} s")
    print(f"speed-up: {f / s:.2f}x   max |Δ logp| = {diff:.2e}")


if __name__ == "__main__":
    main()
