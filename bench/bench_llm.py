"""Benchmark the reasoning LLM; every figure is measured in this run, ratios against same-run baselines.

    python bench/bench_llm.py [--gguf PATH | --profile DIR] [--threads 2] [--quick] [--no-hf] [--no-fast]

Sections:
1. decode tokens/s on the same GGUF: llama.cpp (Q4_1 kernels) vs transformers fp32 (dequantized),
   64 new tokens with EOS banned so both generate exactly the same count;
2. reasoning latency (prompt → validated answer) with the grammar, ≤ 64-token think, over the
   hand-written cue examples (p50/p95, prefill share, forced closes);
3. the untrained model's accuracy on those examples (with and without the fast label in the prompt)
   and its format compliance without the grammar — reported honestly, it is near chance;
4. fast-path latency (real `LiteAnalyzer` on real media) alone vs while the LLM generates back to back
   in another thread (worst case), for llama.cpp threads = 1 and 2 (goal: p95 within 20 %).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def pct(xs: list[float], q: float) -> float:
    from affectstream.engine.metrics import percentile  # the project's one p50/p95 (nearest rank)

    v = percentile(xs, q)
    return float("nan") if v is None else v


def default_profile() -> Path:
    from affectstream.engine.paths import profile_dir

    env = os.environ.get("AFFECTSTREAM_HOME")
    cands = (
        [profile_dir("lite")]
        if env
        else [Path.home() / ".cache/affectstream-test/profiles/lite", profile_dir("lite")]
    )
    for c in cands:
        if (c / "manifest.json").exists():
            return c
    raise SystemExit("no prepared lite profile: run `affectstream models prepare lite` or pass --gguf")


def bench_tokens_per_s(gguf: Path, threads: int, n_new: int, reps: int, hf: bool) -> dict:
    from affectstream.engine.llm.llama import LlamaCppLM
    from affectstream.engine.llm.prompt import chat_messages
    from llm_examples import CUE_EXAMPLES

    lm = LlamaCppLM(gguf, threads=threads)
    prompt = lm.chat_prompt(chat_messages(CUE_EXAMPLES[0][0]))
    n_prompt = len(lm.tokenize(prompt))
    eos = lm._llm.token_eos()
    rates = []
    for i in range(reps + 1):
        lm._llm.reset()  # no prefix reuse: every rep pays the same prefill
        t0 = time.perf_counter()
        first = None
        n = 0
        for _ in lm._llm.create_completion(
            prompt, max_tokens=n_new, temperature=0.0, top_k=1, logit_bias={eos: -1e9}, stream=True
        ):
            n += 1
            first = first or time.perf_counter()
        t1 = time.perf_counter()
        if i:  # first run warms caches
            rates.append((n - 1) / (t1 - first))
    out = {"prompt_tokens": n_prompt, "llama_tok_s": float(np.median(rates)), "llama_load_s": lm.load_s}
    lm.close()
    if hf:
        import torch
        from hf_reference import HFReferenceLM

        ref = HFReferenceLM(gguf, threads=threads)
        ids = torch.tensor([ref.tokenize(prompt)])
        kw = dict(
            do_sample=False, pad_token_id=ref.tokenizer.eos_token_id, attention_mask=torch.ones_like(ids)
        )
        with torch.inference_mode():
            ref.model.generate(ids, max_new_tokens=2, min_new_tokens=2, **kw)  # warm-up
            t0 = time.perf_counter()
            ref.model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
            prefill = time.perf_counter() - t0
            t0 = time.perf_counter()
            ref.model.generate(ids, max_new_tokens=n_new, min_new_tokens=n_new, **kw)
            total = time.perf_counter() - t0
        out |= {"hf_tok_s": (n_new - 1) / (total - prefill), "hf_load_s": ref.load_s}
        out["ratio"] = out["llama_tok_s"] / out["hf_tok_s"]
        del ref
    return out


def bench_reasoning(gguf: Path, threads: int, reps: int) -> dict:
    from affectstream.engine.llm.llama import LlamaCppLM
    from affectstream.engine.llm.parse import parse_generation
    from affectstream.engine.llm.prompt import chat_messages
    from llm_examples import CUE_EXAMPLES

    lm = LlamaCppLM(gguf, threads=threads)
    lat, pre, toks, forced = [], [], [], 0
    correct = {True: 0, False: 0}
    valid_free = correct_free = 0
    for rep in range(reps):
        for ev, truth in CUE_EXAMPLES:
            for with_fast in (True, False) if rep == 0 else (True,):
                g = lm.generate(lm.chat_prompt(chat_messages(ev, include_fast=with_fast)), max_tokens=64)
                p = parse_generation(g.text)
                assert p.valid and p.well_formed, g.text
                if with_fast:
                    lat.append(g.total_ms)
                    pre.append(g.prefill_ms)
                    toks.append(g.completion_tokens)
                    forced += g.forced_close
                if rep == 0:
                    correct[with_fast] += p.answer == truth
        if rep == 0:  # zero-shot format compliance without the grammar
            for ev, truth in CUE_EXAMPLES:
                g = lm.generate(lm.chat_prompt(chat_messages(ev)), max_tokens=96, grammar=False)
                p = parse_generation(g.text)
                valid_free += p.well_formed
                correct_free += p.answer == truth
    n = len(CUE_EXAMPLES)
    lm.close()
    return {
        "n": len(lat),
        "p50": pct(lat, 50),
        "p95": pct(lat, 95),
        "prefill_p50": pct(pre, 50),
        "tokens_p50": pct(toks, 50),
        "forced": forced,
        "acc_fast": correct[True] / n,
        "acc_nofast": correct[False] / n,
        "free_well_formed": valid_free / n,
        "free_acc": correct_free / n,
        "examples": n,
    }


def bench_fast_path(prof_dir: Path, gguf: Path, seconds: float) -> dict:
    """p50/p95 of LiteAnalyzer.analyze per window: alone, then with back-to-back generations beside it."""
    from affectstream.engine.lite import LiteAnalyzer
    from affectstream.engine.llm.llama import LlamaCppLM
    from affectstream.engine.llm.prompt import chat_messages
    from affectstream.engine.profile import Profile
    from bench_lite import make_windows
    from llm_examples import CUE_EXAMPLES
    from media import astronaut_bgr, beckett_audio, moving_frames

    prof = Profile.load(prof_dir)
    frames = moving_frames(astronaut_bgr(), 48, (640, 480))
    audio = beckett_audio()
    an = LiteAnalyzer(prof, threads=2)
    wins = make_windows("fp", 200, frames, audio)
    an.analyze(wins[0])

    def run(label: str, stop_at: float, start: int) -> tuple[list[float], int]:
        lat, i = [], start
        while time.perf_counter() < stop_at:
            w = wins[i % len(wins)]
            t0 = time.perf_counter()
            an.analyze(w)
            lat.append((time.perf_counter() - t0) * 1000)
            i += 1
            time.sleep(0.05)  # a live stream leaves gaps between windows
        return lat, i

    out = {}
    base, i = run("alone", time.perf_counter() + seconds, 1)
    out["alone"] = (pct(base, 50), pct(base, 95), len(base))
    for threads in (1, 2):
        lm = LlamaCppLM(gguf, threads=threads)
        prompts = [lm.chat_prompt(chat_messages(ev)) for ev, _ in CUE_EXAMPLES]
        stop = threading.Event()
        gens = [0]

        def slow_path(lm=lm, prompts=prompts, stop=stop, gens=gens) -> None:
            while not stop.is_set():
                lm.generate(prompts[gens[0] % len(prompts)], max_tokens=64)
                gens[0] += 1

        th = threading.Thread(target=slow_path, daemon=True)
        th.start()
        lat, i = run(f"llm{threads}", time.perf_counter() + seconds, i)
        stop.set()
        th.join()
        lm.close()
        out[f"llm_threads_{threads}"] = (pct(lat, 50), pct(lat, 95), len(lat), gens[0])
    base2, i = run("alone-again", time.perf_counter() + seconds, i)  # drift check on a shared machine
    out["alone_again"] = (pct(base2, 50), pct(base2, 95), len(base2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", type=Path)
    ap.add_argument("--profile", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-hf", action="store_true")
    ap.add_argument("--no-fast", action="store_true")
    args = ap.parse_args()
    from affectstream.engine.profile import Profile

    prof_dir = args.profile or (None if args.gguf else default_profile())
    gguf = args.gguf or Profile.load(prof_dir).path("llm")
    print(
        f"{platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(f"model: {gguf.name}, threads {args.threads}\n")

    t = bench_tokens_per_s(gguf, args.threads, 64, 2 if args.quick else 4, hf=not args.no_hf)
    print(f"1. decode tok/s, 64 new tokens after a {t['prompt_tokens']}-token prompt:")
    print(f"   llama.cpp Q4_1      {t['llama_tok_s']:7.1f} tok/s (load {t['llama_load_s']:.2f} s)")
    if "hf_tok_s" in t:
        print(f"   transformers fp32   {t['hf_tok_s']:7.1f} tok/s (load {t['hf_load_s']:.1f} s)")
        print(f"   ratio llama.cpp / transformers: {t['ratio']:.1f}x\n")

    r = bench_reasoning(gguf, args.threads, 1 if args.quick else 2)
    print(f"2. reasoning latency, grammar on, max 64 tokens, {r['n']} generations:")
    print(
        f"   p50 {r['p50']:.0f} ms  p95 {r['p95']:.0f} ms  (prefill p50 {r['prefill_p50']:.0f} ms, "
        f"tokens p50 {r['tokens_p50']:.0f}, forced closes {r['forced']}/{r['n']}); goal p95 <= 1500 ms"
    )
    print(f"3. untrained accuracy on {r['examples']} hand-written cue examples (chance {1 / 7:.2f}):")
    print(
        f"   grammar, fast label shown {r['acc_fast']:.2f}; hidden {r['acc_nofast']:.2f}; "
        f"no grammar: well-formed {r['free_well_formed']:.2f}, accuracy {r['free_acc']:.2f}\n"
    )

    if not args.no_fast and prof_dir is not None:
        f = bench_fast_path(prof_dir, gguf, 8 if args.quick else 20)
        a = f["alone"]
        print("4. fast path (LiteAnalyzer.analyze per window, 640x480, 1 face, speech) p50/p95 ms:")
        print(f"   alone                      {a[0]:6.1f} / {a[1]:6.1f}  ({a[2]} windows)")
        for k in ("llm_threads_1", "llm_threads_2"):
            v = f[k]
            print(
                f"   + LLM back to back, {k[-1]} thr  {v[0]:6.1f} / {v[1]:6.1f}  ({v[2]} windows, {v[3]} generations)"
                f"  p95 ratio {v[1] / a[1]:.2f}"
            )
        b = f["alone_again"]
        print(f"   alone again                {b[0]:6.1f} / {b[1]:6.1f}  ({b[2]} windows)")


if __name__ == "__main__":
    main()
