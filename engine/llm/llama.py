"""llama.cpp runtime for the reasoning LLM (GGUF), through llama-cpp-python.

Why llama.cpp: on CPU it decodes the Q4_1 GGUF several times faster than transformers fp32 on the same
file (bench/RESULTS.md, reasoning LLM), it runs the same GGUF on CUDA/Jetson builds, and it enforces a
GBNF grammar during sampling. Greedy by default so a window's reasoning is reproducible.

Prefix reuse: llama-cpp-python keeps the last evaluated tokens in the KV cache and, on the next call,
evaluates only what follows the longest common prefix. The `evidence` prompt layout puts the fixed
instruction first, so every window after the first prefills only its cue block; `warm_prefix` fills
the cache with that fixed part at load so the first window gets it too, and `Generation.cached_tokens`
reports how much was reused (the latency bench reads it).

Bounded latency with a guaranteed format: generation stops at `max_tokens`; if that cut it inside
`<think>`, we close the think ourselves and let the grammar pick only the label (a few tokens), so a
short budget never yields a malformed answer. Such generations are flagged `forced_close`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectstream.engine.labels import EMOTIONS
from affectstream.engine.llm.grammar import DEFAULT_THINK_CHARS, build_grammar, matches
from affectstream.engine.runtimes.base import ModelFileError, RuntimeInfo, RuntimeUnavailable

DEFAULT_MAX_TOKENS = 64
FREE_MISSES = 2  # free passes in a row outside the grammar before they are only probed
FREE_PROBE = 8  # then every 8th generation tries the free pass again
log = logging.getLogger("affectstream.llm")


# llama.cpp's CPU backend uses OpenMP, whose default is to busy-wait between ops. With the fast path's
# ONNX threads on the same cores that spinning is catastrophic (bench/RESULTS.md, reasoning LLM:
# "OpenMP busy-waiting"; docs/platform.md §6). libgomp reads this once, when it
# is first loaded (torch ships a libgomp.so.1 that llama.cpp then shares), so it is set at import of
# this module and checked again when a model loads; an explicit setting wins.
def _libgomp_loaded() -> bool:
    try:
        return "libgomp" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


# True when libgomp was already initialised with another policy before this module could set it.
_GOMP_MAY_SPIN = os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE" and _libgomp_loaded()
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@dataclass(slots=True)
class Generation:
    """One completion and what it cost. `text` is what the assistant wrote (tags included)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish: str  # "stop" | "length" | "forced_close"
    prefill_ms: float  # time to the first generated token (prompt evaluation, after prefix-cache reuse)
    total_ms: float
    cached_tokens: int = 0  # leading prompt tokens already in the KV cache (not prefilled again)
    constrained: bool = False  # decoded under the grammar (the free pass left its language, or was skipped)
    free_pass: bool = False  # an unconstrained pass ran first (kept when `constrained` is False)

    @property
    def forced_close(self) -> bool:
        return self.finish == "forced_close"


_PROBE = """
import sys, llama_cpp
m = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=128, n_threads=1, verbose=False)
m.create_completion("Hello there, how are you", max_tokens=2, temperature=0.0)
"""


