"""Where a reasoning's time goes on this CPU: llama.cpp prefill and per-token decode, the grammar pass,
and what another quantization of the base model would change.

    python bench/bench_llm_decode.py [--n 12] [--threads 1] [--quants Q4_0,Q8_0]

1. Raw llama.cpp (`Llama.eval`): a 76-token prefill and 40 single-token decode steps, best of 2, for the
   profile's Q4_1 GGUF and for the same weights requantized (into a temporary folder) to each of
   `--quants` — requantizing a Q4_1 file adds its own rounding, so these time the formats, not quality.
2. `LlamaCppLM.generate` with the shipped adapter and its prompt layout on `--n` synthetic cue windows
   (seed 3003, analyzer-like faces): grammar on with the free first pass (production), grammar on every
   token (`free_first=False`), grammar off. Median and max total, median prefill and ms per generated token.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from affectstream.engine.profile import Profile


def raw_speed(path: Path, threads: int) -> dict[str, float]:
    import llama_cpp

    m = llama_cpp.Llama(str(path), n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    ids = m.tokenize(b"Hello there, this is a test of the speed of the model on one thread. " * 8)
    best = (1e9, 1e9)
    for _ in range(2):
        m.reset()
        t0 = time.perf_counter()
        m.eval(ids[:76])
        t1 = time.perf_counter()
        for i in range(40):
            m.eval([ids[76 + i % 10]])
        t2 = time.perf_counter()
        best = (min(best[0], (t1 - t0) * 1000), min(best[1], (t2 - t1) * 1000 / 40))
    m.close()
    return {"prefill_76_ms": round(best[0], 1), "decode_ms_per_token": round(best[1], 2)}


def requantize(src: Path, dst: Path, name: str) -> None:
    import llama_cpp

    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name}")
    p.allow_requantize = True
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(p)) != 0:
        raise SystemExit(f"requantizing to {name} failed")


def generation(prof: Profile, n: int, threads: int) -> dict[str, dict[str, float]]:
    from affectstream.engine.llm.llama import LlamaCppLM
    from affectstream.engine.llm.prompt import chat_messages
    from affectstream.train.cues import generate

    layout = prof.component("llm_lora").inputs.get("prompt_layout", "evidence")
    lm = LlamaCppLM(prof.path("llm"), threads=threads, lora_path=prof.path("llm_lora"))
    prompts = [
        lm.chat_prompt(chat_messages(s.evidence, layout=layout)) for s in generate(n, 3003, True, True)
    ]
    out: dict[str, dict[str, float]] = {}
    for name, kw in (
        ("grammar_free_first", {"grammar": True}),
        ("grammar_every_token", {"grammar": True, "free_first": False}),
        ("no_grammar", {"grammar": False}),
    ):
        gens = [lm.generate(p, **kw) for p in prompts]
        tot = [g.total_ms for g in gens]
        out[name] = {
            "total_median_ms": round(statistics.median(tot), 1),
            "total_max_ms": round(max(tot), 1),
            "prefill_median_ms": round(statistics.median(g.prefill_ms for g in gens), 1),
            "ms_per_generated_token": round(
                statistics.median(
                    (g.total_ms - g.prefill_ms) / max(1, g.completion_tokens - 1) for g in gens
                ),
                1,
            ),
            "tokens_median": statistics.median(g.completion_tokens for g in gens),
            "grammar_reruns": sum(g.constrained for g in gens) if kw.get("free_first", True) else None,
        }
    lm.close()
    out["layout"] = layout  # type: ignore[assignment]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quants", default="Q4_0,Q8_0")
    a = ap.parse_args()
    prof = Profile.load("lite", verify=False)
    base = prof.path("llm")
    result: dict[str, object] = {"threads": a.threads, "raw": {base.name: raw_speed(base, a.threads)}}
    with tempfile.TemporaryDirectory() as td:
        for q in filter(None, a.quants.split(",")):
            dst = Path(td) / f"requant.{q}.gguf"
            requantize(base, dst, q)
            result["raw"][q] = raw_speed(dst, a.threads)  # type: ignore[index]
    result["generate"] = generation(prof, a.n, a.threads)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
