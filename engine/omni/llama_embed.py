"""llama.cpp decoding from input embeddings (the spliced multimodal prompt), via llama-cpp-python.

llama.cpp accepts a batch of float embeddings instead of token ids (`llama_batch_init(n, n_embd, 1)`), so a
GGUF of the LLM can decode from the same (L, H) spliced prompt as the torch path: prefill with the
embedding batch, then one token per step. The embeddings must be the GGUF's own `token_embd` values for
text positions (the caller embeds text with the matching table) — multimodal rows are taken as given.
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

import numpy as np
from affectstream.engine.omni.decode import Decoded
from affectstream.engine.runtimes.base import ModelFileError, RuntimeUnavailable


class LlamaEmbedDecoder:
    def __init__(self, gguf_path: str | Path, n_ctx: int = 2048, threads: int = 2) -> None:
        try:
            import llama_cpp
        except ImportError as e:
            raise RuntimeUnavailable(f"llama.cpp decoding needs llama-cpp-python: {e}") from e
        path = Path(gguf_path)
        if not path.is_file():
            raise ModelFileError(f"GGUF not found: {path}")
        self._lc = llama_cpp
        self.llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=threads, verbose=False
        )
        self.n_embd = self.llm.n_embd()
        self.n_vocab = self.llm.n_vocab()
        self.n_ctx = n_ctx

    def _ctx(self) -> object:
        return self.llm._ctx.ctx

    def _decode(self, batch: object) -> np.ndarray:
        rc = self._lc.llama_decode(self._ctx(), batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with code {rc}")
        ptr = self._lc.llama_get_logits_ith(self._ctx(), -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def greedy(
        self, embeds: np.ndarray, max_new_tokens: int, stop_ids: set[int], repetition_penalty: float = 1.0
    ) -> Decoded:
        """embeds (L, H) float32 → greedy tokens; same contract as decode.greedy for one prompt."""
        lc = self._lc
        x = np.ascontiguousarray(embeds, dtype=np.float32)
        n, h = x.shape
        if h != self.n_embd:
            raise ValueError(f"embeddings are {h} wide, the GGUF model expects {self.n_embd}")
        if n + max_new_tokens > self.n_ctx:
            raise ValueError(f"{n} prompt positions + {max_new_tokens} new tokens exceed n_ctx {self.n_ctx}")
        self.llm.reset()  # the wrapper's token bookkeeping, then the KV memory itself
        lc.llama_memory_clear(lc.llama_get_memory(self._ctx()), True)
        t0 = time.perf_counter()
        batch = lc.llama_batch_init(n, h, 1)
        try:
            batch.n_tokens = n
            ctypes.memmove(batch.embd, x.ctypes.data, x.nbytes)
            for i in range(n):
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = i == n - 1
            logits = self._decode(batch)
        finally:
            lc.llama_batch_free(batch)
        t1 = time.perf_counter()
        first = logits.copy()
        tokens: list[int] = []
        steps = 0
        one = lc.llama_batch_init(1, 0, 1)
        try:
            for step in range(max_new_tokens):
                if repetition_penalty != 1.0 and tokens:  # HF's rule, on the generated ids
                    idx = np.array(sorted(set(tokens)))
                    v = logits[idx]
                    logits[idx] = np.where(v < 0, v * repetition_penalty, v / repetition_penalty)
                tok = int(logits.argmax())
                steps += 1
                if tok in stop_ids:
                    break
                tokens.append(tok)
                if step == max_new_tokens - 1:
                    break
                one.n_tokens = 1
                one.token[0] = tok
                one.pos[0] = n + step
                one.n_seq_id[0] = 1
                one.seq_id[0][0] = 0
                one.logits[0] = True
                logits = self._decode(one)
        finally:
            lc.llama_batch_free(one)
        t2 = time.perf_counter()
        import torch

        return Decoded([tokens], (t1 - t0) * 1e3, (t2 - t1) * 1e3, steps, torch.from_numpy(first)[None])

    def close(self) -> None:
        self.llm.close()