def probe_build(gguf_path: str | os.PathLike[str], timeout: float = 120.0) -> str | None:
    """Run a tiny batched generation in a child process; None if fine, else a one-line reason.

    Why a child: a llama.cpp build compiled for CPU features the host refuses (e.g. `-march=native`
    picking AMX inside a VM that does not enable AMX state) dies with SIGILL on the first batched
    matmul, which would kill the engine or the test session instead of raising.
    """
    import subprocess
    import sys

    try:
        r = subprocess.run(
            [sys.executable, "-c", _PROBE, str(gguf_path)], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return f"llama.cpp probe did not finish in {timeout:.0f} s"
    if r.returncode == 0:
        return None
    if r.returncode < 0:
        return (
            f"llama.cpp died with signal {-r.returncode} on a batched prompt: the llama-cpp-python build uses "
            "CPU instructions this host refuses (rebuild with CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF "
            "-DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF')"
        )
    last = (r.stderr.strip().splitlines() or ["no output"])[-1]
    return f"llama.cpp probe failed (exit {r.returncode}): {last}"


def _chatml(messages: Sequence[dict[str, str]]) -> str:
    """ChatML, the fallback when a GGUF carries no chat template (SmolLM2 and Qwen both use it)."""
    body = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return body + "<|im_start|>assistant\n"


class LlamaCppLM:
    """A loaded GGUF. Not thread-safe by nature, so calls are serialized by a lock (one per model)."""

    def __init__(
        self,
        gguf_path: str | os.PathLike[str],
        threads: int = 2,
        n_ctx: int = 1024,
        lora_path: str | os.PathLike[str] | None = None,
        lora_scale: float = 1.0,
        labels: Sequence[str] = EMOTIONS,
        max_think_chars: int = DEFAULT_THINK_CHARS,
        gpu_layers: int = 0,
        logits_all: bool = False,
    ) -> None:
        path = Path(gguf_path)
        if not path.is_file():
            raise ModelFileError(f"GGUF not found: {path} (run `affectstream models prepare`)")
        if lora_path is not None and not Path(lora_path).is_file():
            raise ModelFileError(f"LoRA adapter not found: {lora_path}")
        self.spin_warning: str | None = None
        if threads > 1 and _GOMP_MAY_SPIN:
            self.spin_warning = (
                "libgomp was loaded before OMP_WAIT_POLICY=PASSIVE was set: llama.cpp threads may busy-wait; "
                "set it in the environment at process start or use threads=1"
            )
            log.warning(self.spin_warning)
        try:
            import llama_cpp
        except ImportError as e:
            raise RuntimeUnavailable(
                f"llama-cpp-python is not installed (pip install 'affectstream[llm]'): {e}"
            ) from e
        self._llama_cpp = llama_cpp
        t0 = time.perf_counter()
        try:
            kw: dict[str, Any] = dict(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=min(512, n_ctx),  # ≥ any single prompt we send, or llama.cpp aborts the process
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=gpu_layers,
                seed=0,
                logits_all=logits_all,  # only parity checks need every position (n_ctx × vocab floats)
                verbose=False,
            )
            if lora_path is not None:
                kw.update(lora_path=str(lora_path), lora_scale=lora_scale)
            self._llm = llama_cpp.Llama(**kw)
        except Exception as e:
            raise ModelFileError(f"llama.cpp cannot load {path.name}: {e}") from e
        self.load_s = time.perf_counter() - t0
        self.path = path
        self.name = path.stem + (f" + {Path(lora_path).stem}" if lora_path is not None else "")
        self.threads = threads
        self.n_ctx = n_ctx
        self.labels = tuple(labels)
        self.max_think_chars = int(max_think_chars)
        self.lora_path = None if lora_path is None else str(lora_path)
        self.logits_all = logits_all
        self._lock = threading.Lock()
        self._grammar = llama_cpp.LlamaGrammar.from_string(
            build_grammar(self.labels, max_think_chars), verbose=False
        )
        label_alts = " | ".join(f'"{x}"' for x in self.labels)
        self._label_grammar = llama_cpp.LlamaGrammar.from_string(
            f'root ::= label "</answer>"\nlabel ::= {label_alts}\n', verbose=False
        )
        self._formatter = self._make_formatter()
        self._head_ids: list[int] | None = None  # the fixed prompt head kept in the KV cache (warm_prefix)
        self._head_src = ""  # its text: set by warm_prefix, or by chat_prompt (text before the last turn)
        self._calls = 0
        self._free_misses = 0  # free passes in a row that left the grammar's language

    def _make_formatter(self):
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        tok = self._llm
        eos = tok.detokenize([tok.token_eos()]).decode("utf-8", "ignore")
        bos = tok.detokenize([tok.token_bos()]).decode("utf-8", "ignore")
        return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    def describe(self) -> RuntimeInfo:
        gpu = self._llama_cpp.llama_supports_gpu_offload()
        return RuntimeInfo(
            name="llama.cpp", device="gpu" if gpu else "cpu", precision=self.path.stem.split(".")[-1]
        )

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        """The prompt string the model's own chat template makes, assistant turn opened."""
        text = (
            _chatml(messages) if self._formatter is None else self._formatter(messages=list(messages)).prompt
        )
        # everything before the last message's content is the head that later prompts share
        last = messages[-1]["content"] if messages else ""
        cut = text.rfind(last) if last else -1
        if cut > 0 and text[:cut] != self._head_src:
            self._head_src, self._head_ids = text[:cut], None
        return text

    def tokenize(self, text: str) -> list[int]:
        """Ids of templated text; special markers like <|im_start|> map to their single tokens."""
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def cached_prefix(self, ids: Sequence[int]) -> int:
        """How many leading tokens of `ids` the KV cache already holds (llama-cpp-python's own rule)."""
        held = self._llm.n_tokens
        cache = self._llm.input_ids[:held]
        n = 0
        for a, b in zip(cache, ids[:-1], strict=False):  # the last token is always re-evaluated
            if int(a) != int(b):
                break
            n += 1
        return n

    def warm_prefix(self, text: str) -> int:
        """Evaluate `text` (the fixed head of every prompt) into the KV cache; returns its token count.

        Why: the first window would otherwise pay the whole prompt; with the cache warm it pays only
        its cue block like every later window. Harmless if the next prompt does not start with `text`.
        """
        ids = self.tokenize(text)
        if not ids or len(ids) + 1 > self.n_ctx:
            return 0
        with self._lock:
            self._llm.reset()
            self._llm.eval(ids)
            self._head_src, self._head_ids = text, ids
        return len(ids)

    def _pin_head(self, prompt_ids: list[int], cached: int) -> int:
        """Keep exactly the warmed head in the cache before a prompt that starts with it.

        Why not llama.cpp's longest-prefix reuse: re-sending the same window would then re-evaluate one
        token instead of the cue block, and a single-token pass rounds differently from a batched one,
        which flipped near-tied greedy tokens (measured). Cutting back to the head means every window's
        cues are evaluated the same way whatever came before, so greedy output is reproducible.
        """
        if self._head_ids is None and self._head_src:
            self._head_ids = self.tokenize(self._head_src)
        head = self._head_ids
        if not head or len(prompt_ids) <= len(head) or prompt_ids[: len(head)] != head:
            return cached
        if cached < len(head):
            self._llm.reset()
            self._llm.eval(head)
        self._llm.n_tokens = len(head)
        return len(head)

    def logits(self, ids: Sequence[int], all_positions: bool = False) -> Any:
        """Logits for `ids` (numpy): last position (vocab,) or, with `logits_all`, every one (n, vocab).

        For parity checks against transformers, which feed the very same token ids.
        """
        import numpy as np

        if all_positions and not self.logits_all:
            raise ValueError("all-position logits need LlamaCppLM(..., logits_all=True)")
        if len(ids) + 1 > self.n_ctx:
            raise ValueError(f"{len(ids)} tokens exceed n_ctx {self.n_ctx}")
        with self._lock:
            self._llm.reset()
            self._llm.eval(list(ids))
            n = self._llm.n_tokens
            if all_positions or self.logits_all:
                rows = self._llm.scores[:n] if all_positions else self._llm.scores[n - 1]
                return np.array(rows, dtype=np.float32)
            # Without logits_all, llama-cpp-python no longer copies logits into `scores` (sampling moved
            # into llama.cpp's sampler), so read the last position straight from the context.
            n_vocab = self._llm.n_vocab()
            last = np.ctypeslib.as_array(self._llm._ctx.get_logits(), shape=(n_vocab,))
            return np.array(last, dtype=np.float32)

    def generate(
        self,
        prompt: str,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        grammar: bool = True,
        free_first: bool = True,
    ) -> Generation:
        """Greedy completion of a templated prompt; with `grammar`, always `<think>…</think><answer>L</answer>`.

        With `grammar`, the first pass decodes freely (llama.cpp's grammar pass over the whole
        vocabulary costs about a third of each generated token on a small CPU) and stops at
        `</answer>`; when that text is in the grammar's language it is exactly what constrained greedy
        decoding writes (`grammar.matches`), otherwise the prompt is decoded again under the grammar.
        Either way the result is the constrained one; `Generation.constrained` says which pass gave it.
        `free_first=False` decodes under the grammar from the start (the reference for that claim).
        """
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be ≥ 1 (got {max_tokens})")
        with self._lock:
            t0 = time.perf_counter()
            prompt_ids = self.tokenize(prompt)
            n_prompt = len(prompt_ids)
            if n_prompt + max_tokens + 8 > self.n_ctx:
                raise ValueError(f"prompt of {n_prompt} tokens + {max_tokens} new exceeds n_ctx {self.n_ctx}")
            cached = self._pin_head(prompt_ids, self.cached_prefix(prompt_ids))
            # a model that keeps leaving the language (e.g. the base model without its adapter) would
            # pay twice; after FREE_MISSES misses in a row only every FREE_PROBE-th call tries it freely
            self._calls += 1
            skip = self._free_misses >= FREE_MISSES and self._calls % FREE_PROBE
            constrained = grammar and (not free_first or bool(skip))
            free = (
                None
                if constrained
                else self._decode(prompt, max_tokens, None, ("</answer>",) if grammar else ())
            )
            text, n, finish, first = free or ("", 0, "stop", None)
            if grammar:
                if finish == "stop" and "<answer>" in text and not text.endswith("</answer>"):
                    text += "</answer>"  # llama.cpp drops the stop string it stopped at
                if free is not None:
                    ok = matches(text, self.labels, self.max_think_chars)
                    self._free_misses = 0 if ok else self._free_misses + 1
                    constrained = not ok
                if constrained:
                    if free is not None:
                        self._pin_head(prompt_ids, self.cached_prefix(prompt_ids))
                    # completion_tokens counts the returned text's tokens; the free pass shows in total_ms
                    text, n, finish, again = self._decode(prompt, max_tokens, self._grammar)
                    first = first or again
                    if "</answer>" not in text:
                        text, extra = self._close(prompt, text)
                        n += extra
                        finish = "forced_close"
            t1 = time.perf_counter()
        return Generation(
            text=text,
            prompt_tokens=n_prompt,
            completion_tokens=n,
            finish=finish,
            prefill_ms=((first or t1) - t0) * 1000,
            total_ms=(t1 - t0) * 1000,
            cached_tokens=cached,
            constrained=constrained,
            free_pass=grammar and free is not None,
        )

    def _decode(
        self, prompt: str, max_tokens: int, grammar: Any, stop: Sequence[str] = ()
    ) -> tuple[str, int, str, float | None]:
        """One greedy streamed completion: (text, tokens, finish reason, time of the first token)."""
        first: float | None = None
        pieces: list[str] = []
        finish = "stop"
        n = 0
        for chunk in self._llm.create_completion(
            prompt,
            max_tokens=max_tokens,
            temperature=0.0,
            top_k=1,
            grammar=grammar,
            stop=list(stop) or None,
            stream=True,
        ):
            if first is None:
                first = time.perf_counter()
            c = chunk["choices"][0]
            pieces.append(c.get("text") or "")
            n += 1
            finish = c.get("finish_reason") or finish
        return "".join(pieces), n, finish, first

    def _close(self, prompt: str, text: str) -> tuple[str, int]:
        """Finish a generation cut inside `<think>` (or before the label) with a label-only grammar."""
        body = text.removeprefix("<think>")
        if "<" in body:  # the grammar's think excludes "<", so the first "<" starts a (partial) tag
            body = body[: body.index("<")]
        head = "<think>" + body.rstrip() + "</think>\n<answer>"
        out = self._llm.create_completion(
            prompt + head, max_tokens=16, temperature=0.0, top_k=1, grammar=self._label_grammar
        )
        tail = out["choices"][0]["text"]
        return head + tail, int(out["usage"]["completion_tokens"])

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()
            self._llm = None
