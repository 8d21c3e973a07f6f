"""Prefill with the `evidence` prompt layout (fixed instruction first, KV prefix reused) vs the legacy one.

    python bench/bench_prompt_cache.py [--gguf PATH | --profile DIR] [--lora A.gguf] [--n 40] [--threads 1]

Two llama.cpp models on the same GGUF (+ the same adapter, so only the prompt layout differs), fed the
same sequence of synthetic cue windows, calls interleaved (A, B, A, B, ...) so machine load hits both
alike. Per layout: prompt tokens, tokens reused from the KV cache, prefill (time to first token) and
whole-generation p50/p95, with the grammar and `max_tokens` as the engine runs it. The ratio is
legacy / evidence in the same run. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from affectstream.engine.metrics import percentile

ROOT = Path(__file__).resolve().parents[1]


def pct(xs: list[float], q: float) -> float:
    v = percentile(xs, q)  # the one nearest-rank definition shared with stats
    return float("nan") if v is None else round(v, 1)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", type=Path, default=None)
    ap.add_argument("--profile", type=Path, default=None)
    ap.add_argument("--lora", type=Path, default=None, help="adapter for both models (default: none)")
    ap.add_argument("--n", type=int, default=40, help="windows per layout")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads (the engine's default is 1)")
    ap.add_argument("--max-tokens", type=int, default=64)
    a = ap.parse_args()
    from affectstream.engine.llm.llama import LlamaCppLM
    from affectstream.engine.llm.prompt import chat_messages
    from affectstream.engine.llm.reasoner import Reasoner
    from affectstream.train.cues import generate

    gguf = a.gguf
    if gguf is None:
        from affectstream.engine.profile import Profile

        gguf = Profile.load(a.profile or "lite", verify=False).path("llm")
    load_start = os.getloadavg()[0]
    samples = generate(a.n, seed=4242)
    models = {lay: LlamaCppLM(gguf, threads=a.threads, lora_path=a.lora) for lay in ("legacy", "evidence")}
    # the engine warms the evidence layout's fixed head at start (Reasoner.warm); legacy has none
    warmed = Reasoner(models["evidence"], layout="evidence").warm()
    res: dict[str, dict[str, list[float]]] = {
        k: {"prefill": [], "total": [], "tok": [], "cached": []} for k in models
    }
    t0 = time.time()
    for s in samples:
        for lay, lm in models.items():
            g = lm.generate(lm.chat_prompt(chat_messages(s.evidence, layout=lay)), max_tokens=a.max_tokens)
            r = res[lay]
            r["prefill"].append(g.prefill_ms)
            r["total"].append(g.total_ms)
            r["tok"].append(g.prompt_tokens)
            r["cached"].append(g.cached_tokens)
    out: dict[str, object] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "load_avg_1min_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "gguf": Path(gguf).name,
        "lora": None if a.lora is None else Path(a.lora).name,
        "threads": a.threads,
        "windows": a.n,
        "warm_prefix_tokens": warmed,
        "seconds": round(time.time() - t0, 1),
    }
    for lay, r in res.items():
        out[lay] = {
            "prompt_tokens_mean": round(float(np.mean(r["tok"])), 1),
            "cached_tokens_mean": round(float(np.mean(r["cached"])), 1),
            "prefilled_tokens_mean": round(float(np.mean(np.subtract(r["tok"], r["cached"]))), 1),
            "prefill_p50_ms": pct(r["prefill"], 50),
            "prefill_p95_ms": pct(r["prefill"], 95),
            "total_p50_ms": pct(r["total"], 50),
            "total_p95_ms": pct(r["total"], 95),
        }
    lg, ev = out["legacy"], out["evidence"]
    out["ratio_prefill_p50_legacy_over_evidence"] = round(lg["prefill_p50_ms"] / ev["prefill_p50_ms"], 2)  # type: ignore[index]
    out["ratio_prefill_p95_legacy_over_evidence"] = round(lg["prefill_p95_ms"] / ev["prefill_p95_ms"], 2)  # type: ignore[index]
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
