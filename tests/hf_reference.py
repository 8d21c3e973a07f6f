"""The transformers reference path: the SAME GGUF file, dequantized to fp32 by transformers.

A test and bench helper, not part of the installed package: production runs llama.cpp, and training
loads the model itself (train/model.py). Parity tests need an independent implementation to compare
llama.cpp's quantized kernels against. transformers' GGUF loader gives exactly the dequantized Q4_1
weights (docs/models.md §6), so the two differ only by llama.cpp's quantized matmuls (activations
quantized to Q8) — the parity floor.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from affectstream.engine.runtimes.base import ModelFileError, RuntimeUnavailable


class HFReferenceLM:
    """fp32 causal LM + tokenizer loaded from a GGUF with `gguf_file=`; greedy generation, logits."""

    def __init__(self, gguf_path: str | os.PathLike[str], threads: int | None = None) -> None:
        path = Path(gguf_path)
        if not path.is_file():
            raise ModelFileError(f"GGUF not found: {path}")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:  # the `train` extra is optional at run time
            raise RuntimeUnavailable(f"transformers reference path needs torch+transformers+gguf: {e}") from e
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        t0 = time.perf_counter()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            self.model = AutoModelForCausalLM.from_pretrained(
                str(path.parent), gguf_file=path.name, dtype=torch.float32
            )
        except Exception as e:
            raise ModelFileError(f"transformers cannot load {path.name}: {e}") from e
        self.model.eval()
        self.load_s = time.perf_counter() - t0
        self.path = path
        self.name = path.name

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        """The model's own chat template rendered with the assistant turn opened."""
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of already-templated text (no extra BOS: the template carries its own markers)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits (n_tokens × vocab, float32) for a token sequence, one forward pass."""
        with self._torch.inference_mode():
            out = self.model(self._torch.tensor([list(ids)], dtype=self._torch.long))
        return out.logits[0].float().numpy()

    def generate(self, prompt: str, max_new_tokens: int = 64) -> tuple[str, int]:
        """Greedy continuation of templated `prompt`; returns (text, generated token count)."""
        ids = self._torch.tensor([self.tokenize(prompt)], dtype=self._torch.long)
        with self._torch.inference_mode():
            out = self.model.generate(
                ids,
                attention_mask=self._torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.eos_token_id,
            )
        new = out[0, ids.shape[1] :]
        return self.tokenizer.decode(new, skip_special_tokens=True), int(new.shape[0])
