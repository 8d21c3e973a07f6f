"""Load the `lite` reasoner for training: SmolLM2 from the SAME GGUF the engine runs, plus LoRA.

Why from the GGUF: transformers dequantizes the Q4_1 weights exactly (docs/models.md §6), so what we
train on is what llama.cpp serves, and the adapter's llama.cpp parity stays at the quantization floor.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.llm.prompt import DEFAULT_LAYOUT, SYSTEM, Evidence, chat_messages

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSettings:
    """LoRA shape. `layers` limits adapters to those decoder layers (None = all).

    Adapting only the top layers is a CPU speed choice: the frozen lower layers then run without
    autograd, so a training step costs roughly a forward pass plus the top layers' backward.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    targets: tuple[str, ...] = LORA_TARGETS
    layers: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def default_gguf() -> Path:
    """Where the lite profile (or the test cache) keeps the SmolLM2 GGUF; env `AFFECTSTREAM_LLM_GGUF` wins."""
    env = os.environ.get("AFFECTSTREAM_LLM_GGUF")
    if env:
        return Path(env)
    from affectstream.engine.paths import home

    for cand in sorted(home().rglob("SmolLM2-135M-Instruct.Q4_1.gguf")):
        return cand
    raise FileNotFoundError(
        "SmolLM2 GGUF not found: run `affectstream models prepare lite` or set AFFECTSTREAM_LLM_GGUF"
    )


def load_base(gguf: str | os.PathLike[str], threads: int | None = 2) -> tuple[Any, Any]:
    """(fp32 model, tokenizer) from a GGUF file; raises FileNotFoundError with the path when missing."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(gguf)
    if not p.is_file():
        raise FileNotFoundError(f"GGUF not found: {p}")
    if threads:
        torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok


def add_lora(model: Any, lora: LoraSettings) -> Any:
    """Wrap `model` with a fresh PEFT LoRA adapter (the base weights are frozen)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.targets),
        layers_to_transform=lora.layers,
        task_type="CAUSAL_LM",
        **lora.extra,
    )
    return get_peft_model(model, cfg)


def prompt_text(
    tokenizer: Any, evidence: Evidence, labels: Sequence[str] = EMOTIONS, layout: str = DEFAULT_LAYOUT
) -> str:
    """The templated prompt exactly as the engine builds it (system + user, assistant turn opened)."""
    return tokenizer.apply_chat_template(
        chat_messages(evidence, labels, system=SYSTEM, layout=layout), tokenize=False, add_generation_prompt=True
    )


def encode(tokenizer: Any, text: str) -> list[int]:
    """Ids of already-templated text (the template carries its own special tokens)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def eos_ids(tokenizer: Any) -> list[int]:
    """Tokens that end an assistant turn (`<|im_end|>`, plus the tokenizer's EOS if different)."""
    ids = {int(tokenizer.eos_token_id)}
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end >= 0 and im_end != tokenizer.unk_token_id:
        ids.add(int(im_end))
    return sorted(ids)
